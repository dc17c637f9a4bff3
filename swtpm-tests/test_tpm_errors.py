"""The one TPM error mapping (rc.error_for_rc) against swtpm's real return codes, through both
ways pcrtool issues commands: ``Tpm._call`` (device.py: PCRs, caps, NV admin) and
``policy_session.tpm_call`` (enrolment and unlock). A refusal of the policy is exit 4 with the
TPM's code in the message, a failing command exit 1, a TPM gone mid-use exit 5."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pcrtool.errors import TpmError, TpmPolicyFailed, TpmUnavailable
from pcrtool.model import HashAlg
from pcrtool.policy.digests import COUNTER_ATTRIBUTES, public_key_tpmt

KEY = rsa.generate_private_key(65537, 2048)
OTHER = rsa.generate_private_key(65537, 2048)
INDEX = 0x01805C10


def _sign(key, tbs: bytes) -> bytes:
    return key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())


def _exactly(error_type, excinfo, code: str, exit_code: int):
    err = excinfo.value
    assert type(err) is error_type and err.exit_code == exit_code
    assert code in err.message, err.message


def test_a_refused_signature_is_a_policy_refusal_on_both_paths(tpm):
    """TPM_RC_SIGNATURE from TPM2_VerifySignature: exit 4, via policy_session and via Tpm."""
    import hashlib

    from pcrtool.tpm import policy_session

    key = policy_session.load_external_key(tpm.esys, public_key_tpmt(KEY.public_key()))
    try:
        tbs = b"approval"
        assert policy_session.verify_signature(tpm.esys, key, tbs, _sign(KEY, tbs), KEY.public_key())  # allow side
        with pytest.raises(TpmPolicyFailed) as by_session:
            policy_session.verify_signature(tpm.esys, key, tbs, _sign(OTHER, tbs), KEY.public_key())
        _exactly(TpmPolicyFailed, by_session, "TPM_RC_SIGNATURE", 4)
        assert by_session.value.rc & 0xBF == 0x9B   # TPM_RC_SIGNATURE (format 1), from the TPM itself
        with pytest.raises(TpmPolicyFailed) as by_device:
            tpm._call("TPM2_VerifySignature", tpm.esys.verify_signature, key, hashlib.sha256(tbs).digest(),
                      policy_session.tpmt_signature(_sign(OTHER, tbs), KEY.public_key()))
        assert by_device.value.message == by_session.value.message and by_device.value.rc == by_session.value.rc
    finally:
        policy_session.flush(tpm.esys, key)


def test_policy_assertions_the_state_does_not_meet_are_refusals(tpm):
    """TPM_RC_VALUE from PolicyPCR (another PCR digest) and PolicyOR (no branch matches)."""
    from pcrtool.tpm import policy_session

    srk = policy_session.create_srk(tpm.esys)
    session = policy_session.start_policy_session(tpm.esys, srk)
    try:
        selection = policy_session.pcr_selection(HashAlg.SHA256, [16])
        with pytest.raises(TpmPolicyFailed) as pcr:
            policy_session.tpm_call("TPM2_PolicyPCR", tpm.esys.policy_pcr, session, bytes(32), selection)
        _exactly(TpmPolicyFailed, pcr, "TPM_RC_VALUE", 4)
        with pytest.raises(TpmPolicyFailed) as branch:
            policy_session.policy_or_path(tpm.esys, session, [[b"\x01" * 32, b"\x02" * 32]])
        _exactly(TpmPolicyFailed, branch, "TPM_RC_VALUE", 4)
    finally:
        policy_session.flush(tpm.esys, session, srk)


def test_unseal_after_a_pcr_moved_is_a_refusal(tpm):
    """TPM_RC_POLICY_FAIL from TPM2_Unseal: the object's policy is PolicyPCR over the old value."""
    from pcrtool.tpm import policy_session

    srk = policy_session.create_srk(tpm.esys)
    trial = policy_session.start_trial_session(tpm.esys)
    policy_session.policy_pcr(tpm.esys, trial, HashAlg.SHA256, [16])
    auth_policy = policy_session.policy_digest(tpm.esys, trial)
    policy_session.flush(tpm.esys, trial)
    obj = policy_session.load_blob(tpm.esys, srk, policy_session.seal(tpm.esys, srk, b"secret", auth_policy))
    tpm.extend_data(16, b"moved", [HashAlg.SHA256])
    session = policy_session.start_policy_session(tpm.esys, srk)
    try:
        policy_session.policy_pcr(tpm.esys, session, HashAlg.SHA256, [16])
        with pytest.raises(TpmPolicyFailed) as refused:
            policy_session.unseal(tpm.esys, obj, session)
        _exactly(TpmPolicyFailed, refused, "TPM_RC_POLICY_FAIL", 4)
    finally:
        policy_session.flush(tpm.esys, session, obj, srk)


def test_a_failing_command_is_an_error_on_both_paths(tpm):
    """TPM_RC_NV_DEFINED from TPM2_NV_DefineSpace: exit 1, the same via Tpm and the counter path."""
    from pcrtool.tpm import nv

    tpm.nv_define(INDEX, 8, int(COUNTER_ATTRIBUTES))
    with pytest.raises(TpmError) as by_device:
        tpm.nv_define(INDEX, 8, int(COUNTER_ATTRIBUTES))
    _exactly(TpmError, by_device, "TPM_RC_NV_DEFINED", 1)
    with pytest.raises(TpmError) as by_session:
        nv.define_counter(tpm.esys, INDEX)
    _exactly(TpmError, by_session, "TPM_RC_NV_DEFINED", 1)
    assert by_device.value.rc == by_session.value.rc


@pytest.mark.parametrize("path", ["device", "policy_session"])
def test_a_tpm_gone_mid_use_is_unavailable_on_both_paths(swtpm, open_tpm_on, path):
    """The TCTI loses the TPM (swtpm stopped): exit 5 on either path, never a refusal."""
    from pcrtool.tpm import policy_session

    tpm = open_tpm_on(swtpm)
    tpm.read_pcrs("sha256:0")
    swtpm.stop()
    with pytest.raises(TpmUnavailable) as gone:
        if path == "device":
            tpm.read_pcrs("sha256:1")
        else:
            policy_session.read_pcrs(tpm.esys, HashAlg.SHA256, [1])
    assert gone.value.exit_code == 5 and "TSS2_TCTI_RC_" in gone.value.message, gone.value.message


def test_looking_for_the_counter_tells_absent_from_unreachable(swtpm, open_tpm_on):
    """nv.find_nv (enrolment and unlock look up the floor counter with it): None when the TPM says
    TPM_RC_HANDLE, TpmUnavailable (exit 5) when the TPM is gone — never "the counter was deleted"."""
    from pcrtool.tpm import nv

    tpm = open_tpm_on(swtpm)
    assert nv.find_nv(tpm.esys, INDEX) is None
    with pytest.raises(TpmError, match="TPM_RC_HANDLE"):
        nv.open_nv(tpm.esys, INDEX)
    swtpm.stop()
    with pytest.raises(TpmUnavailable):
        nv.find_nv(tpm.esys, INDEX)


def test_looking_for_the_pinned_srk_tells_absent_from_unreachable(swtpm, open_tpm_on):
    """The SRK lookup before unseal (pinned_persistent_srk): nothing at the handle is a refusal
    (exit 4: not the enrolled key), a TPM gone mid-use is TpmUnavailable (exit 5)."""
    from pcrtool.errors import PolicyRefused
    from pcrtool.tpm import policy_session

    tpm = open_tpm_on(swtpm)
    assert policy_session.find_persistent(tpm.esys, policy_session.SRK_HANDLE) is None
    srk = policy_session.ensure_persistent_srk(tpm.esys)
    assert policy_session.find_persistent(tpm.esys, policy_session.SRK_HANDLE) is not None
    other = b"\x00\x0b" + bytes(32)
    with pytest.raises(PolicyRefused, match="not the enrolled one"):
        policy_session.pinned_persistent_srk(tpm.esys, srk.serialized, other)
    swtpm.stop()
    with pytest.raises(TpmUnavailable):
        policy_session.pinned_persistent_srk(tpm.esys, srk.serialized, srk.name)
