"""A DDI laid out as ``systemd-repart --make-ddi`` lays it out, with repart's derivations.

repart's built-in definitions (``sysext|confext|portable.repart.d``) make three partitions of the
``root`` type: the file system (Verity=data, Minimize=best), its hash partition (Verity=hash,
Minimize=best) and a 16 KiB verity-sig partition, all read-only (GPT attribute bit 60).
What repart derives from the 16-byte seed (checked byte for byte against systemd 262):

- disk GUID = ``derive_uuid(seed, "disk-uuid")``; verity salt = HMAC-SHA256(seed, "verity-salt");
  verity superblock UUID = ``derive_uuid(seed, "verity-uuid")``;
- a partition's first UUID = HMAC-SHA256(seed, type UUID) as a v4 UUID (the verity-sig keeps it;
  data and hash partitions are renamed to the root-hash halves once the tree is known);
- the file-system UUID = ``derive_uuid(first UUID of the data partition, "file-system-uuid")``;
- the root directory carries ``user.validatefs.*`` xattrs (mount point, GPT labels and types).

The hash tree covers the file system (rounded up to 4 KiB), not the whole data partition.
Sizes: the disk is ``1 MiB + Σ minimal partition sizes + backup GPT``. libfdisk puts the first
usable LBA at 2048 (1 MiB), except on disks of at most 4 MiB where it stays at 34 and the first
partition starts at LBA 40 (the 4 KiB grain); the free space is shared by weight (1000 each)
after the partitions whose minimum exceeds their share and those with a maximum (the verity-sig)
are placed. Pure.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass

from pcrtool.ddi import dps
from pcrtool.gpt import ATTR_READ_ONLY, GptEntry, build_gpt
from pcrtool.verity.params import VerityParams, compute_layout, derive_salt, derive_uuid
from pcrtool.verity.sig_partition import VERITY_SIG_SIZE

GRAIN = 4096
SECTOR = 512
MIB = 1 << 20
SMALL_DISK = 4 * MIB                 # libfdisk: no 1 MiB alignment on disks up to 4 × 1 MiB
GPT_TAIL = 33 * SECTOR               # backup entries (32 sectors) + backup header
WEIGHT = 1000


def _v4(raw: bytes) -> uuid.UUID:
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(b))


def partition_uuid(seed: bytes, type_uuid: uuid.UUID, counter: int = 0) -> uuid.UUID:
    """repart ``partition_acquire_uuid``: HMAC-SHA256(seed, type UUID [‖ le64 counter]) as v4."""
    msg = type_uuid.bytes + (counter.to_bytes(8, "little") if counter else b"")
    return _v4(hmac.new(seed, msg, hashlib.sha256).digest())


def disk_uuid(seed: bytes) -> uuid.UUID:
    return uuid.UUID(bytes=derive_uuid(seed, "disk-uuid"))


def filesystem_uuid(seed: bytes, data_type: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(bytes=derive_uuid(partition_uuid(seed, data_type).bytes, "file-system-uuid"))


def verity_params(seed: bytes, data_size: int) -> VerityParams:
    """repart's dm-verity parameters: sha256, format 1, 4 KiB blocks, seed-derived salt and UUID."""
    return VerityParams(data_blocks=data_size // GRAIN, salt=derive_salt(seed),
                        uuid=derive_uuid(seed, "verity-uuid"))


def validatefs_xattrs(arch: str) -> dict[str, bytes]:
    """The ``user.validatefs.*`` xattrs repart puts on the file system's root directory."""
    types = [dps.partition_type(d, arch) for d in ("root", "root-verity", "root-verity-sig")]
    labels = sorted(t.name for t in types)
    uuids = sorted(str(t.uuid) for t in types)
    return {"user.validatefs.mount_point": b"/\0",
            "user.validatefs.gpt_label": b"".join(x.encode() + b"\0" for x in labels),
            "user.validatefs.gpt_type_uuid": b"".join(x.encode() + b"\0" for x in uuids)}


def _round_up(n: int, grain: int = GRAIN) -> int:
    return -(-n // grain) * grain


def hash_size(data_size: int) -> int:
    """Minimal size of the hash partition for ``data_size`` bytes of data (superblock + tree)."""
    return _round_up(compute_layout(VerityParams(data_blocks=max(1, data_size // GRAIN))).hash_end)


def distribute(span: int, mins: list[int], maxs: list[int | None]) -> list[int]:
    """Share ``span`` bytes between partitions of equal weight as repart grows them."""
    n = len(mins)
    sizes: list[int | None] = [None] * n
    for limit in ("min", "max"):
        changed = True
        while changed:
            changed = False
            left = [i for i in range(n) if sizes[i] is None]
            weight = WEIGHT * len(left)
            for i in left:
                share = span * WEIGHT // weight
                if limit == "min" and mins[i] > share:
                    sizes[i] = mins[i]
                elif limit == "max" and maxs[i] is not None and maxs[i] < share:
                    sizes[i] = maxs[i]
                else:
                    continue
                span -= sizes[i]
                changed = True
                break
    left = [i for i in range(n) if sizes[i] is None]
    for k, i in enumerate(left):
        weight = WEIGHT * (len(left) - k)
        share = span if k == len(left) - 1 else span * WEIGHT // weight // GRAIN * GRAIN
        sizes[i] = share
        span -= share
    return [s for s in sizes]  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Layout:
    total_size: int
    data_offset: int
    data_size: int
    hash_offset: int
    hash_size: int
    sig_offset: int
    sig_size: int
    first_usable_lba: int
    verity_size: int       # what the hash tree covers: the file system rounded to 4 KiB, not the
                           # grown partition (repart hashes the minimized file system)


def plan_layout(fs_size: int) -> Layout:
    """Offsets and sizes of the three partitions for a file system of ``fs_size`` bytes."""
    fs_min = max(GRAIN, _round_up(fs_size))
    mins = [fs_min, hash_size(fs_min), VERITY_SIG_SIZE]
    total = MIB + sum(mins) + GPT_TAIL
    first_usable = 34 if total <= SMALL_DISK else MIB // SECTOR
    start = _round_up(first_usable * SECTOR)
    span = total - GPT_TAIL - start
    data, hashp, sig = distribute(span, mins, [None, None, VERITY_SIG_SIZE])
    return Layout(total, start, data, start + data, hashp, start + data + hashp, sig, first_usable, fs_min)


def assemble_gpt(layout: Layout, *, seed: bytes, arch: str, root_hash: bytes) -> tuple[bytes, bytes]:
    """The head (MBR + primary GPT) and tail (backup GPT) of the image."""
    types = [dps.partition_type(d, arch) for d in ("root", "root-verity", "root-verity-sig")]
    uuids = [uuid.UUID(bytes=root_hash[:16]), uuid.UUID(bytes=root_hash[-16:]),
             partition_uuid(seed, types[2].uuid)]
    spans = [(layout.data_offset, layout.data_size), (layout.hash_offset, layout.hash_size),
             (layout.sig_offset, layout.sig_size)]
    entries = [GptEntry(i, t.uuid, u, off // SECTOR, (off + size) // SECTOR - 1, ATTR_READ_ONLY, t.name)
               for i, (t, u, (off, size)) in enumerate(zip(types, uuids, spans))]
    img = build_gpt(entries, disk_guid=disk_uuid(seed), total_sectors=layout.total_size // SECTOR,
                    first_usable_lba=layout.first_usable_lba)
    return img.head, img.tail
