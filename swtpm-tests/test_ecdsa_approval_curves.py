"""ECDSA approval keys on P-256 and P-384 end to end on swtpm (issue 17d): `policy approve --ecdsa`
→ `tpm enroll` → `tpm unlock` of the approved release, and the refusals (a tampered PCR, an
approval signed by another key of the same curve, a signature of another curve's key) with the
TPM's own return code where the TPM decides. TPM2_VerifySignature needs r and s at the size of
the enrolled key's curve (Part 2 §11.3.4: 48 bytes on P-384), where they were once fixed at 32."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.policy.helpers_policy import need_module, pem_public, releases_json
from tpm_proxy import pcrtool as _pcrtool
from pcrtool.tpm.enroll_modes import load_any_enrollment  # noqa: E402

CURVES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
# TPM 2.0 Part 2 §6.6: format-1 code + TPM_RC_P (0x040) + parameter number << 8
RC_VALUE_PARAMETER_1 = 0x084 | 0x040 | 0x100       # PolicyAuthorize: approvedPolicy ≠ the session's digest
RC_SIGNATURE_PARAMETER_2 = 0x09B | 0x040 | 0x200   # VerifySignature: the signature does not verify


def _pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _boot(sw, rel_json: str, index: int, *, tamper: bool = False):
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.tpm.policy_validate import _measure, tampered

    measurements = parse_releases(rel_json)[0][index].measurements
    _measure(sw, tampered(measurements) if tamper else measurements, HashAlg.SHA256)


def _setup(d, sw, curve: str):
    """approve (own key and another key of the same curve) → enroll; returns (rel, secret)."""
    key, other = ec.generate_private_key(CURVES[curve]()), ec.generate_private_key(CURVES[curve]())
    (d / "k.pem").write_bytes(_pem_private(key))
    (d / "pub.pem").write_bytes(pem_public(key))
    (d / "other.pem").write_bytes(_pem_private(other))
    rel = releases_json(svns=(1, 2), tag=curve)
    (d / "rel.json").write_text(rel)
    for k, out in (("k.pem", "a.pcrsig"), ("other.pem", "other.pcrsig")):
        p = _pcrtool("policy", "approve", "-r", d / "rel.json", "-k", d / k, "-o", d / out, "--ecdsa", check=0)
        assert ("P-384 is optional" in p.stderr) == (curve == "p384")   # approve accepts P-384 with a warning
    _pcrtool("tpm", "enroll", "--tcti", sw.tcti, "-k", d / "pub.pem", "--floor", 1, "--window", 1,
             "-o", d / "e.json", "--recovery-key", d / "recovery.txt", check=0)
    return rel, bytes.fromhex((d / "recovery.txt").read_text())


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_ecdsa_approvals_unlock_the_approved_release_and_nothing_else(swtpm, tmp_path, curve):
    need_module("tpm2_pytss")
    from pcrtool.errors import TpmPolicyFailed
    from pcrtool.policy.approvals import Approvals
    from pcrtool.tpm import enroll as E

    d, t = tmp_path, ("--tcti", swtpm.tcti)
    rel, secret = _setup(d, swtpm, curve)
    _boot(swtpm, rel, 1)
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=0)   # allow
    assert base64.b64decode(p.stdout) == secret

    # deny: the approvals of another key of the same curve (pcrtool refuses before the TPM) ...
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "other.pcrsig", check=4)
    assert "the device trusts key" in p.stderr and p.stdout == ""
    # ... and the TPM refuses that key's signature itself (TPM2_VerifySignature, 48-byte r/s on P-384)
    enrollment = load_any_enrollment(d / "e.json")
    with pytest.raises(TpmPolicyFailed) as ei:
        E.unlock(swtpm.tcti, enrollment, Approvals.parse((d / "other.pcrsig").read_bytes()), attempt_anyway=True)
    assert (ei.value.command, ei.value.rc, ei.value.exit_code) == ("TPM2_VerifySignature", RC_SIGNATURE_PARAMETER_2, 4)

    # deny: a tampered PCR 11 (last component changed): exit 4, and the TPM's verdict
    _boot(swtpm, rel, 1, tamper=True)
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=4)
    assert "no approval matches the live PCRs" in p.stderr and p.stdout == ""
    with pytest.raises(TpmPolicyFailed) as ei:
        E.unlock(swtpm.tcti, enrollment, Approvals.parse((d / "a.pcrsig").read_bytes()), attempt_anyway=True)
    assert (ei.value.command, ei.value.rc, ei.value.exit_code) == ("TPM2_PolicyAuthorize", RC_VALUE_PARAMETER_1, 4)


def test_p384_validate_matrix_records_the_tpm_refusals(swtpm, tmp_path):
    """`pcrtool validate` with a P-384 key: every cell as expected, the tampered release and the
    other key's approval (a P-384 key too) refused by the TPM with its return code."""
    need_module("tpm2_pytss")
    d = tmp_path
    _setup(d, swtpm, "p384")
    p = _pcrtool("validate", "--allowlist", d / "rel.json", "--approvals", d / "a.pcrsig", "--key", d / "k.pem",
                 "--mode", "signed", "--json=short", check=0)
    cells = json.loads(p.stdout)["matrices"][0]["cells"]
    assert len(cells) > 20 and all(c["ok"] for c in cells)
    by = {(c["scenario"], c["release"]): c for c in cells}
    assert by[("allowlisted release", "os-1.1")]["actual"] == by[("allowlisted release", "os-1.2")]["actual"] == "allow"
    assert by[("tampered component", "os-1.2 (last digest changed)")]["tpm_rc"] == f"{RC_VALUE_PARAMETER_1:#x} TPM_RC_VALUE"
    assert by[("approval signed by another key", "os-1.2")]["tpm_rc"] == f"{RC_SIGNATURE_PARAMETER_2:#x} TPM_RC_SIGNATURE"


@pytest.mark.parametrize("enrolled,signer", [("p256", "p384"), ("p384", "p256")])
def test_a_signature_of_another_curve_is_refused_not_an_internal_error(swtpm, tmp_path, enrolled, signer):
    """A P-384 signature cannot be written as a P-256 one (r, s > 32 bytes): refused by pcrtool
    (exit 4, no TPM code); a P-256 one fits P-384's 48 bytes and the TPM refuses it."""
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm.policy_validate import _measure, _sign_with

    key, foreign = ec.generate_private_key(CURVES[enrolled]()), ec.generate_private_key(CURVES[signer]())
    release = parse_releases(releases_json(svns=(1,), tag="x"))[0][0]
    target = [A.ApprovalTarget(release.selected(HashAlg.SHA256, [11]), release.svn)]
    forged = A.sign_entries(A.build_entries(target, key.public_key()), _sign_with(foreign))[0]  # enrolled pkfp
    e = E.enroll(swtpm.tcti, key.public_key(), floor=1, window=0, bank=HashAlg.SHA256, pcrs=[11], secret=b"s" * 32)
    _measure(swtpm, release.measurements, HashAlg.SHA256)
    with pytest.raises(PolicyRefused) as ei:
        E.unlock(swtpm.tcti, e, A.Approvals((forged,)), entry_override=forged)
    assert ei.value.exit_code == 4
    if enrolled == "p256":
        assert "not an ECDSA signature of a 256-bit curve key" in ei.value.message and ei.value.tpm_rc is None
    else:
        assert (ei.value.command, ei.value.rc) == ("TPM2_VerifySignature", RC_SIGNATURE_PARAMETER_2)
    good = A.sign_entries(A.build_entries(target, key.public_key()), _sign_with(key))[0]
    assert E.unlock(swtpm.tcti, e, A.Approvals((good,))).secret == b"s" * 32   # allow side, same enrolment
