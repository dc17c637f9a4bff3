"""Seal/unseal under policies on a real swtpm: PolicyPCR, PolicyAuthorize with an externally
loaded key, PolicyOR, PolicyCommandCode, PolicyAuthorizeNV. Digests are cross-checked with the
pure policy maths (pcrtool.policy.digests), which has its own known-answer vectors."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from pcrtool.errors import TpmError, TpmPolicyFailed
from pcrtool.model import HashAlg, PcrSelection
from pcrtool.policy import digests as pd

SECRET = b"disk key \x00\x01\x02 32 bytes long....."[:32]


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ecc_key():
    return ec.generate_private_key(ec.SECP256R1())


def _sign(key, approved: bytes, ref: bytes = b"") -> bytes:
    tbs = approved + ref  # TPM2_VerifySignature digest = H(approvedPolicy || policyRef)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(tbs, ec.ECDSA(hashes.SHA256()))


def test_policy_pcr_seal_unseal_and_refusal_after_extend(tpm):
    tpm.extend_data(16, b"release 1")
    sel = PcrSelection.parse("sha256:7,16")
    with tpm.start_policy_session(trial=True) as trial:
        tpm.policy_pcr(trial, sel)
        policy = trial.digest()
    assert policy == pd.policy_pcr(tpm.read_pcrs(sel))  # TPM == offline maths
    blob = tpm.seal(SECRET, policy)
    assert len(blob.public) > 40 and len(blob.private) > 40
    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, sel)
        assert tpm.unseal(blob, s) == SECRET
    tpm.extend_data(16, b"something else")
    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, sel)
        with pytest.raises(TpmPolicyFailed) as e:
            tpm.unseal(blob, s)
    assert e.value.rc == 0x99D and e.value.exit_code == 4
    assert "TPM_RC_POLICY_FAIL" in e.value.message and "PCR differs" in e.value.hint


def test_unseal_through_salted_encrypted_session_and_persistent_srk_parent(tpm):
    srk = tpm.create_primary_srk()
    assert srk.public[2:4] == b"\x00\x23"  # ECC P-256 SRK (TCG template)
    with tpm.start_policy_session(trial=True) as trial:
        tpm.policy_pcr(trial, "sha256:0")
        policy = trial.digest()
    blob = tpm.seal(SECRET, policy, srk)
    with tpm.start_policy_session(salt_key=srk) as s:
        assert s.salted
        tpm.policy_pcr(s, "sha256:0")
        assert tpm.unseal(blob, s, srk) == SECRET
    tpm.flush(srk)


def test_srk_is_the_tcg_template_key_tpm2_tools_creates(swtpm, tpm, tool, tmp_path):
    """Primary keys are derived from the seed and the template: tpm2_createprimary with the TCG SRK
    template (attributes, AES-128-CFB, zero-filled unique) must give the same key Name."""
    import os
    import subprocess

    tool("tpm2_createprimary")
    tool("tpm2_readpublic")
    srk = tpm.create_primary_srk()
    env = {**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti}
    ctx = tmp_path / "srk.ctx"
    out = subprocess.run(
        ["tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:null:aes128cfb",
         "-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt",
         "-u", "-", "-c", str(ctx)],
        input=bytes(64), capture_output=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr.decode()
    fields = dict(line.split(": ", 1) for line in out.stdout.decode().splitlines() if ": " in line)
    assert srk.public.endswith(b"\x00\x20" + bytes.fromhex(fields["x"]) + b"\x00\x20" + bytes.fromhex(fields["y"]))
    out = subprocess.run(["tpm2_readpublic", "-c", str(ctx)], capture_output=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr.decode()
    name = [l for l in out.stdout.decode().splitlines() if l.startswith("name: ")][0]
    assert name.split(": ", 1)[1].strip() == srk.name.hex()
    tpm.flush(srk)
    subprocess.run(["tpm2_flushcontext", "-t"], capture_output=True, timeout=30, env=env)  # no RM


@pytest.mark.parametrize("keytype", ["rsa", "ecc"])
def test_policy_authorize_with_external_key(tpm, rsa_key, ecc_key, keytype):
    key = rsa_key if keytype == "rsa" else ecc_key
    sel = PcrSelection.parse("sha256:16")
    ext = tpm.load_external_public(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert ext.name == pd.public_key_name(key.public_key())  # offline Name == TPM Name
    ref = b"pcrtool-svn" + struct.pack(">I", 3)
    object_policy = pd.policy_authorize(ext.name, ref)
    with tpm.start_policy_session(trial=True) as trial:
        tpm.policy_authorize(trial, bytes(32), ext.name, None, policy_ref=ref)
        assert trial.digest() == object_policy
    blob = tpm.seal(SECRET, object_policy)

    def unlock(approval: bytes, approved: bytes):
        ticket = tpm.verify_signature(ext, hashlib.sha256(approved + ref).digest(), approval)
        with tpm.start_policy_session() as s:
            tpm.policy_pcr(s, sel)
            tpm.policy_authorize(s, approved, ext.name, ticket, policy_ref=ref)
            return tpm.unseal(blob, s)

    approved_1 = pd.policy_pcr(tpm.read_pcrs(sel))
    approval_1 = _sign(key, approved_1, ref)
    assert unlock(approval_1, approved_1) == SECRET
    ticket = tpm.verify_signature(ext, hashlib.sha256(approved_1 + ref).digest(), approval_1)
    assert len(bytes(ticket.digest)) == 64  # libtpms: SHA-512 HMAC ticket
    assert int(ticket.hierarchy) == 0x40000001  # TPM_RH_OWNER, not a NULL ticket

    tpm.extend_data(16, b"release 2")
    with pytest.raises(TpmPolicyFailed):  # the old approval does not cover the new PCRs
        unlock(approval_1, approved_1)
    approved_2 = pd.policy_pcr(tpm.read_pcrs(sel))
    assert unlock(_sign(key, approved_2, ref), approved_2) == SECRET  # no re-seal needed
    tpm.flush(ext)


def test_verify_signature_rejects_a_foreign_signature(tpm, rsa_key):
    ext = tpm.load_external_public(rsa_key.public_key())
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    approved = bytes(32)
    with pytest.raises(TpmError, match="TPM_RC_SIGNATURE"):
        tpm.verify_signature(ext, hashlib.sha256(approved).digest(), _sign(other, approved))
    tpm.flush(ext)


def test_policy_or_and_command_code(tpm):
    tpm.extend_data(16, b"A")
    a = pd.policy_command_code(pd.TPM_CC.Unseal, pd.policy_pcr(tpm.read_pcrs("sha256:16")))
    b = pd.policy_command_code(pd.TPM_CC.Unseal, pd.policy_pcr(tpm.read_pcrs("sha256:23")))
    root = pd.policy_or([a, b])
    blob = tpm.seal(SECRET, root)
    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, "sha256:23")
        tpm.policy_command_code(s, 0x15E)
        tpm.policy_or(s, [a, b])
        assert s.digest() == root
        assert tpm.unseal(blob, s) == SECRET
    with tpm.start_policy_session() as s:  # a branch that is not in the list
        tpm.policy_pcr(s, "sha256:7")
        tpm.policy_command_code(s, 0x15E)
        with pytest.raises(TpmError, match="TPM_RC_VALUE"):
            tpm.policy_or(s, [a, b])


def test_policy_authorize_nv(tpm):
    index = 0x01800400
    attrs = (pd.TPMA_NV.OWNERWRITE | pd.TPMA_NV.OWNERREAD | pd.TPMA_NV.AUTHREAD | pd.TPMA_NV.AUTHWRITE
             | pd.TPMA_NV.NO_DA)
    tpm.nv_define(index, 34, attrs)
    name = pd.nv_name(index, attrs, 34, written=True)  # predicted before the first write
    policy = pd.policy_authorize_nv(name)
    blob = tpm.seal(SECRET, policy)
    approved = pd.policy_pcr(tpm.read_pcrs("sha256:16"))
    tpm.nv_write(index, struct.pack(">H", HashAlg.SHA256) + approved)  # TPMT_HA
    assert tpm.nv_read_public(index).name == name
    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, "sha256:16")
        tpm.policy_authorize_nv(s, index)
        assert tpm.unseal(blob, s) == SECRET
    tpm.extend_data(16, b"x")
    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, "sha256:16")
        with pytest.raises(TpmPolicyFailed):
            tpm.policy_authorize_nv(s, index)


def test_seal_rejects_bad_sizes(tpm):
    from pcrtool.errors import UsageError

    with pytest.raises(UsageError):
        tpm.seal(b"x" * 129, bytes(32))
    with pytest.raises(UsageError):
        tpm.seal(SECRET, bytes(20))


def test_persistent_srk_is_used_by_default_and_survives_reboot(swtpm, tpm):
    srk = tpm.create_primary_srk()
    persistent = tpm.persist(srk)  # 0x81000001, TCG Provisioning Guidance
    tpm.flush(srk)
    assert tpm.persistent_handles() == [0x81000001]
    blob = tpm.seal(SECRET, b"", user_with_auth=True)  # parent: the persistent SRK
    swtpm.reboot()
    again = tpm.srk()
    assert not again.transient and again.name == persistent.name
    assert tpm.unseal(blob, None) == SECRET  # password session: userWithAuth, empty auth
    tpm.evict(0x81000001)
    assert tpm.persistent_handles() == []


def test_ecc_key_with_a_leading_zero_coordinate_loads(tpm):
    """tpm2-pytss' from_pem drops leading zero bytes of x/y (LoadExternal then fails with
    TPM_RC_KEY); pcrtool pads them to the curve size, so such keys load and get the right Name."""
    for _ in range(5000):
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.public_key().public_numbers()
        if nums.x < 1 << 248 or nums.y < 1 << 248:
            break
    else:  # pragma: no cover - probability ~1e-17
        pytest.fail("no P-256 key with a short coordinate found")
    ext = tpm.load_external_public(key.public_key())
    assert ext.name == pd.public_key_name(key.public_key())
    ticket = tpm.verify_signature(ext, hashlib.sha256(bytes(32)).digest(), _sign(key, bytes(32)))
    assert len(bytes(ticket.digest)) == 64
    tpm.flush(ext)
