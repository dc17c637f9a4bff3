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
written atomically; its model, parser and the TPM-free values derived from it are in
tpm/enrollment_file.py, the TPM commands that enrol, unlock and move the floor here.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Sequence

from pcrtool.errors import PolicyRefused, SignatureError, TpmError, TpmPolicyFailed, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import digests
from pcrtool.policy.approvals import ApprovalEntry, Approvals, verify_entry
from pcrtool.policy.downgrade import (FloorDecision, check_advance, check_same_counter, check_window,
                                      choose_approval, enrolment_tree, floor_decision, revoked_reason)
from pcrtool.policy.scope import Scope
from pcrtool.tpm import nv, policy_session
from pcrtool.tpm.enrollment_file import (DEFAULT_COUNTER_INDEX, Enrollment, PendingEnrolment, check_key_matches, key_material,
                                         need_pin, pin_auth_value, require_srk_pin, scoped_entries, sealed_policy,
                                         unlock_command_count)


def open_srk(esys, e):
    """(handle, transient) of the storage key the enrollment pinned: the persistent SRK from its
    serialized ESYS_TR (no TPM command, no owner authorization), or — for files sealed under a
    transient primary — TPM2_CreatePrimary with the Name check."""
    if e.srk and e.srk_name:
        return policy_session.pinned_persistent_srk(esys, base64.b64decode(e.srk), bytes.fromhex(e.srk_name)), False
    return policy_session.create_srk(esys, e.pinned_srk), True



def close_srk(esys, handle, transient: bool) -> None:
    if transient:
        policy_session.flush(esys, handle)
    else:
        import contextlib
        with contextlib.suppress(Exception):
            esys.tr_close(handle)



def load_under_srk(esys, srk, blob: bytes):
    """TPM2_Load; under a pinned persistent SRK a failure means another key sits at the handle
    (another TPM, a cleared hierarchy, a substitute): a policy refusal (exit 4)."""
    try:
        return policy_session.load_blob(esys, srk, blob)
    except TpmPolicyFailed:
        raise
    except TpmError as err:
        raise TpmPolicyFailed(f"the TPM's storage root key is not the enrolled one: {err.message}",
                              hint="another TPM or a cleared owner hierarchy: use the recovery key and enrol again",
                              rc=err.rc, command=err.command) from None



def _pem(public_key) -> str:
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()



def counter_handle(esys, index: int, expected_name: bytes):
    """The counter's ESYS_TR after TPM2_NV_ReadPublic, or PolicyRefused when the index is absent
    or is not the enrolled one — checked BEFORE anything authorizes to it, so whatever sits at the
    handle (an index with a password, without NO_DA) never sees a failed authorization and the
    dictionary-attack counter never moves."""
    handle = nv.find_nv(esys, index)
    if handle is None:
        raise PolicyRefused(f"floor counter {index:#x} does not exist",
                            hint="it was deleted: use the recovery key and enrol again", tpm_rc=None)
    name = bytes(esys.tr_get_name(handle))
    if name != expected_name:
        raise ForeignIndex(f"NV index {index:#x} is not the enrolled floor counter (Name {name.hex()[:16]}…, "
                           f"enrolled {expected_name.hex()[:16]}…)", handle=handle,
                           hint="it was deleted and re-defined or replaced: use the recovery key and enrol again")
    return handle



class ForeignIndex(PolicyRefused):
    def __init__(self, message: str, hint: str | None = None, *, handle=None) -> None:
        super().__init__(message, hint, tpm_rc=None)
        self.handle = handle



def ensure_counter(esys, index: int, owner_auth: bytes | None = None) -> tuple[object, int, bytes, bool]:
    """Define (if absent) and initialise the floor counter; returns (handle, value, Name, existed).

    ``existed``: the index was there and written before this call (someone's floor lives in it).
    Its attributes are checked (TPM2_NV_ReadPublic) before anything authorizes to it. Safe to
    re-run after a crash at any point: an index with our attributes is reused, an unwritten one
    is incremented once.
    """
    handle = nv.find_nv(esys, index)
    existed = handle is not None
    if handle is None:
        handle = nv.define_counter(esys, index, owner_auth)
    public = nv.read_nv_public(esys, handle, index)
    nv.check_counter_attributes(public, index)
    existed = existed and public.written
    if not public.written:
        nv.increment_counter(esys, handle, owner_auth)
    value = nv.read_counter(esys, handle)
    return handle, value, nv.read_nv_public(esys, handle, index).name, existed



def enroll(tcti: str | None, public_key, *, floor: int | None, window: int, bank: HashAlg,
           pcrs: Sequence[int], secret: bytes, counter_index: int = DEFAULT_COUNTER_INDEX,
           reuse: Enrollment | None = None, product: str = "", revive: tuple[int, int] | None = None,
           owner_auth: bytes | None = None, pending: "PendingEnrolment | None" = None,
           pin: bytes | None = None) -> Enrollment:
    """Seal ``secret`` under the downgrade-protected signed policy; returns the enrollment.

    ``reuse``: the enrolment being replaced, which the caller has just unlocked (so the TPM has
    confirmed its counter, c0 and f0). Its floor is kept (``floor_decision``); a lower ``floor``
    needs ``revive`` naming the svns it revives. Without ``reuse`` an existing, written counter
    is refused unless ``floor`` and ``revive`` say explicitly what unlocks again — or unless
    ``pending`` (a first enrolment on a fresh counter that crashed, authenticated with the secret)
    says the counter was created by that very enrolment, so re-running it is safe.
    """
    check_window(window)
    if not pcrs:
        raise UsageError("no PCRs selected for the signed policy", hint="e.g. --pcrs 11")
    scope = Scope(bank, tuple(sorted(pcrs)), product)
    tpmt, key_name = key_material(public_key)
    if reuse is not None:
        counter_index = reuse.counter_index
    with policy_session.open_esys(tcti) as esys:
        check_key_supported(esys, public_key)
        before = nv.find_nv(esys, counter_index)
        fresh = before is None
        if before is not None:
            public = nv.read_nv_public(esys, before, counter_index)
            nv.check_counter_attributes(public, counter_index)
            fresh = not public.written
        resumed = pending.load(counter_index, floor) if pending is not None and reuse is None else None
        if fresh and pending is not None and reuse is None:
            want = 0 if floor is None else floor
            pending.save(counter_index, want, None)        # durable before the counter is written
            resumed = (None, want)
        # the SRK first: it salts the session that carries the owner's authorization
        srk = policy_session.ensure_persistent_srk(esys, owner_auth, reuse.pinned_srk if reuse is not None else None)
        opened = policy_session.open_owner_session(esys, owner_auth, srk.handle)
        try:
            handle, value, counter_name, existed = ensure_counter(esys, counter_index, owner_auth)
        finally:
            policy_session.close_owner_session(esys, opened)
        previous = None
        if resumed is not None and reuse is None:
            c0_seen, f0_pending = resumed
            if c0_seen is None:
                pending.save(counter_index, f0_pending, value)
                c0_seen = value
            # the authenticated mapping of this very enrolment is kept (never a lower floor)
            previous, existed, floor = (c0_seen, f0_pending), False, None
        if reuse is not None:
            check_same_counter(bytes.fromhex(reuse.counter_name), counter_name)
            previous = (reuse.c0, reuse.f0)
        decision: FloorDecision = floor_decision(counter=value, previous=previous, requested=floor,
                                                 revive=revive, counter_existed=existed)
        c0, f0 = decision.c0, decision.f0
        check_window(window, f0)
        tree = enrolment_tree(key_name, counter_name, c0, f0, window, scope)
        pin_salt = os.urandom(32).hex() if pin else ""
        sealed = sealed_policy(tree.root, pin_salt)
        blob = policy_session.seal(esys, srk.handle, secret, sealed, pin_auth_value(pin, pin_salt) if pin else b"")
        srk_name = srk.name
    return Enrollment(mode="signed", counter_index=counter_index, counter_name=counter_name.hex(),
                      c0=c0, f0=f0, window=window, bank=bank.bank_name, pcrs=scope.pcrs,
                      public_key_pem=_pem(public_key), key_name=key_name.hex(),
                      pkfp=digests.public_key_fingerprint(public_key).hex(), policy=sealed.hex(),
                      blob=base64.b64encode(blob).decode(), srk_name=srk_name.hex(), product=product,
                      srk=base64.b64encode(srk.serialized).decode(), pin_salt=pin_salt)



def check_key_supported(esys, public_key) -> None:
    """Refuse (with a hint) a signing key the TPM cannot load, before anything is written:
    TPM2_TestParms of the key's parameters (RSA-4096 or P-384 on many TPMs)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        what, ok = f"RSA-{public_key.key_size}", policy_session.test_parms_rsa(esys, public_key.key_size)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        what, ok = f"ECC {public_key.curve.name}", policy_session.test_parms_ecc(esys, public_key.curve.name)
    else:
        raise UsageError(f"unsupported key type {type(public_key).__name__}", hint="use RSA-2048")
    if not ok:
        raise UsageError(f"this TPM does not support {what} keys (TPM2_TestParms refused them)",
                         hint="sign releases with an RSA-2048 key (what systemd and every TPM verify)")



@dataclass
class UnlockResult:
    secret: bytes
    svn: int
    floor: int  # -1: not read (unlock issues no counter read; the TPM's PolicyNV decides)
    commands: list[str] = field(default_factory=list)



def unlock(tcti: str | None, enrollment: Enrollment, approvals: Approvals, *,
           attempt_anyway: bool = False, blob: bytes | None = None, ticket=None,
           entry_override: ApprovalEntry | None = None, allow_unpinned_srk: bool = False,
           pin: bytes | None = None) -> UnlockResult:
    """Replay the live PCRs through the matching approval and the tree path, then unseal.

    pcrtool refuses early (PolicyRefused, no TPM round trips) when it can see the TPM would
    refuse; ``attempt_anyway`` runs the TPM session regardless so tests and ``validate`` record the
    TPM's own verdict. An edited enrollment file always goes through the TPM, so its refusal
    carries the TPM's return code. ``blob`` / ``ticket`` / ``entry_override`` let validation replay
    saved objects, tickets and approvals. A PCR that moves during an attempt starts it again
    (``with_pcr_retries``).
    """
    require_srk_pin(enrollment, allow_unpinned_srk or attempt_anyway)
    auth = need_pin(enrollment, pin)
    if not attempt_anyway and entry_override is None:
        check_key_matches(approvals, enrollment)
    public_key = enrollment.public_key()
    tpmt, key_name = key_material(public_key)
    bank, pcrs = enrollment.hash_alg, enrollment.pcrs
    edited = enrollment.binding_problem()
    blob = enrollment.blob_bytes if blob is None else blob
    with policy_session.open_esys(tcti) as esys:
        return with_pcr_retries(esys, bank, pcrs, lambda live: _unlock_attempt(
            esys, enrollment, approvals, live, tpmt, key_name, blob, ticket, entry_override,
            attempt_anyway or bool(edited), edited, auth))



PCR_RETRIES = 3



def with_pcr_retries(esys, bank: HashAlg, pcrs: Sequence[int], attempt):
    """``attempt(live PCR values)``, started again from fresh values when it is refused and the
    PCRs moved meanwhile, up to PCR_RETRIES attempts.

    A boot phase measured while unlocking (systemd-pcrphase, an add-on) makes the approval or
    PolicyOR path chosen for the old values fail, or the TPM answer TPM_RC_PCR_CHANGED. Every
    attempt is a whole TPM-enforced session, so a retry never lets through what one attempt would
    not; a refusal with unchanged PCRs is final at once."""
    for n in range(1, PCR_RETRIES + 1):
        live = policy_session.read_pcrs(esys, bank, pcrs)
        try:
            return attempt(live)
        except (TpmPolicyFailed, PolicyRefused):
            if n < PCR_RETRIES and digests.policy_pcr(policy_session.read_pcrs(esys, bank, pcrs)) != digests.policy_pcr(live):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover



def _unlock_attempt(esys, enrollment, approvals, live, tpmt, key_name, blob, ticket, entry_override,
                    attempt_anyway, edited="", auth=b"") -> UnlockResult:
    bank, pcrs = enrollment.hash_alg, enrollment.pcrs
    pol = digests.policy_pcr(live)
    try:
        counter = counter_handle(esys, enrollment.counter_index, bytes.fromhex(enrollment.counter_name))
        foreign = ""
    except ForeignIndex as fi:
        attrs = nv.read_nv_public(esys, fi.handle).attributes
        # Authorizing to a foreign index could trip dictionary-attack lockout: only an index that
        # cannot (NO_DA) is presented to the TPM, and only when asked to record its verdict.
        if not attempt_anyway or not attrs & digests.TPMA_NV.NO_DA:
            raise
        counter, foreign = fi.handle, fi.message
    entries = scoped_entries(approvals, enrollment, pol)
    if entry_override is not None:
        entry, reason = entry_override, ""
    else:
        entry, reason = choose_approval(entries, enrollment.f0, enrollment.max_svn)
    reason = edited or foreign or reason
    if entry is None and attempt_anyway:
        # try the newest approval we have: the TPM must refuse it for these PCRs
        cands = [x for x in approvals.entries if x.bank == bank and x.pcrs == tuple(pcrs) and x.sig]
        entry = max(cands, key=lambda x: -1 if x.svn is None else x.svn) if cands else None
    if entry is None or (reason and not attempt_anyway):
        raise PolicyRefused(reason or "no usable approval", hint="boot an approved release "
                            "or use the recovery key", tpm_rc=None)
    if entry_override is None and ticket is None and not attempt_anyway:
        try:
            verify_entry(entry, enrollment.public_key())
        except SignatureError as err:
            raise PolicyRefused(f"the approval for the booted release is not validly signed: {err.message}",
                                hint="the approvals file was edited or corrupted", tpm_rc=None) from None
    svn = entry.svn if entry.svn is not None else -1
    tree = enrollment.tree()
    srk, transient = open_srk(esys, enrollment)
    try:
        return _tpm_unlock(esys, srk, enrollment, tree, tpmt, key_name, counter, entry, svn,
                           blob, ticket, bank, pcrs, auth)
    except TpmPolicyFailed as e:
        if enrollment.pin_salt and e.command == "TPM2_Unseal" and e.rc and e.rc & 0xBF == 0x8E:
            raise TpmPolicyFailed(f"wrong PIN: {e.message}", "the TPM counts wrong PINs against its "
                                  "dictionary-attack protection", rc=e.rc, command=e.command) from None
        if not reason and e.command == "TPM2_PolicyNV":
            floor = enrollment.floor(nv.read_counter(esys, counter))
            reason = revoked_reason(svn, floor)
        if reason:
            raise TpmPolicyFailed(f"{reason}; the TPM refused too: {e.message}", e.hint,
                                  rc=e.rc, command=e.command) from None
        raise
    finally:
        close_srk(esys, srk, transient)



def _tpm_unlock(esys, srk, enrollment, tree, tpmt, key_name, counter, entry, svn, blob, ticket,
                bank, pcrs, auth=b"") -> UnlockResult:
    """The TPM part of unlock (see module docstring for the command sequence)."""
    public_key = enrollment.public_key()
    key = obj = session = None
    try:
        obj = load_under_srk(esys, srk, blob)
        if ticket is None:
            key = policy_session.load_external_key(esys, tpmt)
            ticket = policy_session.verify_signature(esys, key, entry.tbs, entry.sig, public_key)
            policy_session.flush(esys, key)
            key = None
        session = policy_session.start_policy_session(esys, srk)
        policy_session.policy_pcr(esys, session, bank, pcrs)
        policy_session.policy_authorize(esys, session, entry.pol, entry.policy_ref, key_name, ticket)
        bound = max(0, digests.counter_bound(enrollment.c0, enrollment.f0, svn))
        policy_session.policy_nv_le(esys, session, counter, bound)
        if enrollment.f0 <= svn <= enrollment.max_svn:
            path = tree.path(svn - enrollment.f0)
        else:  # no branch exists: present the first group; the TPM must refuse
            path = tree.path(0) or [(tree.root, tree.root)]
        policy_session.policy_or_path(esys, session, path)
        if enrollment.pin_salt:
            policy_session.policy_auth_value(esys, session)
            esys.tr_set_auth(obj, auth)
        secret = policy_session.unseal(esys, obj, session)
        session = None  # the session ends with the Unseal (continueSession clear)
    finally:
        policy_session.flush(esys, session, key, obj)
    return UnlockResult(secret, svn, -1, list(esys.commands))



def _lock(path: str | os.PathLike | None, index: int):
    """Serialize floor changes: flock on the enrollment file and on a per-counter lock file
    (advance-floor runs in parallel end at the requested floor, never above)."""
    import contextlib
    import fcntl
    import tempfile

    @contextlib.contextmanager
    def held():
        fds = []
        try:
            lock_dir = os.environ.get("PCRTOOL_LOCK_DIR") or (
                "/run/lock" if os.access("/run/lock", os.W_OK) else tempfile.gettempdir())
            targets = [os.path.join(lock_dir, f"pcrtool-nv-{index:08x}.lock")]
            if path is not None:
                targets.insert(0, os.fspath(path))
            for t in targets:
                try:
                    fd = os.open(t, os.O_RDONLY | os.O_NOFOLLOW | (0 if t == os.fspath(path or "") else os.O_CREAT),
                                 0o600)
                except OSError as err:
                    raise TpmError(f"cannot open lock file {t}: {err.strerror}",
                                   hint="set PCRTOOL_LOCK_DIR to a writable directory") from None
                fds.append(fd)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            for fd in reversed(fds):
                os.close(fd)
    return held()



def verified_booted_svn(tcti: str | None, e: Enrollment, approvals: Approvals) -> int:
    """The highest svn the enrolled key approved, in scope, for the live PCRs — after checking
    the signature of EVERY in-scope entry of the file (a forged entry is refused, not skipped)."""
    public_key = e.public_key()
    check_key_matches(approvals, e)
    for x in scoped_entries(approvals, e):
        try:
            verify_entry(x, public_key)
        except SignatureError as err:
            raise PolicyRefused(f"approval svn {x.svn} does not verify: {err.message}",
                                hint="the approvals file was forged or edited; nothing was changed") from None
    with policy_session.open_esys(tcti) as esys:
        live = policy_session.read_pcrs(esys, e.hash_alg, e.pcrs)
    svns = [x.svn for x in scoped_entries(approvals, e, digests.policy_pcr(live)) if x.svn is not None]
    if not svns:
        raise PolicyRefused("the booted release has no approval in the enrolled scope "
                            f"({e.scope.describe()})", hint="boot and confirm the new release first, or pass --force")
    return max(svns)



def advance_floor(tcti: str | None, enrollment: Enrollment, to_svn: int, *, lock_path=None,
                  owner_auth: bytes | None = None) -> tuple[int, int]:
    """Raise the floor to ``to_svn`` by NV_Increment (k times for +k); returns (old, new) floor.

    Serialized (``_lock``) and re-reading the counter before every increment, so parallel runs
    stop exactly at ``to_svn``. Each increment is atomic; after a crash between increments the
    floor is lower than asked and re-running completes it. The floor never goes down. The
    counter's Name is checked before anything authorizes to it.
    """
    check_advance(to_svn, enrollment.max_svn, None)
    with _lock(lock_path, enrollment.counter_index), policy_session.open_esys(tcti) as esys:
        counter = counter_handle(esys, enrollment.counter_index, bytes.fromhex(enrollment.counter_name))
        old = current = enrollment.floor(nv.read_counter(esys, counter))
        opened = ()
        if owner_auth and current < to_svn:
            salt = (policy_session.pinned_persistent_srk(esys, base64.b64decode(enrollment.srk), bytes.fromhex(enrollment.srk_name))
                    if enrollment.srk and enrollment.srk_name else None)
            opened = policy_session.open_owner_session(esys, owner_auth, salt)
        try:
            while current < to_svn:
                nv.increment_counter(esys, counter, owner_auth)
                current = enrollment.floor(nv.read_counter(esys, counter))
        finally:
            policy_session.close_owner_session(esys, opened)
    return old, max(old, current)



def status(tcti: str | None, enrollment: Enrollment, approvals: Approvals | None = None) -> dict:
    """Counter, floor, window, the TPM commands one unlock costs and (with approvals) which
    approvals the live PCRs match."""
    with policy_session.open_esys(tcti) as esys:
        try:
            counter = counter_handle(esys, enrollment.counter_index, bytes.fromhex(enrollment.counter_name))
            value = nv.read_counter(esys, counter)
            problem = ""
        except PolicyRefused as err:
            value, problem = None, err.message
        live = policy_session.read_pcrs(esys, enrollment.hash_alg, enrollment.pcrs)
    out = {"counter_index": f"{enrollment.counter_index:#x}", "counter": value,
           "c0": enrollment.c0, "f0": enrollment.f0,
           "floor": enrollment.floor(value) if value is not None else None,
           "window": [enrollment.f0, enrollment.max_svn], "product": enrollment.product or None,
           "bank": enrollment.bank, "pcrs": list(enrollment.pcrs), "policy": enrollment.policy,
           "srk_name": enrollment.srk_name or None,
           "unlock_tpm_commands": unlock_command_count(enrollment),
           "live_policy_pcr": digests.policy_pcr(live).hex()}
    if problem or enrollment.binding_problem():
        out["problem"] = problem or enrollment.binding_problem()
    if approvals is not None:
        hits = scoped_entries(approvals, enrollment, digests.policy_pcr(live))
        out["matching_svns"] = [h.svn for h in hits]
    return out

