"""Dissect a Discoverable Disk Image: GPT → DPS partitions → verity pairing → verity-sig JSON →
file system type → extension-release file (systemd's ``dissect_image`` without a kernel).

``dissect`` takes the image bytes (an mmap works) and the host architecture, and reports what it
finds without judging it; ``pcrtool.ddi.verify`` judges. Pure.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from pcrtool.ddi import dps
from pcrtool.ddi.erofs import ErofsReader, is_erofs
from pcrtool.ddi.release import ExtensionType, parse_os_release
from pcrtool.errors import FormatError, PcrtoolError, UnsupportedError
from pcrtool.gpt import ATTR_GROWFS, ATTR_READ_ONLY, GptTable, GptEntry, read_gpt
from pcrtool.verity.params import VerityParams
from pcrtool.verity.sig_partition import VeritySig, parse_sig_partition
from pcrtool.verity.superblock import is_superblock, parse_superblock

SQUASHFS_MAGIC = b"hsqs"
LUKS_MAGIC = b"LUKS\xba\xbe"


def probe_fstype(head: bytes) -> str | None:
    """The file-system type blkid would report for the first bytes of a partition."""
    if is_erofs(head):
        return "erofs"
    if head[:4] == SQUASHFS_MAGIC:
        return "squashfs"
    if head[:6] == LUKS_MAGIC:
        return "crypto_LUKS"
    if is_superblock(head):
        return "DM_verity_hash"
    if head[:1] == b"{":
        return "verity_hash_signature"
    return None


@dataclass(frozen=True, slots=True)
class DdiPartition:
    entry: GptEntry
    ptype: dps.PartitionType | None
    offset: int
    size: int
    fstype: str | None

    @property
    def designator(self) -> str | None:
        return self.ptype.designator if self.ptype else None

    @property
    def arch(self) -> str | None:
        return self.ptype.arch if self.ptype else None

    @property
    def uuid(self) -> uuid.UUID:
        return self.entry.unique_guid

    @property
    def label(self) -> str:
        return self.entry.name

    @property
    def partno(self) -> int:
        return self.entry.index + 1

    @property
    def read_only(self) -> bool:
        return bool(self.entry.attributes & ATTR_READ_ONLY)

    @property
    def growfs(self) -> bool:
        return bool(self.entry.attributes & ATTR_GROWFS)


@dataclass(frozen=True, slots=True)
class Dissected:
    size: int
    gpt: GptTable
    arch: str                                   # the architecture partitions were picked for
    partitions: tuple[DdiPartition, ...]           # every GPT entry, in slot order
    used: dict[str, DdiPartition]                  # designator → the native-arch partition
    duplicates: tuple[str, ...]                 # designators present more than once
    verity: VerityParams | None                 # superblock of the data partition's hash partition
    verity_error: str | None
    sig: VeritySig | None                       # parsed verity-sig JSON
    sig_error: str | None
    data_designator: str | None                 # "root" or "usr": the extension's file system
    release_files: dict[str, bytes] = field(default_factory=dict)   # name → extension-release bytes
    release_error: str | None = None
    kind: ExtensionType | None = None
    gpt_warning: str | None = None              # backup GPT damaged (systemd uses the primary)

    def data(self, image, designator: str) -> bytes:
        p = self.used[designator]
        return image[p.offset:p.offset + p.size]


def _partitions(image, gpt: GptTable) -> list[DdiPartition]:
    out = []
    ss = gpt.sector_size
    for e in gpt.entries:
        offset, size = e.first_lba * ss, e.lba_count * ss
        head = bytes(image[offset:offset + min(size, 4096)])
        out.append(DdiPartition(e, dps.classify(e.type_guid), offset, size, probe_fstype(head)))
    return out


def _release_files(fs: bytes, fstype: str | None, kind: ExtensionType | None) -> tuple[dict[str, bytes], str | None]:
    if fstype != "erofs":
        return {}, (f"cannot read a {fstype or 'unknown'} file system in-process" if fstype else None)
    try:
        reader = ErofsReader(fs)
        found: dict[str, bytes] = {}
        kinds = [kind] if kind else [ExtensionType.SYSEXT, ExtensionType.CONFEXT]
        for k in kinds:
            directory = k.release_path("x").rsplit("/", 1)[0]
            for name in reader.list_files(directory):
                if name.startswith("extension-release."):
                    data = reader.read_file(f"{directory}/{name}")
                    if data is not None:
                        found[f"{k.value}:{name[len('extension-release.'):]}"] = data
        osrel = reader.read_file("usr/lib/os-release")
        if osrel is not None:
            found["portable:os-release"] = osrel
        return found, None
    except UnsupportedError as e:
        return {}, e.message
    except (FormatError, ValueError, IndexError, struct.error) as e:
        return {}, f"the erofs file system is corrupt: {getattr(e, 'message', e)}"


def dissect(image, *, arch: str, read_release: bool = True, kind: ExtensionType | None = None) -> Dissected:
    """Read the GPT and the DDI structure of ``image`` for a host of architecture ``arch``."""
    gpt = read_gpt(image, check_backup=False)
    gpt_warning = None
    try:
        read_gpt(image, sector_size=gpt.sector_size)
    except FormatError as e:
        gpt_warning = f"{e.message}; systemd (libblkid) uses the primary GPT"
    parts = _partitions(image, gpt)
    used: dict[str, DdiPartition] = {}
    dups: list[str] = []
    for p in parts:
        if p.ptype is None or (p.arch is not None and p.arch != arch):
            continue
        if p.designator in used:
            dups.append(p.designator)
            continue
        used[p.designator] = p
    data_designator = "root" if "root" in used else ("usr" if "usr" in used else None)
    verity = sig = None
    verity_error = sig_error = None
    if data_designator:
        hp = used.get(dps.VERITY_OF[data_designator])
        if hp is not None:
            try:
                verity = parse_superblock(bytes(image[hp.offset:hp.offset + 512]),
                                          source=f"{hp.label or 'verity'} partition")
            except PcrtoolError as e:
                verity_error = e.message
        sp = used.get(dps.SIG_OF[data_designator])
        if sp is not None:
            try:
                sig = parse_sig_partition(bytes(image[sp.offset:sp.offset + sp.size]),
                                          source=f"{sp.label or 'verity-sig'} partition")
            except PcrtoolError as e:
                sig_error = e.message
    releases: dict[str, bytes] = {}
    release_error = None
    if read_release and data_designator:
        dp = used[data_designator]
        releases, release_error = _release_files(image[dp.offset:dp.offset + dp.size], dp.fstype, kind)
    return Dissected(len(image), gpt, arch, tuple(parts), used, tuple(dups), verity, verity_error, sig,
                     sig_error, data_designator, releases, release_error, kind, gpt_warning)


def describe(d: Dissected, *, image_name: str) -> dict:
    """JSON close to ``systemd-dissect --json``: the image and one entry per partition."""
    mounts = []
    for p in d.partitions:
        verity = None
        if p.designator in ("root", "usr") and p is d.used.get(p.designator):
            has_hash = dps.VERITY_OF[p.designator] in d.used
            has_sig = dps.SIG_OF[p.designator] in d.used
            verity = "signed" if has_hash and has_sig else ("yes" if has_hash else None)
        mounts.append({
            "rw": "ro" if p.read_only or p.designator in dps.DATA_OF or p.fstype in ("erofs", "squashfs") else "rw",
            "designator": p.designator,
            "partition_uuid": str(p.uuid),
            "partition_label": p.label,
            "fstype": p.fstype,
            "architecture": p.arch,
            "verity": verity,
            "growfs": p.growfs,
            "partno": p.partno,
            "type": str(p.entry.type_guid),
            "offset": p.offset,
            "size": p.size,
            "used": p is d.used.get(p.designator or ""),
        })
    out: dict = {"name": image_name, "size": d.size, "sectorSize": d.gpt.sector_size,
                 "architecture": d.arch if d.data_designator else None,
                 "imageUuid": str(d.gpt.header.disk_guid)}
    for key, label in (("sysext", "sysextRelease"), ("confext", "confextRelease")):
        for name, data in d.release_files.items():
            if name.startswith(key + ":"):
                text = data.decode("utf-8", "replace")
                out.setdefault(label, [line for line in text.splitlines() if line.strip()])
                out.setdefault("extensionReleaseName", name.split(":", 1)[1])
    out["mounts"] = mounts
    verity = {}
    if d.sig is not None:
        verity["rootHash"] = d.sig.root_hash.hex()
        verity["certificateFingerprint"] = d.sig.certificate_fingerprint.hex()
    if d.verity is not None:
        verity.update({"hashAlgorithm": d.verity.hash_alg.bank_name, "dataBlocks": d.verity.data_blocks,
                       "dataBlockSize": d.verity.data_block_size, "hashBlockSize": d.verity.hash_block_size,
                       "salt": d.verity.salt.hex(),
                       "uuid": str(uuid.UUID(bytes=d.verity.uuid)) if d.verity.uuid else None})
    if verity:
        out["verity"] = verity
    return out


def parse_release(data: bytes, *, source: str) -> dict[str, str]:
    return parse_os_release(data.decode("utf-8", "replace"), source=source)
