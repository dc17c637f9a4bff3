"""Would systemd merge this DDI? Every check systemd makes, plus the cryptography it leaves to
the kernel (dm-verity, the root-hash signature), without root and without device-mapper.

Order of checks (the first failure is *the* reason): structure (GPT, duplicate designators),
image policy (presence, absence, protection, read-only/growfs, file-system type), the
verity-sig partition and its signature against the trusted certificates (as systemd's userspace
check: PKCS#7 signer among the certificates, no chain or validity-date check), the root hash
(signed = stored tree = the data, every block), partition UUIDs derived from the root hash as
repart writes them, and the extension-release file (name and host match). Pure: certificates,
host facts and the clock come in as arguments.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from pcrtool.ddi import dps
from pcrtool.ddi.image import Dissected, DdiPartition, parse_release
from pcrtool.ddi.policy import ImagePolicy
from pcrtool.ddi.release import ExtensionType, Host, image_name, match_extension
from pcrtool.errors import PcrtoolError
from pcrtool.verity.params import compute_layout
from pcrtool.verity.sig_partition import roothash_tbs
from pcrtool.verity.tree import build_tree, digest_entries

PROTECTION = frozenset({"verity", "signed", "encrypted", "encryptedwithintegrity", "unprotected"})


@dataclass(frozen=True, slots=True)
class TrustedCert:
    source: str          # file name, for messages
    der: bytes


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(slots=True)
class DdiVerdict:
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mode: str | None = None              # signed | verity | unprotected | encrypted
    root_hash: bytes | None = None
    signer: str | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def reason(self) -> str | None:
        return next((c.detail for c in self.checks if not c.ok), None)

    def to_json(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "mode": self.mode,
                "rootHash": self.root_hash.hex() if self.root_hash else None, "signer": self.signer,
                "checks": [c.to_json() for c in self.checks], "warnings": self.warnings}


class _Stop(Exception):
    pass


class _Run:
    def __init__(self) -> None:
        self.result = DdiVerdict()

    def ok(self, name: str, detail: str) -> None:
        self.result.checks.append(Check(name, True, detail))

    def fail(self, name: str, detail: str):
        self.result.checks.append(Check(name, False, detail))
        raise _Stop


def _check_policy(run: _Run, d: Dissected, policy: ImagePolicy) -> tuple[dict[str, DdiPartition], str | None]:
    """Which partitions systemd uses under ``policy``, and the data partition's protection."""
    for des in d.duplicates:
        run.fail("structure", f"the image has more than one {des} partition for {d.arch}")
    if d.data_designator is None:
        foreign = sorted({p.arch for p in d.partitions if p.designator in ("root", "usr") and p.arch})
        if foreign:
            run.fail("structure", f"no root or usr partition for {d.arch}; the image is for {', '.join(foreign)}")
    used: dict[str, DdiPartition] = {}
    for des in dps.DESIGNATORS:
        rule = policy.rule(des)
        p = d.used.get(des)
        if p is None:
            if "absent" not in rule.use:
                run.fail("policy", f"the image has no {des} partition; the policy requires one ({des}={rule.text()})")
            continue
        if not rule.use & PROTECTION:
            if "unused" in rule.use:
                continue          # present, ignored
            run.fail("policy", f"the image has a {des} partition ({p.label or p.uuid}); the policy requires "
                               f"it to be absent ({des}={rule.text()})")
        if p.read_only not in rule.read_only:
            run.fail("policy", f"{des} is read-only-{'on' if p.read_only else 'off'}; the policy wants "
                               f"read-only-{'on' if True in rule.read_only else 'off'}")
        if p.growfs not in rule.growfs:
            run.fail("policy", f"{des} is growfs-{'on' if p.growfs else 'off'}; the policy wants "
                               f"growfs-{'on' if True in rule.growfs else 'off'}")
        if rule.fstypes is not None and des in ("root", "usr") and p.fstype not in rule.fstypes:
            run.fail("policy", f"{des} holds {p.fstype or 'an unknown file system'}; the policy allows "
                               + "+".join(sorted(rule.fstypes)))
        used[des] = p
    mode = None
    des = d.data_designator
    if des is not None and des in used:
        rule = policy.rule(des)
        hash_used = dps.VERITY_OF[des] in used
        sig_used = dps.SIG_OF[des] in used
        if used[des].fstype == "crypto_LUKS":
            if not rule.use & {"encrypted", "encryptedwithintegrity"}:
                run.fail("policy", f"{des} is LUKS-encrypted; the policy allows {rule.use_text()}")
            mode = "encrypted"
        elif sig_used and hash_used and "signed" in rule.use:
            mode = "signed"
        elif hash_used and "verity" in rule.use:
            mode = "verity"
        elif "unprotected" in rule.use:
            mode = "unprotected"
        else:
            has_hash, has_sig = dps.VERITY_OF[des] in d.used, dps.SIG_OF[des] in d.used
            found = "verity+signed" if has_hash and has_sig else "verity" if has_hash else "unprotected"
            missing = "signed" if "signed" in rule.use and not sig_used else rule.use_text()
            run.fail("policy", f"{des} is {found}; the policy requires {missing} ({des}={rule.text()})")
        run.ok("policy", f"{des} used as {mode}; partitions: " + ", ".join(sorted(used)))
        return used, mode
    if des is None:
        run.fail("policy", "the image has no root or usr partition: nothing to merge")
    run.fail("policy", f"the policy leaves {des} unused ({des}={policy.rule(des).text()}): no suitable partition")


def _check_signature(run: _Run, d: Dissected, certs: list[TrustedCert], now: dt.datetime | None,
                     strict_validity: bool) -> bytes:
    from cryptography import x509

    from pcrtool.sign.api import certificate_fingerprint
    from pcrtool.sign.pkcs7 import parse_detached, verify_detached

    if d.sig_error:
        run.fail("signature", d.sig_error)
    sig = d.sig
    try:
        parsed = parse_detached(sig.signature, source="verity-sig signature")
    except PcrtoolError as e:
        run.fail("signature", e.message)
    if not certs:
        run.fail("signature", "no trusted certificates (/etc/verity.d, /run/verity.d, /usr/local/lib/verity.d, "
                              "/usr/lib/verity.d or --certs): systemd cannot validate a signed image")
    tbs = roothash_tbs(sig.root_hash)
    candidates = []
    for cert in certs:
        try:
            c = x509.load_der_x509_certificate(cert.der)
        except ValueError:
            continue
        if c.serial_number == parsed.serial_number and \
                c.issuer.public_bytes() == parsed.issuer_der:
            candidates.append((cert, c))
    if not candidates:
        run.fail("signature", f"signed by {parsed.issuer} (serial {parsed.serial_number:x}); none of the "
                              f"{len(certs)} trusted certificates is that signer")
    errors = []
    for cert, c in candidates:
        try:
            verify_detached(parsed, tbs, cert.der, source="verity-sig signature")
        except PcrtoolError as e:
            errors.append(f"{cert.source}: {e.message}")
            continue
        run.result.signer = f"{c.subject.rfc4514_string()} ({cert.source})"
        if now is not None and not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
            msg = (f"certificate {cert.source} is outside its validity period "
                   f"({c.not_valid_before_utc:%Y-%m-%d} … {c.not_valid_after_utc:%Y-%m-%d})")
            if strict_validity:
                run.fail("signature", msg + " (--strict-validity)")
            run.result.warnings.append(msg + "; systemd and the kernel ignore validity dates")
        if sig.certificate_fingerprint and sig.certificate_fingerprint.hex() != certificate_fingerprint(c):
            run.result.warnings.append("the verity-sig certificateFingerprint does not name the signing "
                                       "certificate (systemd ignores the field)")
        run.ok("signature", f"PKCS#7 over the root hash verifies with {cert.source}")
        return sig.root_hash
    run.fail("signature", "the root-hash signature does not verify: " + "; ".join(errors))


def _check_verity(run: _Run, image, d: Dissected, used: dict[str, DdiPartition], root_hash: bytes) -> None:
    des = d.data_designator
    data_p, hash_p = used[des], used[dps.VERITY_OF[des]]
    if d.verity_error:
        run.fail("verity", d.verity_error)
    params = d.verity
    if params.data_size > data_p.size:
        run.fail("verity", f"the verity superblock covers {params.data_size} bytes; {des} has {data_p.size}")
    layout = compute_layout(params)
    if layout.hash_end > hash_p.size:
        run.fail("verity", f"the hash tree needs {layout.hash_end} bytes; the hash partition has {hash_p.size}")
    data = memoryview(image)[data_p.offset:data_p.offset + params.data_size]
    stored = bytes(image[hash_p.offset:hash_p.offset + layout.hash_end])
    tree = build_tree(params, data)
    ours = tree.hash_area()
    if tree.root_hash == root_hash and stored == ours:
        run.ok("verity", f"root hash {root_hash.hex()} = hash partition = data ({params.data_blocks} blocks)")
        return
    hbs = params.hash_block_size
    if tree.root_hash == root_hash:
        first = next(i for i in range(0, len(ours), hbs) if stored[i:i + hbs] != ours[i:i + hbs])
        run.fail("verity", f"hash partition block {first // hbs} is corrupt (the data matches the root hash)")
    # Which side is wrong? The stored top block hashes to the root when only data changed.
    top_off = layout.level_offset(len(layout.levels) - 1) if layout.levels else None
    if top_off is not None:
        top = stored[top_off:top_off + hbs]
        stored_root = digest_entries(params, top, hbs)[:params.digest_size]
        if stored_root == root_hash:
            level0 = layout.level_offset(0)
            held = stored[level0:level0 + layout.levels[0].blocks * hbs]
            computed = tree.level_blocks[0]
            slot = params.slot_size
            for i in range(params.data_blocks):
                if held[i * slot:i * slot + params.digest_size] != computed[i * slot:i * slot + params.digest_size]:
                    run.fail("verity", f"data block {i} of {des} (byte {data_p.offset + i * params.data_block_size} "
                                       f"of the image) does not match its hash")
            run.fail("verity", "the hash tree's inner blocks are corrupt")
    if stored == ours:
        run.fail("verity", f"the signed root hash {root_hash.hex()} is not the image's root hash "
                           f"{tree.root_hash.hex()}")
    run.fail("verity", "the hash partition does not match the data nor the root hash")


def _check_uuids(run: _Run, d: Dissected, used: dict[str, DdiPartition], root_hash: bytes) -> None:
    des = d.data_designator
    want_data, want_hash = uuid.UUID(bytes=root_hash[:16]), uuid.UUID(bytes=root_hash[-16:])
    data_p, hash_p = used[des], used[dps.VERITY_OF[des]]
    if data_p.uuid != want_data:
        run.fail("uuids", f"{des} partition UUID {data_p.uuid} is not the root hash's first half {want_data}")
    if hash_p.uuid != want_hash:
        run.fail("uuids", f"{hash_p.label or 'verity'} partition UUID {hash_p.uuid} is not the root hash's "
                          f"second half {want_hash}")
    run.ok("uuids", "data and hash partition UUIDs are the root-hash halves")


def _check_release(run: _Run, d: Dissected, kind: ExtensionType, host: Host, file_name: str,
                   release_files: dict[str, bytes]) -> None:
    name = image_name(file_name)
    if d.release_error and not release_files:
        run.fail("extension-release", f"cannot read the extension-release file: {d.release_error}")
    key = f"{kind.value}:{name}"
    if key not in release_files:
        others = sorted(k.split(":", 1)[1] for k in release_files if k.startswith(kind.value + ":"))
        if others:
            run.fail("extension-release", f"the image is named {name!r} but carries extension-release."
                                          f"{others[0]} (renamed image?)")
        run.fail("extension-release", f"no {kind.release_path(name)} in the image")
    release = parse_release(release_files[key], source=f"extension-release.{name}")
    reason = match_extension(release, host, kind, name=name)
    if reason:
        run.fail("extension-release", reason)
    run.ok("extension-release", f"extension-release.{name} matches the host "
                                f"(ID={release.get('ID')}, host ID={host.os_release.get('ID')})")


def verify_ddi(image, d: Dissected, policy: ImagePolicy, *, certs: list[TrustedCert],
                 host: Host | None, kind: ExtensionType | None, file_name: str,
                 now: dt.datetime | None = None, strict_validity: bool = False,
                 release_files: dict[str, bytes] | None = None) -> DdiVerdict:
    """Run every check on a dissected image; the result's ``reason`` is the first failure."""
    run = _Run()
    if d.gpt_warning:
        run.result.warnings.append(d.gpt_warning)
    try:
        used, mode = _check_policy(run, d, policy)
        run.result.mode = mode
        if mode in ("signed", "verity"):
            if mode == "signed":
                root_hash = _check_signature(run, d, certs, now, strict_validity)
            else:
                root_hash = d.used[d.data_designator].uuid.bytes + d.used[dps.VERITY_OF[d.data_designator]].uuid.bytes
                run.result.warnings.append("unsigned verity: the root hash is taken from the partition UUIDs")
            run.result.root_hash = root_hash
            _check_verity(run, image, d, used, root_hash)
            _check_uuids(run, d, used, root_hash)
        if kind in (ExtensionType.SYSEXT, ExtensionType.CONFEXT) and host is not None and mode is not None:
            _check_release(run, d, kind, host, file_name, release_files if release_files is not None
                           else d.release_files)
    except _Stop:
        pass
    return run.result
