"""Release approvals in systemd's ``.pcrsig`` JSON shape (systemd-reference.md §1.5–1.6).

An approval entry says "the key approves this PolicyPCR digest". It is signed over
``approvedPolicy || policyRef`` with RSASSA-PKCS1-v1_5/SHA-256 for *every* bank (systemd ≤ 259
wrongly signs non-sha256 banks with the bank hash; only SHA-256 ever verifies in the TPM).
pcrtool carries the release's security version (svn) and the approval's scope (product, bank, PCR
selection) in the policyRef: the entry's ``ref`` string is ``pcrtool-svn=<n>[,product=<p>],bank=<b>,
pcrs=<a+b>`` (exact grammar: pcrtool.policy.scope) and the policyRef is SHA-256 of that string, as
systemd's ``--policyref`` does; ``tbs`` holds the exact bytes to sign. Entries without ``ref`` (svn unset) are byte-for-byte
what ``systemd-measure sign`` writes. Pure: the signature is produced by a Signer passed in.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from pcrtool.errors import PcrtoolError, SignatureError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import scope as policy_scope
from pcrtool.policy import strict
from pcrtool.policy.digests import authorize_tbs, policy_pcr, public_key_fingerprint

SVN_MAX = policy_scope.SVN_MAX
PCRSIG_BANKS = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
MAX_APPROVALS_BYTES = 4 * 1024 * 1024   # a .pcrsig file
MAX_ENTRIES = 4096                      # entries over all banks
MAX_SIG_BYTES = 1024                    # RSA-4096 signature (512) or DER ECDSA, with room
MAX_FOREIGN_REF = 256                   # a non-pcrtool ref string (systemd user's own)


def svn_from_ref(ref: str | None) -> int | None:
    """The svn an entry's ``ref`` carries, or None for systemd-style entries (no or a foreign ref).
    A ``pcrtool-`` ref that is not canonical raises FormatError."""
    if not ref:
        return None
    parsed = policy_scope.parse_ref(ref)
    return parsed.svn if parsed else None


@functools.lru_cache(maxsize=4096)
def policy_ref_bytes(ref: str | None) -> bytes:
    """policyRef as the TPM sees it: empty, or SHA-256 of the ref string (systemd's convention)."""
    return hashlib.sha256(ref.encode()).digest() if ref else b""


@dataclass(frozen=True, slots=True)
class ApprovalEntry:
    """One ``.pcrsig`` entry: an approved PolicyPCR digest for one bank and PCR mask."""

    bank: HashAlg
    pcrs: tuple[int, ...]
    pkfp: bytes
    pol: bytes
    sig: bytes | None = None
    ref: str | None = None

    @property
    def policy_ref(self) -> bytes:
        return policy_ref_bytes(self.ref)

    @property
    def tbs(self) -> bytes:
        return authorize_tbs(self.pol, self.policy_ref)

    @property
    def svn(self) -> int | None:
        return svn_from_ref(self.ref)

    @property
    def scope(self) -> policy_scope.Scope | None:
        """The product/bank/PCR scope the ref carries (None for systemd-style entries)."""
        parsed = policy_scope.parse_ref(self.ref) if self.ref else None
        return parsed.scope if parsed else None

    @property
    def key(self) -> tuple:
        return (self.bank, self.pcrs, self.pkfp, self.pol, self.ref)

    def to_json(self, *, with_tbs: bool | None = None) -> dict:
        """systemd-measure sign's keys and order: pcrs, pkfp, ref (with a policyRef), pol, sig.
        ``tbs`` (the bytes to sign) only on unsigned entries of the offline flow, or when asked."""
        out: dict = {"pcrs": list(self.pcrs), "pkfp": self.pkfp.hex()}
        if self.ref:
            out["ref"] = self.ref
        out["pol"] = self.pol.hex()
        if self.sig is not None:
            out["sig"] = base64.b64encode(self.sig).decode()
        if with_tbs or (with_tbs is None and self.sig is None):
            out["tbs"] = self.tbs.hex()
        return out


@dataclass(frozen=True, slots=True)
class ApprovalTarget:
    """What one approval covers: predicted PCR values (one or more banks) and the release svn."""

    values: PcrValues
    svn: int | None = None
    label: str = ""
    product: str = ""


def build_entries(targets: Iterable[ApprovalTarget], public_key,
                  banks: Sequence[HashAlg] | None = None, *, product: str | None = None) -> list[ApprovalEntry]:
    """Unsigned entries: per target and bank, the PolicyPCR digest of its predicted PCRs, with a
    scoped ref (svn, ``product`` or the target's, bank, PCRs) when the target has an svn."""
    pkfp = public_key_fingerprint(public_key)
    out: list[ApprovalEntry] = []
    for target in targets:
        for bank, pcrs in target.values.values.items():
            if banks is not None and bank not in banks:
                continue
            if bank not in PCRSIG_BANKS:
                raise UsageError(f"bank {bank.bank_name} cannot appear in a .pcrsig",
                                 hint="use sha1, sha256, sha384 or sha512")
            if not pcrs:
                continue
            single = PcrValues({bank: dict(pcrs)})
            scope = policy_scope.Scope(bank, tuple(sorted(pcrs)), target.product if product is None else product)
            ref = scope.ref(target.svn) if target.svn is not None else None
            out.append(ApprovalEntry(bank, tuple(sorted(pcrs)), pkfp, policy_pcr(single), None, ref))
    if not out:
        raise PcrtoolError("nothing to approve: no PCR values in the selected banks",  # exit 1
                           hint="choose --banks/--pcrs the predictions carry")
    return out


Sign = Callable[[bytes], bytes]


def sign_entries(entries: Iterable[ApprovalEntry], sign: Sign) -> list[ApprovalEntry]:
    """Fill ``sig`` with ``sign(tbs)``; ``sign`` must be RSASSA-PKCS1-v1_5 over SHA-256 of tbs."""
    return [replace(e, sig=sign(e.tbs)) for e in entries]


def signer_callable(signer) -> Sign:
    """Adapt a pcrtool Signer to ``Sign``: PKCS#1 v1.5 with SHA-256 for every bank."""
    from pcrtool.sign.api import Padding

    return lambda tbs: signer.sign(tbs, HashAlg.SHA256, Padding.PKCS1V15)


def verify_entry(entry: ApprovalEntry, public_key) -> None:
    """Check an entry's signature the way the TPM will (VerifySignature, RSASSA/SHA-256)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if entry.sig is None:
        raise SignatureError(f"{entry.bank.bank_name} entry {entry.pol.hex()[:16]}… is not signed",
                             hint="sign it (pcrtool policy approve) or attach a signature")
    if entry.pkfp != public_key_fingerprint(public_key):
        raise SignatureError(f"entry {entry.pol.hex()[:16]}… was made for another key (pkfp differs)")
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(entry.sig, entry.tbs, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(entry.sig, entry.tbs, ec.ECDSA(hashes.SHA256()))
        else:
            raise SignatureError(f"unsupported key type {type(public_key).__name__}")
    except InvalidSignature:
        raise SignatureError(f"signature of {entry.bank.bank_name} entry {entry.pol.hex()[:16]}… does not verify",
                             hint="it was signed by another key, over other bytes, or with another hash") from None


# --- the document -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Approvals:
    """A whole ``.pcrsig`` document: entries in file order."""

    entries: tuple[ApprovalEntry, ...]

    def to_json(self) -> dict:
        out: dict[str, list] = {}
        for bank in sorted({e.bank for e in self.entries}, key=lambda a: a.bank_name):
            out[bank.bank_name] = [e.to_json() for e in self.entries if e.bank == bank]
        return out

    def dumps(self, *, pretty: bool = False) -> str:
        if pretty:
            return json.dumps(self.to_json(), indent=2) + "\n"
        return json.dumps(self.to_json(), separators=(",", ":")) + "\n"

    def merged(self, newer: Iterable[ApprovalEntry]) -> "Approvals":
        """``--append``: keep existing entries, add new ones, a re-signed entry replaces its twin."""
        newer = list(newer)
        replaced = {e.key for e in newer}
        kept = [e for e in self.entries if e.key not in replaced]
        return Approvals(tuple(kept + newer))

    def find(self, bank: HashAlg, pcrs: Sequence[int], pkfp: bytes, pol: bytes) -> list[ApprovalEntry]:
        """Entries for this live PolicyPCR digest, highest svn first (systemd matches bank, pcrs,
        pkfp, pol in that order)."""
        hits = [e for e in self.entries if e.bank == bank and e.pcrs == tuple(pcrs)
                and e.pkfp == pkfp and e.pol == pol]
        return sorted(hits, key=lambda e: -1 if e.svn is None else e.svn, reverse=True)

    @classmethod
    def parse(cls, untrusted_text: str | bytes, *, source: str = "approvals") -> "Approvals":
        """Strict: every entry checked field by field, errors name the JSON path (limits:
        MAX_APPROVALS_BYTES, MAX_ENTRIES, pcrtool.policy.strict). The file is the device's, so
        attacker-reachable: only the signatures, checked later by the TPM, make an entry count."""
        hint = "expected systemd .pcrsig JSON: {\"sha256\": [{\"pcrs\": [11], \"pkfp\": …, \"pol\": …, \"sig\": …}]}"
        root = strict.Node(strict.load_device_json(untrusted_text, source, max_bytes=MAX_APPROVALS_BYTES, hint=hint),
                           source, hint=hint)
        if not isinstance(root.value, dict):
            raise root.fail("top level must be an object keyed by bank")
        entries: list[ApprovalEntry] = []
        for bank_name in root.value:
            if bank_name not in policy_scope.SCOPE_BANKS:
                raise root.fail(f"unknown bank {bank_name[:20]!r}", )
            bank = HashAlg.from_name(bank_name)
            for item in root.child(bank_name).items(MAX_ENTRIES):
                entries.append(_parse_entry(item, bank))
                if len(entries) > MAX_ENTRIES:
                    raise root.fail(f"more than {MAX_ENTRIES} entries")
        return cls(tuple(entries))


_ENTRY_KEYS = frozenset({"pcrs", "pol"})
_ENTRY_OPTIONAL = frozenset({"pkfp", "sig", "ref", "tbs"})


def _parse_entry(node: strict.Node, bank: HashAlg) -> ApprovalEntry:
    node.obj(_ENTRY_KEYS, _ENTRY_OPTIONAL)
    pcrs = node.int_list("pcrs", 0, 23, 24)
    node.check(bool(pcrs) and list(pcrs) == sorted(set(pcrs)), "must be ascending PCR indices 0…23", "pcrs")
    pkfp = node.hex_("pkfp", (0, 32)) if node.has("pkfp") else b""
    pol = node.hex_("pol", 32)
    sig = node.b64_("sig", MAX_SIG_BYTES) if node.has("sig") and node.value["sig"] != "" else None
    ref = None
    if node.has("ref") and node.value["ref"] != "":
        ref = node.str_("ref", MAX_FOREIGN_REF)
        parsed = strict.checked(lambda: policy_scope.parse_ref(ref), node, "ref", "bad ref")
        if parsed is not None:
            node.check(parsed.scope.bank == bank and parsed.scope.pcrs == pcrs,
                       f"names bank {parsed.scope.bank.bank_name} PCRs {list(parsed.scope.pcrs)}, the entry "
                       f"is for {bank.bank_name} {list(pcrs)}", "ref")
    entry = ApprovalEntry(bank, pcrs, pkfp, pol, sig, ref)
    if node.has("tbs"):
        tbs = node.hex_("tbs", (32, 64))
        node.check(tbs == entry.tbs, "does not equal pol || SHA256(ref) (the entry was edited; "
                   "regenerate it with pcrtool policy prepare)", "tbs")
    return entry


def attach_signatures(approvals: Approvals, signatures: Mapping[bytes, bytes], public_key) -> Approvals:
    """Offline flow: fill ``sig`` of unsigned entries from ``{tbs: signature}``; every signature is
    verified against ``public_key`` before it is accepted."""
    out = []
    missing = 0
    for e in approvals.entries:
        if e.sig is None and e.tbs in signatures:
            e = replace(e, sig=signatures[e.tbs])
            verify_entry(e, public_key)
        elif e.sig is None:
            missing += 1
        out.append(e)
    if missing:
        raise SignatureError(f"{missing} entr{'y' if missing == 1 else 'ies'} still lack a signature",
                             hint="sign every tbs listed by `pcrtool policy prepare`")
    return Approvals(tuple(out))
