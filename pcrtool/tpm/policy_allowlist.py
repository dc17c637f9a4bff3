"""Allowlist mode on the device: seal to whole-release PCR tuples (see pcrtool.policy.allowlist).

Unlock (direct): PolicyPCR(live) → PolicyOR path → PolicyNV(epoch counter ≤ c_seal) → Unseal.
Unlock (nv):     PolicyPCR(live) → PolicyOR path → PolicyAuthorizeNV(index) → Unseal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Sequence

from pcrtool.errors import FormatError, PolicyRefused, TpmError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import allowlist as AL
from pcrtool.policy import digests as D
from pcrtool.tpm import policy_session as S
from pcrtool.tpm.enroll import UnlockResult, check_srk_name, ensure_counter, pinned_srk_name, with_pcr_retries

DEFAULT_EPOCH_INDEX = 0x01805C10
DEFAULT_NV_INDEX = 0x01805C20


@dataclass(frozen=True, slots=True)
class AllowlistEnrollment:
    mode: str            # "allowlist-direct" | "allowlist-nv"
    bank: str
    pcrs: tuple[int, ...]
    leaves: tuple[str, ...]
    index: int           # epoch counter (direct) or policy NV index (nv)
    index_name: str
    epoch: int           # direct: counter bound at seal time; nv: 0
    hmac_key_name: str   # nv: Name of the HMAC update key
    policy: str
    blob: str
    version: int = 1
    srk_name: str = ""   # Name of the storage key sealed under (hex); "" in files written before pinning

    @property
    def hash_alg(self) -> HashAlg:
        return HashAlg.from_name(self.bank)

    @property
    def pinned_srk(self) -> bytes | None:
        return pinned_srk_name(self.srk_name)

    @property
    def blob_bytes(self) -> bytes:
        return base64.b64decode(self.blob)

    def tree(self) -> D.PolicyOrTree:
        return D.PolicyOrTree.build([bytes.fromhex(x) for x in self.leaves])

    def to_json(self) -> str:
        d = asdict(self)
        d["pcrs"], d["leaves"] = list(self.pcrs), list(self.leaves)
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str, source: str = "enrollment") -> "AllowlistEnrollment":
        try:
            d = json.loads(text)
            d["pcrs"], d["leaves"] = tuple(d["pcrs"]), tuple(d["leaves"])
            e = cls(**d)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise FormatError(f"{source}: not a pcrtool allowlist enrollment ({err})") from None
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (e.index, e.epoch, *e.pcrs)) or \
                not all(isinstance(x, str) for x in (e.bank, e.index_name, e.hmac_key_name, e.policy, e.blob,
                                                     *e.leaves)):
            raise FormatError(f"{source}: a field has the wrong type", hint="enroll again")
        if e.mode not in ("allowlist-direct", "allowlist-nv"):
            raise FormatError(f"{source}: unknown mode {e.mode!r}")
        check_srk_name(e.srk_name, source)
        return e


# --- HMAC update key (PolicySigned), nv mode --------------------------------------------------------

def _hmac_public(key: bytes):
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import TPM2_ALG, TPMA_OBJECT

    unique = hashlib.sha256(bytes(32) + key).digest()
    return T.TPM2B_PUBLIC(T.TPMT_PUBLIC(
        type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256,
        objectAttributes=TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.USERWITHAUTH,
        parameters=T.TPMU_PUBLIC_PARMS(keyedHashDetail=T.TPMS_KEYEDHASH_PARMS(
            scheme=T.TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.HMAC, details=T.TPMU_SCHEME_KEYEDHASH(
                hmac=T.TPMS_SCHEME_HASH(hashAlg=TPM2_ALG.SHA256))))),
        unique=T.TPMU_PUBLIC_ID(keyedHash=unique)))


def load_hmac_key(esys, key: bytes):
    """TPM2_LoadExternal (Part 3 §12.3) of the HMAC update key (all-zero seed: a stable Name)."""
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    sens = T.TPM2B_SENSITIVE(T.TPMT_SENSITIVE(sensitiveType=TPM2_ALG.KEYEDHASH, seedValue=bytes(32),
                                              sensitive=T.TPMU_SENSITIVE_COMPOSITE(bits=key)))
    return S.tpm_call("TPM2_LoadExternal", esys.load_external, _hmac_public(key), sens, ESYS_TR.NULL)


def hmac_key_name(key: bytes) -> bytes:
    return D.name_of(_hmac_public(key).publicArea.marshal())


def policy_signed_hmac(esys, session, key_handle, key: bytes) -> None:
    """TPM2_PolicySigned (Part 3 §23.3) with an HMAC over aHash(nonceTPM, expiration 0)."""
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import TPM2_ALG

    nonce = bytes(esys.trsess_get_nonce_tpm(session))
    mac = hmac.new(key, D.policy_signed_ahash(nonce), hashlib.sha256).digest()
    sig = T.TPMT_SIGNATURE(sigAlg=TPM2_ALG.HMAC, signature=T.TPMU_SIGNATURE(
        hmac=T.TPMT_HA(hashAlg=TPM2_ALG.SHA256, digest=T.TPMU_HA(sha256=mac))))
    S.tpm_call("TPM2_PolicySigned", esys.policy_signed, key_handle, session, sig, nonce_tpm=nonce,
               expiration=0, policy=True, hint="wrong update key")


def define_policy_nv(esys, index: int, key_name: bytes):
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    pub = T.TPM2B_NV_PUBLIC(T.TPMS_NV_PUBLIC(nvIndex=index, nameAlg=TPM2_ALG.SHA256,
                                             attributes=int(AL.NV_POLICY_ATTRIBUTES),
                                             authPolicy=AL.nv_index_policy(key_name),
                                             dataSize=AL.NV_POLICY_SIZE))
    return S.tpm_call("TPM2_NV_DefineSpace", esys.nv_define_space, None, pub, ESYS_TR.OWNER)


def write_policy_nv(tcti: str | None, index: int, update_key: bytes, root: bytes) -> None:
    """TPM2_NV_Write (Part 3 §31.9) of TPMT_HA(root), authorised by PolicySigned(update key)."""
    with S.open_esys(tcti) as esys:
        nv = S.nv_handle(esys, index)
        if nv is None:
            raise TpmError(f"allowlist NV index {index:#x} does not exist")
        key = load_hmac_key(esys, update_key)
        session = None
        try:
            session = _plain_policy_session(esys)
            policy_signed_hmac(esys, session, key, update_key)
            S.tpm_call("TPM2_NV_Write", esys.nv_write, nv, AL.nv_contents(root), 0, auth_handle=nv,
                       session1=session, policy=True, hint="wrong update key or foreign NV index")
        finally:
            S.flush(esys, session, key)


def _plain_policy_session(esys):
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE

    sym = T.TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
    return S.tpm_call("TPM2_StartAuthSession", esys.start_auth_session, ESYS_TR.NONE, ESYS_TR.NONE,
                      TPM2_SE.POLICY, sym, TPM2_ALG.SHA256)


# --- enrol / unlock ---------------------------------------------------------------------------------

def enroll_allowlist(tcti: str | None, tuples: Sequence[tuple[str, PcrValues]], *, bank: HashAlg,
                     pcrs: Sequence[int], secret: bytes, mode: str = "direct",
                     index: int | None = None, update_key: bytes | None = None,
                     new_epoch: bool = True, pinned_srk: bytes | None = None) -> AllowlistEnrollment:
    """Seal ``secret`` to the allowlist. direct: bumps the epoch counter (invalidating every older
    blob) unless ``new_epoch`` is False; nv: defines the index if needed and writes the root.
    ``pinned_srk``: a re-seal must happen under the storage key the old enrollment pinned."""
    policy = AL.build_allowlist_policy(tuples)
    if mode not in ("direct", "nv"):
        raise UsageError(f"unknown allowlist mode {mode!r}", hint="direct or nv")
    if mode == "nv" and not update_key:
        raise UsageError("nv mode needs an update key")
    with S.open_esys(tcti) as esys:
        # The storage key first: a refused pin must not have bumped the epoch (revoking the old blob).
        srk = S.create_srk(esys, pinned_srk)
        try:
            if mode == "direct":
                index = DEFAULT_EPOCH_INDEX if index is None else index
                handle, value, name = ensure_counter(esys, index)
                if new_epoch:
                    S.nv_increment(esys, handle)
                    value = S.read_counter(esys, handle)
                auth_policy = AL.direct_policy(policy.root, name, value)
                epoch, key_name = value, b""
            else:
                index = DEFAULT_NV_INDEX if index is None else index
                key_name = hmac_key_name(update_key)
                nv = S.nv_handle(esys, index)
                if nv is None:
                    define_policy_nv(esys, index, key_name)
                name = AL.nv_index_name(index, key_name)
                auth_policy, epoch = D.policy_authorize_nv(name), 0
            blob = S.seal(esys, srk, secret, auth_policy)
            srk_name = S.srk_name(esys, srk)
        finally:
            S.flush(esys, srk)
    if mode == "nv":
        write_policy_nv(tcti, index, update_key, policy.root)
    return AllowlistEnrollment(f"allowlist-{mode}", bank.bank_name, tuple(sorted(pcrs)),
                               tuple(x.hex() for x in policy.leaves), index, name.hex(), epoch,
                               key_name.hex(), auth_policy.hex(), base64.b64encode(blob).decode(),
                               srk_name=srk_name.hex())


def unlock_allowlist(tcti: str | None, e: AllowlistEnrollment, *, attempt_anyway: bool = False,
                     blob: bytes | None = None) -> UnlockResult:
    """Replay the live PCRs through the allowlist tree and unseal (a PCR that moves during an
    attempt starts it again, as in signed mode: ``pcrtool.tpm.enroll.with_pcr_retries``)."""
    bank, pcrs = e.hash_alg, e.pcrs
    blob = e.blob_bytes if blob is None else blob
    with S.open_esys(tcti) as esys:
        return with_pcr_retries(esys, bank, pcrs, lambda live: _unlock_attempt(esys, e, live, blob, attempt_anyway))


def _unlock_attempt(esys, e: AllowlistEnrollment, live, blob: bytes, attempt_anyway: bool) -> UnlockResult:
    bank, pcrs = e.hash_alg, e.pcrs
    tree = e.tree()
    leaf = tree.leaves.index(D.policy_pcr(live)) if D.policy_pcr(live) in tree.leaves else None
    if leaf is None and not attempt_anyway:
        raise PolicyRefused("the live PCRs match no allowlisted release (unknown, tampered or revoked)",
                            hint="boot an allowlisted release or use the recovery key")
    handle = S.nv_handle(esys, e.index)
    if handle is None:
        raise PolicyRefused(f"NV index {e.index:#x} of the enrollment does not exist",
                            hint="it was deleted; use the recovery key and enrol again")
    srk = S.create_srk(esys, e.pinned_srk)
    obj = session = None
    try:
        obj = S.load_blob(esys, srk, blob)
        session = S.start_policy_session(esys, srk)
        S.policy_pcr(esys, session, bank, pcrs)
        S.policy_or_path(esys, session, tree.path(leaf if leaf is not None else 0))
        if e.mode == "allowlist-direct":
            S.policy_nv_le(esys, session, handle, e.epoch)
        else:
            S.tpm_call("TPM2_PolicyAuthorizeNV", esys.policy_authorize_nv, handle, session,
                       auth_handle=handle, session1=_password(), policy=True,
                       hint="the NV index holds another allowlist (release revoked)")
        secret = S.unseal(esys, obj, session)
    finally:
        S.flush(esys, session, obj, srk)
    return UnlockResult(secret, -1, -1, list(esys.commands))


def _password():
    from tpm2_pytss.constants import ESYS_TR
    return ESYS_TR.PASSWORD


def update_allowlist(tcti: str | None, e: AllowlistEnrollment, tuples: Sequence[tuple[str, PcrValues]], *,
                     update_key: bytes | None = None) -> AllowlistEnrollment:
    """Change the allowlist (e.g. revoke a release).

    nv: rewrite the index with the new root (PolicySigned by the update key); the sealed object is
    untouched and every release left out stops unlocking at once.
    direct: unlock now (an allowlisted release must be booted), bump the epoch counter and re-seal;
    the increment kills every older blob, including copies.
    """
    from dataclasses import replace

    policy = AL.build_allowlist_policy(tuples)
    if e.mode == "allowlist-nv":
        if not update_key:
            raise UsageError("updating an nv-mode allowlist needs the update key")
        write_policy_nv(tcti, e.index, update_key, policy.root)
        return replace(e, leaves=tuple(x.hex() for x in policy.leaves))
    secret = unlock_allowlist(tcti, e).secret
    return enroll_allowlist(tcti, tuples, bank=e.hash_alg, pcrs=e.pcrs, secret=secret, mode="direct",
                            index=e.index, pinned_srk=e.pinned_srk)
