"""Allowlist mode on the device: seal to whole-release PCR tuples (see pcrtool.policy.allowlist).

Unlock: PolicyPCR(live) → PolicyOR path → PolicyNV(epoch counter ≤ epoch) → Unseal.

Changing the allowlist re-seals under ``epoch + 1`` and only then increments the epoch counter,
which kills every older blob (and every copy of one). The order makes it crash-safe: the new
enrollment is durably on disk before the increment, so a crash at any point leaves a blob that
unseals (the old one before the increment, the new one after it) and never revives an older one.

The former ``nv`` mode (PolicyAuthorizeNV with an HMAC update key) is gone: the update key had to
live on the device and crossed the bus in clear in TPM2_LoadExternal, so whoever sniffed it or
was root during an update could rewrite the NV allowlist later and revive a revoked release.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import asdict, dataclass
from typing import Sequence

from pcrtool.errors import PolicyRefused, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import allowlist
from pcrtool.policy import digests
from pcrtool.policy import strict
from pcrtool.policy.scope import SCOPE_BANKS
from pcrtool.tpm import nv, policy_session
from pcrtool.tpm.enroll import (ForeignIndex, UnlockResult, close_srk, counter_handle, ensure_counter, load_under_srk,
                                open_srk, with_pcr_retries)
from pcrtool.tpm.enrollment_file import (_ENROLL_HINT, _NAME_HEX, MAX_BLOB_BYTES, MAX_ENROLLMENT_BYTES, NV_INDEX_RANGE,
                                         blob_auth_policy, check_srk_name, need_pin, pin_auth_value, pinned_srk_name,
                                         require_srk_pin, sealed_policy)

DEFAULT_EPOCH_INDEX = 0x01805C10
MAX_LEAVES = 4096
NV_MODE_REMOVED = ("allowlist --mode nv was removed: its HMAC update key had to live on the device and "
                   "crossed the TPM bus in clear, so a sniffed or stolen key could restore an older allowlist")


@dataclass(frozen=True, slots=True)
class AllowlistEnrollment:
    mode: str            # "allowlist-direct"
    bank: str
    pcrs: tuple[int, ...]
    leaves: tuple[str, ...]
    index: int           # epoch counter
    index_name: str
    epoch: int           # counter bound at seal time
    policy: str
    blob: str
    version: int = 2
    srk_name: str = ""   # Name of the storage key sealed under (hex); "" only when explicitly unpinned
    srk: str = ""        # base64 serialized ESYS_TR of the persistent SRK; "" = transient primary
    pin_salt: str = ""   # hex; set when a PIN guards the object (PolicyAuthValue)

    @property
    def hash_alg(self) -> HashAlg:
        return HashAlg.from_name(self.bank)

    @property
    def pinned_srk(self) -> bytes | None:
        return pinned_srk_name(self.srk_name)

    @property
    def blob_bytes(self) -> bytes:
        return base64.b64decode(self.blob)

    def tree(self) -> digests.PolicyOrTree:
        return digests.PolicyOrTree.build([bytes.fromhex(x) for x in self.leaves])

    def binding_problem(self) -> str:
        root = sealed_policy(allowlist.direct_policy(self.tree().root, bytes.fromhex(self.index_name), self.epoch),
                             self.pin_salt)
        if root.hex() != self.policy or blob_auth_policy(self.blob_bytes) != root:
            return "enrollment fields do not give the sealed object's policy (the file was edited)"
        return ""

    def to_json(self) -> str:
        d = asdict(self)
        d["pcrs"], d["leaves"] = list(self.pcrs), list(self.leaves)
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str | bytes, source: str = "enrollment") -> "AllowlistEnrollment":
        root = strict.Node(strict.load_device_json(text, source, max_bytes=MAX_ENROLLMENT_BYTES, hint=_ENROLL_HINT),
                           source, hint=_ENROLL_HINT)
        root.obj({"mode"}, set(_FIELDS) | {"mode"})
        mode = root.value.get("mode")
        if mode == "allowlist-nv":
            raise root.fail(NV_MODE_REMOVED, "mode")
        root.check(mode == "allowlist-direct", "must be \"signed\" or \"allowlist-direct\"", "mode")
        version = root.int_("version", 0, 1000) if root.has("version") else 0
        root.check(version == 2, f"version {version} is not supported (enrol again)", "version")
        root.obj(set(_FIELDS) - {"srk_name", "srk", "pin_salt"}, set(_FIELDS) | {"mode"})
        pcrs = root.int_list("pcrs", 0, 23, 24)
        root.check(bool(pcrs) and list(pcrs) == sorted(set(pcrs)), "must be ascending PCR indices 0…23", "pcrs")
        bank = root.str_("bank", 8)
        root.check(bank in SCOPE_BANKS, "is not sha1, sha256, sha384 or sha512", "bank")
        leaves_node = root.child("leaves")
        leaves = []
        for item in leaves_node.items(MAX_LEAVES):
            item.check(isinstance(item.value, str) and len(item.value) == 64
                       and all(c in "0123456789abcdef" for c in item.value), "must be 32 bytes of lower-case hex")
            leaves.append(item.value)
        root.check(bool(leaves), "must not be empty", "leaves")
        e = cls(mode=mode, bank=bank, pcrs=pcrs, leaves=tuple(leaves),
                index=root.int_("index", *NV_INDEX_RANGE),
                index_name=root.str_("index_name", 68, _NAME_HEX, what="a SHA-256 NV Name in hex"),
                epoch=root.int_("epoch", 0, 2 ** 64 - 1), policy=root.hex_("policy", 32).hex(),
                blob=root.str_("blob", 4 * MAX_BLOB_BYTES // 3 + 4), version=version,
                srk_name=root.str_("srk_name", 68) if root.has("srk_name") else "",
                srk=root.str_("srk", 2048) if root.has("srk") else "",
                pin_salt=root.hex_("pin_salt", (0, 32)).hex() if root.has("pin_salt") else "")
        if e.srk:
            root.b64_("srk", 1024)
        blob = root.b64_("blob", MAX_BLOB_BYTES)
        strict.checked(lambda: blob_auth_policy(blob), root, "blob", "not a sealed object")
        strict.checked(lambda: check_srk_name(e.srk_name, source), root, "srk_name", "bad SRK Name")
        return e


_FIELDS = ("bank", "pcrs", "leaves", "index", "index_name", "epoch", "policy", "blob", "version", "srk_name", "srk",
           "pin_salt")


# --- enrol / unlock ---------------------------------------------------------------------------------

def enroll_allowlist(tcti: str | None, tuples: Sequence[tuple[str, PcrValues]], *, bank: HashAlg,
                     pcrs: Sequence[int], secret: bytes, mode: str = "direct",
                     index: int | None = None, pinned_srk: bytes | None = None,
                     owner_auth: bytes | None = None, commit=None, pin: bytes | None = None) -> AllowlistEnrollment:
    """Seal ``secret`` to the allowlist under the NEXT epoch, call ``commit(enrollment)`` (which
    must store it durably), then increment the epoch counter: every older blob dies only once the
    new one is safe. ``pinned_srk``: a re-seal must happen under the storage key the old
    enrollment pinned (checked before anything changes)."""
    if mode != "direct":
        raise UsageError(NV_MODE_REMOVED if mode == "nv" else f"unknown allowlist mode {mode!r}",
                         hint="use --mode direct (the epoch counter kills every older blob on update)")
    policy = allowlist.build_allowlist_policy(tuples)
    if len(policy.leaves) > MAX_LEAVES:
        raise UsageError(f"{len(policy.leaves)} release tuples, more than the limit of {MAX_LEAVES}")
    index = DEFAULT_EPOCH_INDEX if index is None else index
    with policy_session.open_esys(tcti) as esys:
        # The storage key first: a refused pin must not have touched the epoch.
        srk = policy_session.ensure_persistent_srk(esys, owner_auth, pinned_srk)
        opened = policy_session.open_owner_session(esys, owner_auth, srk.handle)
        try:
            return _seal_and_commit(esys, srk, policy, bank, pcrs, secret, index, owner_auth, commit, pin)
        finally:
            policy_session.close_owner_session(esys, opened)


def _seal_and_commit(esys, srk, policy, bank, pcrs, secret, index, owner_auth, commit, pin):
    """Seal under epoch + 1, ``commit`` (durable), then increment the epoch counter."""
    handle, value, name, _ = ensure_counter(esys, index, owner_auth)
    epoch = value + 1
    pin_salt = os.urandom(32).hex() if pin else ""
    auth_policy = sealed_policy(allowlist.direct_policy(policy.root, name, epoch), pin_salt)
    blob = policy_session.seal(esys, srk.handle, secret, auth_policy, pin_auth_value(pin, pin_salt) if pin else b"")
    e = AllowlistEnrollment("allowlist-direct", bank.bank_name, tuple(sorted(pcrs)),
                            tuple(x.hex() for x in policy.leaves), index, name.hex(), epoch,
                            auth_policy.hex(), base64.b64encode(blob).decode(), srk_name=srk.name.hex(),
                            srk=base64.b64encode(srk.serialized).decode(), pin_salt=pin_salt)
    if commit is not None:
        commit(e)
    if nv.read_counter(esys, handle) < epoch:   # a re-run after a crash may find it done
        nv.increment_counter(esys, handle, owner_auth)
    return e


def unlock_allowlist(tcti: str | None, e: AllowlistEnrollment, *, attempt_anyway: bool = False,
                     blob: bytes | None = None, allow_unpinned_srk: bool = False,
                     pin: bytes | None = None) -> UnlockResult:
    """Replay the live PCRs through the allowlist tree and unseal (a PCR that moves during an
    attempt starts it again, as in signed mode: ``pcrtool.tpm.enroll.with_pcr_retries``)."""
    require_srk_pin(e, allow_unpinned_srk or attempt_anyway)
    auth = need_pin(e, pin)
    bank, pcrs = e.hash_alg, e.pcrs
    blob = e.blob_bytes if blob is None else blob
    edited = e.binding_problem()
    with policy_session.open_esys(tcti) as esys:
        return with_pcr_retries(esys, bank, pcrs, lambda live: _unlock_attempt(
            esys, e, live, blob, attempt_anyway or bool(edited), edited, auth))


def _unlock_attempt(esys, e: AllowlistEnrollment, live, blob: bytes, attempt_anyway: bool,
                    edited: str = "", auth: bytes = b"") -> UnlockResult:
    bank, pcrs = e.hash_alg, e.pcrs
    tree = e.tree()
    leaf = tree.leaves.index(digests.policy_pcr(live)) if digests.policy_pcr(live) in tree.leaves else None
    if leaf is None and not attempt_anyway:
        raise PolicyRefused("the live PCRs match no allowlisted release (unknown, tampered or revoked)",
                            hint="boot an allowlisted release or use the recovery key")
    try:
        handle = counter_handle(esys, e.index, bytes.fromhex(e.index_name))
    except ForeignIndex as fi:
        attrs = nv.read_nv_public(esys, fi.handle).attributes
        if not attempt_anyway or not attrs & digests.TPMA_NV.NO_DA:
            raise
        handle = fi.handle
    srk, transient = open_srk(esys, e)
    obj = session = None
    try:
        obj = load_under_srk(esys, srk, blob)
        session = policy_session.start_policy_session(esys, srk)
        policy_session.policy_pcr(esys, session, bank, pcrs)
        policy_session.policy_or_path(esys, session, tree.path(leaf if leaf is not None else 0))
        policy_session.policy_nv_le(esys, session, handle, e.epoch)
        if e.pin_salt:
            policy_session.policy_auth_value(esys, session)
            esys.tr_set_auth(obj, auth)
        secret = policy_session.unseal(esys, obj, session)
        session = None
    except PolicyRefused as err:
        if edited:
            raise type(err)(f"{edited}; the TPM refused too: {err.message}", err.hint,
                            **({"rc": err.rc, "command": err.command} if hasattr(err, "command") else {})) from None
        raise
    finally:
        policy_session.flush(esys, session, obj)
        close_srk(esys, srk, transient)
    return UnlockResult(secret, -1, -1, list(esys.commands))


def allowlist_unlock_command_count(e: AllowlistEnrollment) -> int:
    """TPM commands of one successful allowlist unlock (no PCR retry): NV_ReadPublic (epoch
    counter), PCR_Read, ReadPublic (SRK), Load, StartAuthSession, PolicyPCR, PolicyOR × tree depth,
    PolicyNV, [PolicyAuthValue with a PIN], Unseal, FlushContext(object) — for files sealed under a
    transient SRK, CreatePrimary and FlushContext(SRK) instead of ReadPublic."""
    return 9 + len(e.tree().path(0)) + (0 if e.srk and e.srk_name else 1) + (1 if e.pin_salt else 0)


def allowlist_status(e: AllowlistEnrollment) -> dict:
    """What `tpm status` shows of an allowlist enrollment (from the file; no TPM command)."""
    return {"mode": e.mode, "index": f"{e.index:#x}", "epoch": e.epoch, "leaves": len(e.leaves),
            "policy": e.policy, "srk_name": e.srk_name or None, "unlock_tpm_commands": allowlist_unlock_command_count(e)}


def update_allowlist(tcti: str | None, e: AllowlistEnrollment, tuples: Sequence[tuple[str, PcrValues]], *,
                     commit, owner_auth: bytes | None = None, secret: bytes | None = None,
                     pin: bytes | None = None) -> AllowlistEnrollment:
    """Change the allowlist (e.g. revoke a release): unlock now (an allowlisted release must be
    booted), re-seal under epoch + 1, ``commit`` the new enrollment durably, then increment the
    epoch counter (kills every older blob, including copies). Crash-safe at every step; re-running
    after a crash completes it."""
    if secret is None:
        secret = unlock_allowlist(tcti, e, pin=pin).secret
    return enroll_allowlist(tcti, tuples, bank=e.hash_alg, pcrs=e.pcrs, secret=secret, mode="direct",
                            index=e.index, pinned_srk=e.pinned_srk, owner_auth=owner_auth, commit=commit,
                            pin=pin if e.pin_salt else None)


def write_durably(path, text: str) -> None:
    """Atomic replace plus fsync of the directory: the new enrollment survives a power loss
    before the epoch increment that depends on it."""
    from pcrtool.fileio import write_atomic

    write_atomic(path, text, mode=0o600, what="enrollment")
    fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
