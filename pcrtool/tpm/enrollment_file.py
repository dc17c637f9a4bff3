"""The enrollment file of signed-policy enrolment (tpm/enroll.py writes and unlocks it): the
``Enrollment`` model with its strict parser, the values derived from it without a TPM (sealed
policy, PIN authValue, SRK pin, the approvals in its scope, the TPM commands one unlock costs),
and the crash-resume record of an unfinished first enrolment (``PendingEnrolment``).

Nothing here sends a TPM command or imports tpm2-pytss; every field the TPM binds is described
in tpm/enroll.py's docstring and in ARCHITECTURE.md.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
from dataclasses import asdict, dataclass

from pcrtool.errors import FormatError, InputFileError, PolicyRefused, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import digests
from pcrtool.policy import strict
from pcrtool.policy.approvals import ApprovalEntry, Approvals
from pcrtool.policy.downgrade import MAX_WINDOW, enrolment_tree, floor_of
from pcrtool.policy.scope import SCOPE_BANKS, SVN_MAX, Scope, check_product

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
        tpmt, name = strict.checked(lambda: key_material(key), root, "public_key_pem", "unusable key")
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



def require_srk_pin(e, allow_unpinned: bool) -> None:
    """The SRK pin is mandatory: an enrollment without one is refused unless explicitly waived."""
    if not e.srk_name and not allow_unpinned:
        raise PolicyRefused("the enrollment pins no storage root key (srk_name is empty): the session "
                            "carrying the secret would trust any key the TPM or a device on its bus presents",
                            hint="enrol again (pins the SRK), or pass --allow-unpinned-srk to accept that risk")



def key_material(public_key):
    tpmt = digests.public_key_tpmt(public_key)
    return tpmt, digests.name_of(tpmt)



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



def unlock_command_count(e: Enrollment, svn: int | None = None) -> int:
    """TPM commands of one successful signed unlock (no PCR retry): NV_ReadPublic (counter),
    PCR_Read, ReadPublic (SRK), Load, LoadExternal, VerifySignature, FlushContext(key),
    StartAuthSession, PolicyPCR, PolicyAuthorize, PolicyNV, PolicyOR × tree depth, [PolicyAuthValue
    with a PIN], Unseal, FlushContext(object) — for files sealed under a transient SRK,
    CreatePrimary and FlushContext(SRK) instead of ReadPublic."""
    tree = e.tree()
    depth = len(tree.path((svn if svn is not None else e.f0) - e.f0))
    return 13 + depth + (0 if e.srk and e.srk_name else 1) + (1 if e.pin_salt else 0)



def write_enrollment(path: str | os.PathLike, enrollment: Enrollment) -> None:
    from pcrtool.fileio import write_atomic
    write_atomic(path, enrollment.to_json(), mode=0o600, what="enrollment")
