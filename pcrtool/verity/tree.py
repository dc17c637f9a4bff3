"""dm-verity hash-tree maths (cryptsetup lib/verity/verity_hash.c, kernel dm-verity).

An *entry* is one digest in its slot: format 1 hashes ``salt ‖ block`` and pads the digest with
zeros to a power of two; format 0 (Chrome OS) hashes ``block ‖ salt`` and packs digests back to
back. A *hash block* holds ``digests_per_block`` entries, zero-filled to the hash block size.
Level 0 hashes the data blocks, level i+1 the hash blocks of level i; the root hash is the digest
of the single top block (or of the single data block when there are no levels).

Pure: callers (``pcrtool.verity.io``) stream the bytes in. Functions work on any buffer, so the
adapter can run them on slices of one mmap from several threads (hashlib releases the GIL for
buffers of 2 KiB and more).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.verity.params import HashType, TreeLayout, VerityParams, compute_layout
from pcrtool.verity.superblock import build_superblock


def digest_entries(params: VerityParams, buf, block_size: int) -> bytes:
    """Entries (digest in its slot) of every full ``block_size`` block in ``buf``, concatenated."""
    mv = memoryview(buf)
    n = len(mv) // block_size
    alg = params.hash_alg
    salt = params.salt
    pad = bytes(params.slot_size - params.digest_size)
    out: list[bytes] = []
    append = out.append
    if params.hash_type is HashType.NORMAL:
        base = alg.new()
        base.update(salt)
        copy = base.copy
        for off in range(0, n * block_size, block_size):
            h = copy()
            h.update(mv[off:off + block_size])
            append(h.digest())
    else:
        new = alg.new
        for off in range(0, n * block_size, block_size):
            h = new(mv[off:off + block_size])
            h.update(salt)
            append(h.digest())
    if pad:
        return pad.join(out) + pad if out else b""
    return b"".join(out)


def pack_hash_blocks(params: VerityParams, entries: bytes) -> bytes:
    """Group entries into hash blocks, zero-filling each block (and the last, partial one)."""
    hbs = params.hash_block_size
    used = params.digests_per_block * params.slot_size
    if used == hbs:
        tail = len(entries) % hbs
        return entries + bytes(hbs - tail) if tail else entries
    filler = bytes(hbs - used)
    parts = []
    for off in range(0, len(entries), used):
        chunk = entries[off:off + used]
        parts.append(chunk)
        parts.append(bytes(used - len(chunk)) + filler if len(chunk) < used else filler)
    return b"".join(parts)


def hash_data_chunk(params: VerityParams, data) -> tuple[bytes, bytes]:
    """Level-0 hash blocks for a chunk of data blocks, plus the level-1 entries of those blocks.

    The chunk should start at a multiple of ``digests_per_block`` data blocks so its hash blocks
    are whole; the last chunk may be shorter (its last hash block is zero-filled).
    """
    level0 = pack_hash_blocks(params, digest_entries(params, data, params.data_block_size))
    return level0, digest_entries(params, level0, params.hash_block_size)


def entry_digest(params: VerityParams, entries: bytes, index: int) -> bytes:
    off = index * params.slot_size
    return entries[off:off + params.digest_size]


@dataclass(frozen=True, slots=True)
class UpperLevels:
    """Hash blocks of levels 1..top (``blocks[i]`` is level i+1) and the root hash."""

    blocks: tuple[bytes, ...]
    root_hash: bytes


def build_upper_levels(layout: TreeLayout, level1_entries: bytes) -> UpperLevels:
    """Levels above level 0 from the entries of the level-0 hash blocks (in memory: they are
    ``digests_per_block`` times smaller than level 0). With one level, ``level1_entries`` is the
    single entry of the top block and gives the root directly."""
    params = layout.params
    entries = level1_entries
    blocks = []
    for level in layout.levels[1:]:
        packed = pack_hash_blocks(params, entries)
        if len(packed) != level.blocks * params.hash_block_size:
            raise ValueError(f"level {level.index} has {len(packed)} bytes, expected {level.blocks} blocks")
        blocks.append(packed)
        entries = digest_entries(params, packed, params.hash_block_size)
    if len(entries) != params.slot_size:
        raise ValueError("the top level does not reduce to one hash block")
    return UpperLevels(tuple(blocks), entry_digest(params, entries, 0))


@dataclass(frozen=True, slots=True)
class VerityTree:
    layout: TreeLayout
    root_hash: bytes
    level_blocks: tuple[bytes, ...]   # level i hash blocks at index i

    def hash_area(self) -> bytes:
        """The hash file bytes from ``hash_offset``: superblock, zero gap, top level … level 0."""
        params = self.layout.params
        start = self.layout.hash_start_block * params.hash_block_size
        head = build_superblock(params) if params.superblock else b""
        head = head.ljust(start - params.hash_offset, b"\0")
        return head + b"".join(reversed(self.level_blocks))


def build_tree(params: VerityParams, data) -> VerityTree:
    """The whole tree of ``data`` (at least ``params.data_size`` bytes) in memory."""
    layout = compute_layout(params)
    mv = memoryview(data)[:params.data_size]
    if len(mv) < params.data_size:
        raise ValueError("data shorter than data_blocks * data_block_size")
    if not layout.levels:
        entries = digest_entries(params, mv, params.data_block_size)
        return VerityTree(layout, entry_digest(params, entries, 0), ())
    level0, level1_entries = hash_data_chunk(params, mv)
    upper = build_upper_levels(layout, level1_entries)
    return VerityTree(layout, upper.root_hash, (level0, *upper.blocks))
