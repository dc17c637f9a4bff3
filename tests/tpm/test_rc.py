"""TPM 2.0 response-code decoding (Part 2 §6.6) with codes observed on swtpm/libtss2."""

from __future__ import annotations

import pytest

from pcrtool.errors import TpmError, TpmPolicyFailed, TpmUnavailable
from pcrtool.tpm.rc import decode_rc, error_for_rc


@pytest.mark.parametrize("rc, name, where", [
    (0x99D, "TPM_RC_POLICY_FAIL", {"session": 1}),     # Unseal after a PCR changed
    (0x1C4, "TPM_RC_VALUE", {"parameter": 1}),          # PolicyAuthorize: approvedPolicy differs
    (0x2D5, "TPM_RC_SIZE", {"parameter": 2}),           # NV_DefineSpace: index too large
    (0x084, "TPM_RC_VALUE", {}),
    (0x18B, "TPM_RC_HANDLE", {"handle": 1}),
    (0x1C3, "TPM_RC_HASH", {"parameter": 1}),
    (0x126, "TPM_RC_POLICY", {}),
    (0x128, "TPM_RC_PCR_CHANGED", {}),
    (0x14A, "TPM_RC_NV_UNINITIALIZED", {}),
    (0x14C, "TPM_RC_NV_DEFINED", {}),
    (0x100, "TPM_RC_INITIALIZE", {}),
    (0x921, "TPM_RC_LOCKOUT", {}),
    (0x902, "TPM_RC_OBJECT_MEMORY", {}),
    (0x922, "TPM_RC_RETRY", {}),
    (0xA000A, "TSS2_TCTI_RC_IO_ERROR", {}),
    (0x70018, "TSS2_ESAPI_RC_BAD_TR", {}),
])
def test_decode_known_codes(rc, name, where):
    d = decode_rc(rc)
    assert d.name == name
    for key in ("session", "parameter", "handle"):
        assert getattr(d, key) == where.get(key)


def test_warnings_are_flagged_and_described():
    d = decode_rc(0x921)
    assert d.is_warning and "lockout" in d.hint
    assert decode_rc(0x99D).describe() == "TPM_RC_POLICY_FAIL (0x99d, session 1)"
    assert decode_rc(0x1C4).describe() == "TPM_RC_VALUE (0x1c4, parameter 1)"


def test_unknown_codes_still_decode():
    assert decode_rc(0x0A3).name == "TPM_RC_EXPIRED"
    assert decode_rc(0x0BF).name == "TPM_RC_FMT1_0x3f"
    assert decode_rc(0x17F).name.startswith("TPM_RC_VER1_0x")
    assert decode_rc(0x05).name == "TPM1.2_RC_0x5"


def test_errors_map_to_exit_codes():
    refused = error_for_rc("TPM2_Unseal", 0x99D)
    assert isinstance(refused, TpmPolicyFailed) and isinstance(refused, TpmError)
    assert refused.exit_code == 4 and refused.rc == 0x99D and refused.command == "TPM2_Unseal"
    assert refused.hint.startswith("policy check failed: a PCR differs")
    nv = error_for_rc("TPM2_PolicyNV", 0x126)
    assert isinstance(nv, TpmPolicyFailed) and "counter" in nv.hint
    stale = error_for_rc("TPM2_PolicyAuthorize", 0x1C4)
    assert isinstance(stale, TpmPolicyFailed) and "signed" in stale.hint
    other = error_for_rc("TPM2_NV_DefineSpace", 0x2D5, context="NV index 0x01800000")
    assert type(other) is TpmError and other.exit_code == 1
    assert other.message == "TPM2_NV_DefineSpace (NV index 0x01800000) failed: TPM_RC_SIZE (0x2d5, parameter 2)"
    gone = error_for_rc("TPM2_GetCapability", 0xA000A)
    assert isinstance(gone, TpmUnavailable) and gone.exit_code == 5


@pytest.mark.parametrize("command, rc, error", [
    ("TPM2_PolicyPCR", 0xA000A, TpmUnavailable),        # TSS2_TCTI_RC_IO_ERROR: the TPM went away
    ("TPM2_NV_Read", 0xA000A, TpmUnavailable),
    ("TPM2_Unseal", 0x99D, TpmPolicyFailed),             # TPM_RC_POLICY_FAIL: refused (exit 4)
    ("TPM2_PolicyNV", 0x126, TpmPolicyFailed),           # TPM_RC_POLICY
    ("TPM2_VerifySignature", 0x2DB, TpmPolicyFailed),    # TPM_RC_SIGNATURE, parameter 2
    ("TPM2_PolicyOR", 0x1C4, TpmPolicyFailed),           # TPM_RC_VALUE, parameter 1
    ("TPM2_PolicyAuthorize", 0x4C4, TpmPolicyFailed),    # TPM_RC_VALUE, parameter 4 (checkTicket)
    ("TPM2_Unseal", 0x98E, TpmPolicyFailed),             # TPM_RC_AUTH_FAIL, session 1: wrong PIN
    ("TPM2_Load", 0x2DB, TpmError),                      # a SIGNATURE code elsewhere is no refusal
    ("TPM2_NV_Read", 0x1C4, TpmError),                   # nor is a VALUE outside the policy commands
    ("TPM2_NV_DefineSpace", 0x14C, TpmError),            # TPM_RC_NV_DEFINED
])
def test_both_tpm_paths_map_a_code_to_the_same_error(command, rc, error):
    """Tpm._call (device.py) and tpm_call (policy_session.py) raise what error_for_rc maps."""
    from tests.support import need_module

    tss = need_module("tpm2_pytss")
    from pcrtool.tpm.device import Tpm
    from pcrtool.tpm.policy_session import tpm_call

    def fails():
        raise tss.TSS2_Exception(rc)

    assert type(error_for_rc(command, rc)) is error
    with pytest.raises(error) as by_session:
        tpm_call(command, fails)
    with pytest.raises(error) as by_device:
        Tpm(None, "none")._call(command, fails)
    assert type(by_session.value) is error and type(by_device.value) is error
    assert by_session.value.message == by_device.value.message == error_for_rc(command, rc).message
    assert decode_rc(rc).name in by_session.value.message
    assert by_session.value.exit_code == {TpmUnavailable: 5, TpmPolicyFailed: 4, TpmError: 1}[error]


def test_a_refusal_names_the_tpm_code_and_keeps_a_specific_hint():
    refused = error_for_rc("TPM2_VerifySignature", 0x2DB, hint="caller's hint")
    assert refused.message == "TPM2_VerifySignature failed: TPM_RC_SIGNATURE (0x2db, parameter 2)"
    assert refused.rc == 0x2DB and refused.tpm_rc == 0x2DB and "not signed by the enrolled key" in refused.hint
    other = error_for_rc("TPM2_NV_Increment", 0x98E, hint="pass --owner-auth-file")
    assert type(other) is TpmError and other.hint == "pass --owner-auth-file"
