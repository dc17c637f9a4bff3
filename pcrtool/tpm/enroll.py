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
import re
import struct
from dataclasses import asdict, dataclass, field
from typing import Sequence

from pcrtool.errors import (FormatError, InputFileError, PolicyRefused, SignatureError, TpmError, TpmPolicyFailed,
                            UsageError)
from pcrtool.model import HashAlg
from pcrtool.policy import digests
from pcrtool.policy import strict
from pcrtool.policy.approvals import ApprovalEntry, Approvals, verify_entry
from pcrtool.policy.downgrade import (MAX_WINDOW, FloorDecision, check_advance, check_same_counter, check_window,
                                      choose_approval, enrolment_tree, floor_decision, floor_of, revoked_reason)
from pcrtool.policy.scope import SCOPE_BANKS, SVN_MAX, Scope, check_product
from pcrtool.tpm import nv, policy_session

DEFAULT_COUNTER_INDEX = 0x01805C00
ENROLLMENT_VERSION = 2
MAX_ENROLLMENT_BYTES = 256 * 1024
MAX_BLOB_BYTES = 4096
MAX_PEM_CHARS = 8192
NV_INDEX_RANGE = (0x01000000, 0x01FFFFFF)
_NAME_HEX = re.compile(r"000b[0-9a-f]{64}")
_ENROLL_HINT = "enrol again with `pcrtool tpm enroll` (the recovery key opens the volume meanwhile)"


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What unlock needs, stored together with the sealed blob.

    Every field is either bound by the TPM (it enters the sealed policy tree: counter Name, c0,
    f0, window, key Name, product, bank, PCRs; or it is checked against the TPM before use: the
    SRK and counter Names) or derived from such a field (pkfp, policy). ``binding_problem``
    recomputes the tree and compares it with the sealed object's authPolicy.
    """

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
    srk_name: str = ""   # Name of the storage key sealed under (hex); "" only when explicitly unpinned
    product: str = ""
    srk: str = ""        # base64 serialized ESYS_TR of the persistent SRK (0x81000001); "" = transient
    pin_salt: str = ""   # hex; set when a PIN guards the object (PolicyAuthValue)

    @property
    def blob_bytes(self) -> bytes:
        return base64.b64decode(self.blob)

    @property
    def hash_alg(self) -> HashAlg:
        return HashAlg.from_name(self.bank)

    @property
    def scope(self) -> Scope:
        return Scope(self.hash_alg, tuple(self.pcrs), self.product)

    @property
    def pinned_srk(self) -> bytes | None:
        return pinned_srk_name(self.srk_name)

    def floor(self, counter: int) -> int:
        return floor_of(self.c0, self.f0, counter)

    @property
    def max_svn(self) -> int:
        return self.f0 + self.window

    def public_key(self):
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
        return load_pem_public_key(self.public_key_pem.encode())

    def tree(self) -> digests.PolicyOrTree:
        return enrolment_tree(bytes.fromhex(self.key_name), bytes.fromhex(self.counter_name),
                              self.c0, self.f0, self.window, self.scope)

    def binding_problem(self) -> str:
        """"" when the fields give exactly the sealed object's authPolicy, else why not (an
        edited file: the TPM will refuse it; pcrtool says so first)."""
        root = sealed_policy(self.tree().root, self.pin_salt)
        if root.hex() != self.policy:
            return "enrollment fields do not give its recorded policy (the file was edited)"
        if blob_auth_policy(self.blob_bytes) != root:
            return "enrollment fields do not give the sealed object's policy (the file was edited)"
        return ""

    def to_json(self) -> str:
        d = asdict(self)
        d["pcrs"] = list(self.pcrs)
        return json.dumps(d, indent=2) + "\n"

    @classmethod
    def parse(cls, text: str | bytes, source: str = "enrollment") -> "Enrollment":
        """Strict, field by field (errors carry the JSON path; limits in README.md)."""
        root = strict.Node(strict.load_device_json(text, source, max_bytes=MAX_ENROLLMENT_BYTES, hint=_ENROLL_HINT),
                           source, hint=_ENROLL_HINT)
        root.obj({"mode"}, set(_FIELDS) | {"mode"})
        root.check(root.value.get("mode") == "signed", "must be \"signed\"", "mode")
        version = root.int_("version", 0, 1000) if root.has("version") else 0
        if version != ENROLLMENT_VERSION:
            raise root.fail(f"version {version}: written before pcrtool bound the PCR selection, bank and "
                            "product in the TPM (such a file can be edited to unlock revoked releases); "
                            "not accepted", "version")
        root.obj(set(_FIELDS) - {"srk_name", "product", "srk", "pin_salt"}, set(_FIELDS) | {"mode"})
        window = root.int_("window", 0, MAX_WINDOW)
        f0 = root.int_("f0", 0, SVN_MAX - window)
        pcrs = root.int_list("pcrs", 0, 23, 24)
        root.check(bool(pcrs) and list(pcrs) == sorted(set(pcrs)), "must be ascending PCR indices 0…23", "pcrs")
        bank = root.str_("bank", 8)
        root.check(bank in SCOPE_BANKS, "is not sha1, sha256, sha384 or sha512", "bank")
        product = root.str_("product", 64) if root.has("product") else ""
        strict.checked(lambda: check_product(product), root, "product", "bad product id")
        pem = root.str_("public_key_pem", MAX_PEM_CHARS)
        e = cls(mode="signed", counter_index=root.int_("counter_index", *NV_INDEX_RANGE),
                counter_name=root.str_("counter_name", 68, _NAME_HEX, what="a SHA-256 NV Name in hex"),
                c0=root.int_("c0", 0, 2 ** 64 - 2 - MAX_WINDOW), f0=f0, window=window, bank=bank, pcrs=pcrs,
                public_key_pem=pem, key_name=root.str_("key_name", 68, _NAME_HEX, what="a SHA-256 key Name in hex"),
                pkfp=root.hex_("pkfp", 32).hex(), policy=root.hex_("policy", 32).hex(),
                blob=root.str_("blob", 4 * MAX_BLOB_BYTES // 3 + 4), version=version,
                srk_name=root.str_("srk_name", 68) if root.has("srk_name") else "", product=product,
                srk=root.str_("srk", 2 * MAX_SRK_RECORD) if root.has("srk") else "",
                pin_salt=root.hex_("pin_salt", (0, 32)).hex() if root.has("pin_salt") else "")
        if e.srk:
            root.b64_("srk", MAX_SRK_RECORD)
        blob = root.b64_("blob", MAX_BLOB_BYTES)
        strict.checked(lambda: blob_auth_policy(blob), root, "blob", "not a sealed object")
        strict.checked(lambda: check_srk_name(e.srk_name, source), root, "srk_name", "bad SRK Name")
        key = strict.checked(e.public_key, root, "public_key_pem", "not a PEM public key")
        tpmt, name = strict.checked(lambda: _key_material(key), root, "public_key_pem", "unusable key")
        root.check(name.hex() == e.key_name, "is not the Name of public_key_pem", "key_name")
        root.check(digests.public_key_fingerprint(key).hex() == e.pkfp, "is not the fingerprint of public_key_pem", "pkfp")
        return e


_FIELDS = ("counter_index", "counter_name", "c0", "f0", "window", "bank", "pcrs", "public_key_pem", "key_name",
           "pkfp", "policy", "blob", "version", "srk_name", "product", "srk", "pin_salt")
MAX_SRK_RECORD = 1024


PIN_ITERATIONS = 10_000


def pin_auth_value(pin: bytes, salt_hex: str) -> bytes:
    """The sealed object's authValue for a PIN: PBKDF2-HMAC-SHA256(pin, salt, 10,000, 32 bytes)
    (the salt is in the enrollment; the PIN is not, so a file reader cannot derive it)."""
    import hashlib
    return hashlib.pbkdf2_hmac("sha256", pin, bytes.fromhex(salt_hex), PIN_ITERATIONS, 32)


def sealed_policy(root: bytes, pin_salt: str) -> bytes:
    """The object's authPolicy: the tree root, then PolicyAuthValue when a PIN guards it."""
    return digests.policy_auth_value(root) if pin_salt else root


def need_pin(e, pin: bytes | None) -> bytes:
    """The authValue for a PIN-guarded enrollment (b"" for one without a PIN)."""
    if not e.pin_salt:
        return b""
    if not pin:
        raise UsageError("this enrollment is guarded by a PIN", hint="pass --pin-file FILE")
    return pin_auth_value(pin, e.pin_salt)


def blob_auth_policy(blob: bytes) -> bytes:
    """authPolicy of a sealed blob (TPM2B_PRIVATE || TPM2B_PUBLIC(keyedhash)), parsed without
    tpm2-pytss: the TPM checks at TPM2_Load that this public area belongs to the private part."""
    try:
        (n,) = struct.unpack_from(">H", blob, 0)
        off = 2 + n
        (m,) = struct.unpack_from(">H", blob, off)
        pub = blob[off + 2: off + 2 + m]
        if len(pub) != m or off + 2 + m != len(blob) or n == 0:
            raise ValueError("sizes do not add up")
        (plen,) = struct.unpack_from(">H", pub, 8)   # type, nameAlg, objectAttributes, then authPolicy
        if plen != 32 or len(pub) < 10 + plen:
            raise ValueError("no SHA-256 authPolicy")
        return pub[10:10 + plen]
    except (struct.error, ValueError) as e:
        raise FormatError(f"sealed blob is damaged ({e})") from None


SRK_NAME_LENGTH = 34   # TPM_ALG_SHA256 || SHA-256 of the public area


def check_srk_name(value, source: str) -> None:
    """The enrollment's ``srk_name``: a SHA-256 Name in hex ("" only for an unpinned file)."""
    if not isinstance(value, str):
        raise FormatError(f"{source}: srk_name has the wrong type", hint="enroll again")
    if value:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != SRK_NAME_LENGTH or raw[:2] != b"\x00\x0b" or value != raw.hex():
            raise FormatError(f"{source}: srk_name is not a SHA-256 TPM Name", hint="enroll again")


def pinned_srk_name(value: str) -> bytes | None:
    return bytes.fromhex(value) if value else None


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


def require_srk_pin(e, allow_unpinned: bool) -> None:
    """The SRK pin is mandatory: an enrollment without one is refused unless explicitly waived."""
    if not e.srk_name and not allow_unpinned:
        raise PolicyRefused("the enrollment pins no storage root key (srk_name is empty): the session "
                            "carrying the secret would trust any key the TPM or a device on its bus presents",
                            hint="enrol again (pins the SRK), or pass --allow-unpinned-srk to accept that risk")


def _key_material(public_key):
    tpmt = digests.public_key_tpmt(public_key)
    return tpmt, digests.name_of(tpmt)


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
    tpmt, key_name = _key_material(public_key)
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


def state_dir(*, create: bool = False) -> str:
    """pcrtool's state directory: $PCRTOOL_STATE_DIR, else /var/lib/pcrtool for root, else
    $XDG_STATE_HOME/pcrtool (default ~/.local/state/pcrtool); created 0700 on demand."""
    path = os.environ.get("PCRTOOL_STATE_DIR")
    if not path:
        if os.geteuid() == 0:
            path = "/var/lib/pcrtool"
        else:
            base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
            path = os.path.join(base, "pcrtool")
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as err:
            raise InputFileError(f"cannot create the state directory {path}: {err.strerror}",
                                 hint="set PCRTOOL_STATE_DIR to a writable directory") from None
    return path


class PendingEnrolment:
    """``OUT.pending`` next to the enrollment file: a first enrolment on a fresh counter that has
    not finished, authenticated by an HMAC keyed with the secret being sealed (root without the
    secret cannot forge one). A re-run of the same enrolment (same secret, same --floor) after a
    crash takes the counter mapping from it instead of refusing an "existing" counter:

    - written before the counter is defined/initialised (c0 unknown: the counter was fresh, so no
      enrolment's floor lives in it; whatever value it has now becomes c0), then again with c0;
    - once it holds c0, a resume keeps that mapping (c0, f0): if the enrolment had completed and
      the floor was raised since, the resumed one has the same, raised floor;
    - removed after the enrollment file is written.
    """

    def __init__(self, path: str | os.PathLike, secret: bytes) -> None:
        import hashlib
        self.path = os.fspath(path)
        self._key = hashlib.sha256(b"pcrtool pending enrolment\0" + secret).digest()

    @classmethod
    def for_output(cls, output: str | os.PathLike, secret: bytes, counter_index: int, *,
                   streamed: bool) -> "PendingEnrolment":
        """``OUT.pending`` next to a regular enrollment file. An output written in place (``-``,
        /dev/null, a FIFO) has no directory of its own: the record goes to pcrtool's state
        directory (``state_dir``) as ``enroll-<counter index>.pending`` — one per counter, like
        the floor it protects, whatever the current directory is."""
        if not streamed:
            return cls(f"{os.fspath(output)}.pending", secret)
        return cls(os.path.join(state_dir(create=True), f"enroll-{counter_index:08x}.pending"), secret)

    def _mac(self, body: dict) -> str:
        import hashlib
        import hmac
        return hmac.new(self._key, json.dumps(body, sort_keys=True).encode(), hashlib.sha256).hexdigest()

    def save(self, index: int, f0: int, c0: int | None) -> None:
        from pcrtool.tpm.policy_allowlist import write_durably
        body = {"counter_index": index, "f0": f0, "c0": c0}
        write_durably(self.path, json.dumps({**body, "mac": self._mac(body)}) + "\n")

    def load(self, index: int, floor: int | None) -> tuple[int | None, int] | None:
        """(c0 or None, f0) of a matching, authentic pending record; None otherwise."""
        import hmac
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read(4096))
            body = {"counter_index": doc["counter_index"], "f0": doc["f0"], "c0": doc["c0"]}
            ok = hmac.compare_digest(str(doc["mac"]), self._mac(body))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not ok or body["counter_index"] != index or (floor is not None and floor != body["f0"]):
            return None
        if not isinstance(body["f0"], int) or not (body["c0"] is None or isinstance(body["c0"], int)):
            return None
        return body["c0"], body["f0"]

    def remove(self) -> None:
        import contextlib
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


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


def scoped_entries(approvals: Approvals, e: Enrollment, pol: bytes | None = None) -> list[ApprovalEntry]:
    """Entries for the enrolled key and scope (bank, PCRs, product), highest svn first; with
    ``pol`` only those approving that PolicyPCR digest."""
    pkfp = bytes.fromhex(e.pkfp)
    hits = [x for x in approvals.entries if x.bank == e.hash_alg and x.pcrs == tuple(e.pcrs) and x.pkfp == pkfp
            and (pol is None or x.pol == pol) and (x.scope is None or x.scope == e.scope)]
    return sorted(hits, key=lambda x: -1 if x.svn is None else x.svn, reverse=True)


def check_key_matches(approvals: Approvals, e: Enrollment) -> None:
    """Wrong-key approvals are refused before the TPM is touched, naming both keys (exit 4)."""
    mine = bytes.fromhex(e.pkfp)
    if not approvals.entries or any(x.pkfp == mine for x in approvals.entries):
        return
    theirs = sorted({x.pkfp.hex()[:16] for x in approvals.entries})
    raise PolicyRefused(f"the approvals are signed by key {', '.join(theirs)}…, the device trusts key "
                        f"{e.pkfp[:16]}… (enrolled)", hint="use the approvals of this device's release key")


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
    tpmt, key_name = _key_material(public_key)
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


def unlock_command_count(e: Enrollment, svn: int | None = None) -> int:
    """TPM commands of one successful signed unlock (no PCR retry): NV_ReadPublic (counter),
    PCR_Read, ReadPublic (SRK), Load, LoadExternal, VerifySignature, FlushContext(key),
    StartAuthSession, PolicyPCR, PolicyAuthorize, PolicyNV, PolicyOR × tree depth, [PolicyAuthValue
    with a PIN], Unseal, FlushContext(object) — for files sealed under a transient SRK,
    CreatePrimary and FlushContext(SRK) instead of ReadPublic."""
    tree = e.tree()
    depth = len(tree.path((svn if svn is not None else e.f0) - e.f0))
    return 13 + depth + (0 if e.srk and e.srk_name else 1) + (1 if e.pin_salt else 0)


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


def write_enrollment(path: str | os.PathLike, enrollment: Enrollment) -> None:
    from pcrtool.fileio import write_atomic
    write_atomic(path, enrollment.to_json(), mode=0o600, what="enrollment")


def read_enrollment(path: str | os.PathLike) -> Enrollment:
    from pcrtool.fileio import read_bytes
    return Enrollment.parse(read_bytes(path, what="enrollment", limit=MAX_ENROLLMENT_BYTES + 1), source=str(path))
