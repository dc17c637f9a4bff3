"""How systemd unlocks a secret sealed to PolicyAuthorize(K, ref) (systemd-cryptenroll
--tpm2-public-key), driven step by step on a TPM for the interop tests: load the signing key's
public part, satisfy PolicyPCR over the live PCR 11, verify the approval's signature, authorize
the approved policy, unseal. The caller owns the ESAPI context and the SRK."""

from __future__ import annotations


def unseal_signed(esys, srk, blob: bytes, entry, public_key, policy_ref: bytes, pcrs=(11,)) -> bytes:
    """LoadExternal(public_key) → PolicyPCR(sha256, ``pcrs``, live) → VerifySignature(entry.tbs,
    entry.sig) → PolicyAuthorize(entry.pol, ``policy_ref``) → Unseal of ``blob`` under ``srk``.
    A refusal raises pcrtool's TPM error (TpmPolicyFailed for a policy the TPM rejects)."""
    from pcrtool.model import HashAlg
    from pcrtool.policy import digests as D
    from pcrtool.tpm import policy_session as S

    obj = S.load_blob(esys, srk, blob)
    key = S.load_external_key(esys, D.public_key_tpmt(public_key))
    sess = S.start_policy_session(esys, srk)
    try:
        S.policy_pcr(esys, sess, HashAlg.SHA256, list(pcrs))
        ticket = S.verify_signature(esys, key, entry.tbs, entry.sig, public_key)
        S.policy_authorize(esys, sess, entry.pol, policy_ref, D.public_key_name(public_key), ticket)
        return S.unseal(esys, obj, sess)
    finally:
        S.flush(esys, sess, key, obj)
