"""Signed-policy enrolment with TPM-enforced downgrade protection (ARCHITECTURE.md).

- A TPM_NT_COUNTER NV index (not ORDERLY, NO_DA, AUTHREAD) is the floor. At enrolment its value
  c0 and the starting floor f0 are recorded; the device floor is ``f0 + counter − c0``.
- The secret is sealed once under a PolicyOR tree over one branch per svn s in f0…f0+window:
  ``PolicyAuthorize(K, ref_s) → PolicyNV(counter ≤ c0 + s − f0, UNSIGNED_LE)``.
- Unlock: PolicyPCR(live) → VerifySignature(approval) → PolicyAuthorize(ref_s) → PolicyNV →
  PolicyOR path → Unseal.
- Raising the floor is NV_Increment only: atomic, no re-seal, and every blob ever sealed obeys it.

Denial-of-service limit: whoever holds owner authorization (often empty on Linux) can increment
the counter and so make every release "revoked" — never a bypass, but unlock stops. Keep the
recovery key written at enrolment. The enrolment (metadata and sealed blob) is one JSON file
written atomically.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

from pcrtool.errors import FormatError, PcrtoolError, PolicyRefused, TpmError, TpmPolicyFailed, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import digests as D
from pcrtool.policy.approvals import ApprovalEntry, Approvals
from pcrtool.policy.downgrade import branch_digests
from pcrtool.tpm import policy_session as S

DEFAULT_COUNTER_INDEX = 0x01805C00
ENROLLMENT_VERSION = 1
MAX_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What unlock needs, stored next to (here: together with) the sealed blob."""

    mode: str
    counter_index: int
    counter_name: str
    c0: int
    f0: int
    window: int
    bank: str
    pcrs: tuple[int, ...]
    public_key_pem: str
    key_name: str
    pkfp: str
    policy: str
    blob: str
    version: int = ENROLLMENT_VERSION
    srk_name: str = ""   # Name of the storage key sealed under (hex); "" in files written before pinning

    @property
    def blob_bytes(self) -> bytes:
        return base64.b64decode(self.blob)

    @property
    def hash_alg(self) -> HashAlg:
        return HashAlg.from_name(self.bank)

    @property
    def pinned_srk(self) -> bytes | None:
        return pinned_srk_name(self.srk_name)

    def floor(self, counter: int) -> int:
        return self.f0 + counter - self.c0

    @property
    def max_svn(self) -> int:
        return self.f0 + self.window

    def public_key(self):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        return load_pem_public_key(self.public_key_pem.encode())

    def to_json(self) -> str:
        d = asdict(self)
        d["pcrs"] = list(self.pcrs)
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str, source: str = "enrollment") -> "Enrollment":
        try:
            d = json.loads(text)
            d["pcrs"] = tuple(d["pcrs"])
            e = cls(**d)
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise FormatError(f"{source}: not a pcrtool enrollment file ({err})",
                              hint="enroll again with `pcrtool tpm enroll`") from None
        ints = (e.counter_index, e.c0, e.f0, e.window, e.version, *e.pcrs)
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in ints) or not all(
                isinstance(x, str) for x in (e.counter_name, e.bank, e.public_key_pem, e.key_name, e.pkfp,
                                             e.policy, e.blob)):
            raise FormatError(f"{source}: a field has the wrong type", hint="enroll again")
        if e.version != ENROLLMENT_VERSION or e.mode != "signed":
            raise FormatError(f"{source}: unsupported enrollment version/mode {e.version}/{e.mode}")
        check_srk_name(e.srk_name, source)
        return e


SRK_NAME_LENGTH = 34   # TPM_ALG_SHA256 || SHA-256 of the public area


def check_srk_name(value, source: str) -> None:
    """The enrollment's ``srk_name``: "" (older files: not pinned) or a SHA-256 Name in hex."""
    if not isinstance(value, str):
        raise FormatError(f"{source}: srk_name has the wrong type", hint="enroll again")
    if value:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != SRK_NAME_LENGTH or raw[:2] != b"\x00\x0b":
            raise FormatError(f"{source}: srk_name is not a SHA-256 TPM Name", hint="enroll again")


def pinned_srk_name(value: str) -> bytes | None:
    return bytes.fromhex(value) if value else None




def _key_material(public_key):
    tpmt = D.public_key_tpmt(public_key)
    return tpmt, D.name_of(tpmt)


def _is_rsa(public_key) -> bool:
    from cryptography.hazmat.primitives.asymmetric import rsa
    return isinstance(public_key, rsa.RSAPublicKey)


def _pem(public_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def ensure_counter(esys, index: int) -> tuple[object, int, bytes]:
    """Define (if absent) and initialise the floor counter; returns (handle, value, Name).

    Safe to re-run after a crash at any point: an existing index with our attributes is reused,
    an unwritten one is incremented once.
    """
    handle = S.nv_handle(esys, index)
    if handle is None:
        handle = S.define_counter(esys, index)
    attrs, size, _ = S.nv_public(esys, handle)
    S.check_counter_attributes(attrs, size, index)
    if not attrs & D.TPMA_NV.WRITTEN:
        S.nv_increment(esys, handle)
    value = S.read_counter(esys, handle)
    _, _, name = S.nv_public(esys, handle)
    return handle, value, name


def enroll(tcti: str | None, public_key, *, floor: int, window: int, bank: HashAlg,
           pcrs: Sequence[int], secret: bytes, counter_index: int = DEFAULT_COUNTER_INDEX,
           reuse: Enrollment | None = None) -> Enrollment:
    """Seal ``secret`` under the downgrade-protected signed policy; returns the enrollment.

    With ``reuse`` (a window-widening re-seal), c0/f0 and the counter of that enrollment are kept.
    """
    if not 0 <= window <= MAX_WINDOW:
        raise UsageError(f"window {window} out of range 0…{MAX_WINDOW}")
    if not pcrs:
        raise UsageError("no PCRs selected for the signed policy", hint="e.g. --pcrs 11")
    tpmt, key_name = _key_material(public_key)
    with S.open_esys(tcti) as esys:
        handle, value, counter_name = ensure_counter(esys, counter_index)
        if reuse is not None:
            c0, f0 = reuse.c0, reuse.f0
            if bytes.fromhex(reuse.counter_name) != counter_name:
                raise PcrtoolError("the floor counter was redefined since enrolment",
                                   hint="enrol afresh (the old floor cannot be trusted)")
        else:
            c0, f0 = value, floor
        tree = D.PolicyOrTree.build(branch_digests(key_name, counter_name, c0, f0, window))
        srk = S.create_srk(esys, reuse.pinned_srk if reuse is not None else None)
        try:
            blob = S.seal(esys, srk, secret, tree.root)
            srk_name = S.srk_name(esys, srk)
        finally:
            S.flush(esys, srk)
    return Enrollment(mode="signed", counter_index=counter_index, counter_name=counter_name.hex(),
                      c0=c0, f0=f0, window=window, bank=bank.bank_name, pcrs=tuple(sorted(pcrs)),
                      public_key_pem=_pem(public_key), key_name=key_name.hex(),
                      pkfp=D.public_key_fingerprint(public_key).hex(), policy=tree.root.hex(),
                      blob=base64.b64encode(blob).decode(), srk_name=srk_name.hex())


@dataclass
class UnlockResult:
    secret: bytes
    svn: int
    floor: int
    commands: list[str] = field(default_factory=list)


def _choose(entries: list[ApprovalEntry], floor: int, e: Enrollment) -> tuple[ApprovalEntry | None, str]:
    """Pick the approval to try; return (entry, reason-if-pcrtool-expects-denial)."""
    in_window = [x for x in entries if x.svn is not None and floor <= x.svn <= e.max_svn]
    if in_window:
        return in_window[0], ""
    svns = [x.svn for x in entries if x.svn is not None]
    if not svns:
        if entries:
            return entries[0], "the approval carries no security version (systemd-style entry)"
        return None, "no approval matches the live PCRs (unknown or tampered release)"
    best = max(svns)
    if best > e.max_svn:
        return ([x for x in entries if x.svn == best][0],
                f"release svn {best} is beyond the enrolled window (max svn {e.max_svn}); "
                "re-seal with a wider window while an accepted release is booted")
    return ([x for x in entries if x.svn == best][0],
            f"release svn {best} is below the device floor {floor} (revoked)")


def unlock(tcti: str | None, enrollment: Enrollment, approvals: Approvals, *,
           attempt_anyway: bool = False, blob: bytes | None = None, ticket=None,
           entry_override: ApprovalEntry | None = None) -> UnlockResult:
    """Replay the live PCRs through the matching approval and the tree path, then unseal.

    pcrtool refuses early (PolicyRefused, no TPM round trips) when it can see the TPM would
    refuse; ``attempt_anyway`` runs the TPM session regardless so tests and ``validate`` record the
    TPM's own verdict. ``blob`` / ``ticket`` / ``entry_override`` let validation replay saved
    objects, tickets and approvals. A PCR that moves during an attempt starts it again
    (``with_pcr_retries``).
    """
    public_key = enrollment.public_key()
    tpmt, key_name = _key_material(public_key)
    if key_name.hex() != enrollment.key_name:
        raise FormatError("enrollment key name does not match its public key")
    bank, pcrs = enrollment.hash_alg, enrollment.pcrs
    blob = enrollment.blob_bytes if blob is None else blob
    with S.open_esys(tcti) as esys:
        return with_pcr_retries(esys, bank, pcrs, lambda live: _unlock_attempt(
            esys, enrollment, approvals, live, tpmt, key_name, blob, ticket, entry_override, attempt_anyway))


PCR_RETRIES = 3


def with_pcr_retries(esys, bank: HashAlg, pcrs: Sequence[int], attempt):
    """``attempt(live PCR values)``, started again from fresh values when it is refused and the
    PCRs moved meanwhile, up to PCR_RETRIES attempts.

    A boot phase measured while unlocking (systemd-pcrphase, an add-on) makes the approval or
    PolicyOR path chosen for the old values fail, or the TPM answer TPM_RC_PCR_CHANGED. Every
    attempt is a whole TPM-enforced session, so a retry never lets through what one attempt would
    not; a refusal with unchanged PCRs is final at once."""
    for n in range(1, PCR_RETRIES + 1):
        live = S.read_pcrs(esys, bank, pcrs)
        try:
            return attempt(live)
        except (TpmPolicyFailed, PolicyRefused):
            if n < PCR_RETRIES and D.policy_pcr(S.read_pcrs(esys, bank, pcrs)) != D.policy_pcr(live):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _unlock_attempt(esys, enrollment, approvals, live, tpmt, key_name, blob, ticket, entry_override,
                    attempt_anyway) -> UnlockResult:
    bank, pcrs = enrollment.hash_alg, enrollment.pcrs
    pol = D.policy_pcr(live)
    counter = S.nv_handle(esys, enrollment.counter_index)
    if counter is None:
        raise TpmPolicyFailed(f"floor counter {enrollment.counter_index:#x} does not exist",
                              hint="it was deleted; use the recovery key and enrol again")
    value = S.read_counter(esys, counter)
    floor = enrollment.floor(value)
    entries = approvals.find(bank, pcrs, bytes.fromhex(enrollment.pkfp), pol)
    if entry_override is not None:
        entry, reason = entry_override, ""
    else:
        entry, reason = _choose(entries, floor, enrollment)
    if entry is None and attempt_anyway:
        # try the newest approval we have: the TPM must refuse it for these PCRs
        cands = [x for x in approvals.entries if x.bank == bank and x.pcrs == tuple(pcrs) and x.sig]
        entry = max(cands, key=lambda x: -1 if x.svn is None else x.svn) if cands else None
    if entry is None or (reason and not attempt_anyway):
        raise PolicyRefused(reason or "no usable approval", hint="boot an approved release "
                            "or use the recovery key", tpm_rc=None)
    svn = entry.svn if entry.svn is not None else -1
    tree = D.PolicyOrTree.build(branch_digests(key_name, bytes.fromhex(enrollment.counter_name),
                                               enrollment.c0, enrollment.f0, enrollment.window))
    srk = S.create_srk(esys, enrollment.pinned_srk)
    try:
        return _tpm_unlock(esys, srk, enrollment, tree, tpmt, key_name, counter, entry, svn,
                           blob, ticket, floor, bank, pcrs)
    except TpmPolicyFailed as e:
        if reason:
            raise TpmPolicyFailed(f"{reason}; the TPM refused too: {e.message}", e.hint,
                                  rc=e.rc, command=e.command) from None
        raise
    finally:
        S.flush(esys, srk)


def _tpm_unlock(esys, srk, enrollment, tree, tpmt, key_name, counter, entry, svn, blob, ticket,
                floor, bank, pcrs) -> UnlockResult:
    """The TPM part of unlock (see module docstring for the command sequence)."""
    public_key = enrollment.public_key()
    key = obj = session = None
    try:
        obj = S.load_blob(esys, srk, blob)
        key = S.load_external_key(esys, tpmt)
        session = S.start_policy_session(esys, srk)
        S.policy_pcr(esys, session, bank, pcrs)
        if ticket is None:
            ticket = S.verify_signature(esys, key, entry.tbs, entry.sig, rsa=_is_rsa(public_key))
        S.policy_authorize(esys, session, entry.pol, entry.policy_ref, key_name, ticket)
        bound = max(0, D.counter_bound(enrollment.c0, enrollment.f0, svn))
        S.policy_nv_le(esys, session, counter, bound)
        if enrollment.f0 <= svn <= enrollment.max_svn:
            path = tree.path(svn - enrollment.f0)
        else:  # no branch exists: present the first group; the TPM must refuse
            path = tree.path(0) or [(tree.root, tree.root)]
        S.policy_or_path(esys, session, path)
        secret = S.unseal(esys, obj, session)
    finally:
        S.flush(esys, session, key, obj)
    return UnlockResult(secret, svn, floor, list(esys.commands))


def advance_floor(tcti: str | None, enrollment: Enrollment, to_svn: int) -> tuple[int, int]:
    """Raise the floor to ``to_svn`` by NV_Increment (k times for +k); returns (old, new) floor.

    Each increment is atomic on its own; after a crash between increments the floor is simply
    lower than asked and re-running completes it. The floor never goes down.
    """
    with S.open_esys(tcti) as esys:
        counter = S.nv_handle(esys, enrollment.counter_index)
        if counter is None:
            raise TpmError(f"floor counter {enrollment.counter_index:#x} does not exist")
        old = enrollment.floor(S.read_counter(esys, counter))
        if to_svn <= old:
            return old, old
        if to_svn - old > MAX_WINDOW:
            raise UsageError(f"refusing to raise the floor by {to_svn - old} at once")
        for _ in range(to_svn - old):
            S.nv_increment(esys, counter)
        new = enrollment.floor(S.read_counter(esys, counter))
    return old, new


def status(tcti: str | None, enrollment: Enrollment, approvals: Approvals | None = None) -> dict:
    """Counter, floor, window and (with approvals) which approval the live PCRs match."""
    with S.open_esys(tcti) as esys:
        counter = S.nv_handle(esys, enrollment.counter_index)
        value = S.read_counter(esys, counter) if counter is not None else None
        live = S.read_pcrs(esys, enrollment.hash_alg, enrollment.pcrs)
    out = {"counter_index": f"{enrollment.counter_index:#x}", "counter": value,
           "c0": enrollment.c0, "f0": enrollment.f0,
           "floor": enrollment.floor(value) if value is not None else None,
           "window": [enrollment.f0, enrollment.max_svn], "bank": enrollment.bank,
           "pcrs": list(enrollment.pcrs), "policy": enrollment.policy,
           "srk_name": enrollment.srk_name or None,   # None: an older enrollment, SRK not pinned
           "live_policy_pcr": D.policy_pcr(live).hex()}
    if approvals is not None:
        hits = approvals.find(enrollment.hash_alg, enrollment.pcrs, bytes.fromhex(enrollment.pkfp),
                              D.policy_pcr(live))
        out["matching_svns"] = [h.svn for h in hits]
    return out


def write_enrollment(path: str | os.PathLike, enrollment: Enrollment) -> None:
    from pcrtool.fileio import write_atomic
    write_atomic(path, enrollment.to_json(), mode=0o600, what="enrollment")


def read_enrollment(path: str | os.PathLike) -> Enrollment:
    from pcrtool.fileio import read_text
    return Enrollment.parse(read_text(path, what="enrollment"), source=str(path))
