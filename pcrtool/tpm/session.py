"""Policy sessions and their assertions (TPM 2.0 Part 3 §11.1 StartAuthSession, §23 Enhanced Authorization).

    with tpm.start_policy_session() as s:
        tpm.policy_pcr(s, PcrSelection.parse("sha256:7,11"))
        tpm.policy_authorize(s, approved, key.name, ticket, policy_ref=ref)
        secret = tpm.unseal(blob, s)

Trial sessions (``trial=True``) only compute digests: they check no PCR, ticket or NV value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE
from tpm2_pytss.types import (TPM2B_OPERAND, TPML_DIGEST, TPML_PCR_SELECTION, TPMT_SYM_DEF,
                              TPMT_TK_VERIFIED)

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg, PcrSelection, PcrValues
from pcrtool.tpm.marshal import marshal_pcr_selection

POLICY_OR_MAX = 8


@dataclass(slots=True)
class PolicySession:
    """A started policy (or trial) session; flushed when the ``with`` block ends."""

    tpm: object
    handle: object  # ESYS_TR
    trial: bool
    salted: bool = False
    closed: bool = field(default=False)

    def __enter__(self) -> "PolicySession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """TPM2_FlushContext (Part 3 §28.4) unless the session is gone already."""
        if not self.closed and self.tpm.esys is not None:
            self.closed = True
            try:
                self.tpm.esys.flush_context(self.handle)
            except Exception:  # noqa: BLE001 - flushing a session the TPM already dropped
                pass

    def digest(self) -> bytes:
        """TPM2_PolicyGetDigest (Part 3 §23.12)."""
        return self.tpm.policy_get_digest(self)


def _h(session) -> object:
    return session.handle if isinstance(session, PolicySession) else session


class SessionMixin:
    """Policy-session methods of ``Tpm`` (needs ``self.esys`` and ``self._call``)."""

    def start_policy_session(self, trial: bool = False, *, salt_key=None,
                             hash_alg: HashAlg = HashAlg.SHA256) -> PolicySession:
        """TPM2_StartAuthSession (Part 3 §11.1): TPM_SE_POLICY or TPM_SE_TRIAL, policy hash SHA-256.

        ``salt_key`` (a KeyHandle, e.g. the SRK) salts the session and enables AES-128-CFB
        parameter encryption, used by ``unseal`` to encrypt the response."""
        salted = salt_key is not None and not trial
        symmetric = TPMT_SYM_DEF(algorithm=TPM2_ALG.AES, keyBits={"aes": 128}, mode={"aes": TPM2_ALG.CFB}) \
            if salted else TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        handle = self._call("TPM2_StartAuthSession", self.esys.start_auth_session,
                            salt_key.handle if salted else ESYS_TR.NONE, ESYS_TR.NONE,
                            TPM2_SE.TRIAL if trial else TPM2_SE.POLICY, symmetric, TPM2_ALG(int(hash_alg)))
        return PolicySession(self, handle, trial, salted)

    def policy_restart(self, session) -> None:
        """TPM2_PolicyRestart (Part 3 §23.19): reset the session's policyDigest to zero."""
        self._call("TPM2_PolicyRestart", self.esys.policy_restart, _h(session))

    def policy_get_digest(self, session) -> bytes:
        """TPM2_PolicyGetDigest (Part 3 §23.12)."""
        return bytes(self._call("TPM2_PolicyGetDigest", self.esys.policy_get_digest, _h(session)))

    def policy_pcr(self, session, selection: PcrSelection | PcrValues | str,
                   pcr_digest: bytes | None = None) -> None:
        """TPM2_PolicyPCR (Part 3 §23.7).

        Real session, no ``pcr_digest``: the TPM uses its current PCRs. ``PcrValues`` (e.g. predicted
        values, for a trial session) give both the selection and the digest H(values…)."""
        if isinstance(selection, str):
            selection = PcrSelection.parse(selection)
        if isinstance(selection, PcrValues):
            from pcrtool.policy.digests import pcr_digest as compute_pcr_digest

            values = selection
            if pcr_digest is None:
                pcr_digest = compute_pcr_digest(values)
            banks = {alg: tuple(sorted(pcrs)) for alg, pcrs in values.values.items()}
        else:
            banks = dict(selection.banks)
        sel = TPML_PCR_SELECTION.unmarshal(marshal_pcr_selection(banks))[0]
        self._call("TPM2_PolicyPCR", self.esys.policy_pcr, _h(session), pcr_digest or b"", sel)

    def policy_authorize(self, session, approved_policy: bytes, key_name: bytes,
                         ticket: TPMT_TK_VERIFIED | None = None, *, policy_ref: bytes = b"") -> None:
        """TPM2_PolicyAuthorize (Part 3 §23.16) with keyword arguments (tpm2-pytss 2.x and 3.x
        order them differently). ``ticket`` from ``verify_signature``; None only in trial sessions."""
        if ticket is None:
            from pcrtool.tpm.objects import null_ticket

            ticket = null_ticket()
        self._call("TPM2_PolicyAuthorize", self.esys.policy_authorize, policy_session=_h(session),
                   approved_policy=approved_policy, policy_ref=policy_ref, key_sign=key_name,
                   check_ticket=ticket)

    def policy_authorize_nv(self, session, nv_index: int, *, auth: str = "index",
                            password: bytes = b"") -> None:
        """TPM2_PolicyAuthorizeNV (Part 3 §23.22): the session digest must equal the policy stored
        (as TPMT_HA) in ``nv_index``; authorized by the index (AUTHREAD) or the owner."""
        def run(handle):
            self._call("TPM2_PolicyAuthorizeNV", self.esys.policy_authorize_nv, handle, _h(session),
                       auth_handle=self._nv_auth(auth, handle), context=f"NV index 0x{nv_index:08x}")
        self._with_nv(nv_index, password, run)

    def policy_nv(self, session, nv_index: int, operand_b: bytes, operation: int, offset: int = 0, *,
                  auth: str = "index", password: bytes = b"") -> None:
        """TPM2_PolicyNV (Part 3 §23.9): compare NV[offset…] ``operation`` (TPM_EO) ``operand_b``,
        both big-endian; a failed comparison is TPM_RC_POLICY."""
        from tpm2_pytss.constants import TPM2_EO

        def run(handle):
            self._call("TPM2_PolicyNV", self.esys.policy_nv, self._nv_auth(auth, handle), handle,
                       _h(session), TPM2B_OPERAND(operand_b), TPM2_EO(int(operation)), offset,
                       context=f"NV index 0x{nv_index:08x}")
        self._with_nv(nv_index, password, run)

    def policy_or(self, session, digests: Sequence[bytes]) -> None:
        """TPM2_PolicyOR (Part 3 §23.6): 2…8 branch digests; the current digest must be one of them."""
        if not 2 <= len(digests) <= POLICY_OR_MAX:
            raise UsageError(f"PolicyOR takes 2…8 digests, got {len(digests)}",
                             hint="use a PolicyOR tree for more branches")
        self._call("TPM2_PolicyOR", self.esys.policy_or, _h(session), TPML_DIGEST(list(digests)))

    def policy_command_code(self, session, code: int) -> None:
        """TPM2_PolicyCommandCode (Part 3 §23.11), e.g. TPM_CC_Unseal 0x15E."""
        from tpm2_pytss.constants import TPM2_CC

        self._call("TPM2_PolicyCommandCode", self.esys.policy_command_code, _h(session), TPM2_CC(code))

    def policy_auth_value(self, session) -> None:
        """TPM2_PolicyAuthValue (Part 3 §23.17): the object's authValue is needed too (HMAC)."""
        self._call("TPM2_PolicyAuthValue", self.esys.policy_auth_value, _h(session))

    def policy_password(self, session) -> None:
        """TPM2_PolicyPassword (Part 3 §23.18): like PolicyAuthValue, with a cleartext password."""
        self._call("TPM2_PolicyPassword", self.esys.policy_password, _h(session))

    def trial_digest(self, steps: Iterable) -> bytes:
        """Run ``steps`` (callables taking the session) in a trial session (TPM2_StartAuthSession with
        TPM_SE_TRIAL, the assertions, TPM2_PolicyGetDigest) and return the digest."""
        with self.start_policy_session(trial=True) as s:
            for step in steps:
                step(s)
            return s.digest()
