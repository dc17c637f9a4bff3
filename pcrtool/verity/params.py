"""dm-verity parameters and the on-disk layout of the hash area (cryptsetup lib/verity).

The layout follows libcryptsetup's ``hash_levels`` and ``VERITY_hash_offset_block``: digests per
hash block are the largest power of two that fits, levels are stacked top level first and level 0
last, and the hash area starts at the first hash-block boundary after the 512-byte superblock (or
at ``hash_offset`` itself without a superblock). Pure: no I/O, no randomness.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import IntEnum

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg

SUPERBLOCK_SIZE = 512
MAX_SALT_SIZE = 256
MAX_LEVELS = 63  # VERITY_MAX_LEVELS
# Hash algorithms veritysetup and the kernel accept for dm-verity that pcrtool supports.
SUPPORTED_ALGS = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA512)


class HashType(IntEnum):
    """Superblock ``hash_type``: 0 = original Chrome OS format, 1 = normal (salt first, padded slots)."""

    CHROMEOS = 0
    NORMAL = 1


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _check_block_size(value: int, what: str) -> None:
    # veritysetup: power of two between 512 and the page size; the kernel allows up to PAGE_SIZE.
    if not _is_pow2(value) or not 512 <= value <= 65536:
        raise UsageError(f"{what} {value} is not a power of two between 512 and 65536",
                         hint="use 512, 1024, 2048 or 4096 (4096 is the default)")


@dataclass(frozen=True, slots=True)
class VerityParams:
    """Everything that determines the hash tree and where it is written."""

    data_blocks: int
    hash_alg: HashAlg = HashAlg.SHA256
    hash_type: HashType = HashType.NORMAL
    data_block_size: int = 4096
    hash_block_size: int = 4096
    salt: bytes = b""
    superblock: bool = True
    uuid: bytes | None = None        # 16 raw bytes, only meaningful with a superblock
    hash_offset: int = 0             # byte offset of the superblock / hash area in the hash file

    def __post_init__(self) -> None:
        if self.hash_alg not in SUPPORTED_ALGS:
            raise UsageError(f"hash algorithm {self.hash_alg.bank_name} is not supported for dm-verity",
                             hint="use sha256 (default), sha1 or sha512")
        _check_block_size(self.data_block_size, "data block size")
        _check_block_size(self.hash_block_size, "hash block size")
        if self.data_blocks < 1:
            raise UsageError("dm-verity needs at least one data block",
                             hint="the data must hold at least one full data block")
        if len(self.salt) > MAX_SALT_SIZE:
            raise UsageError(f"salt has {len(self.salt)} bytes, at most {MAX_SALT_SIZE} are allowed")
        if self.uuid is not None and len(self.uuid) != 16:
            raise UsageError("verity UUID must be 16 bytes")
        if self.hash_offset < 0:
            raise UsageError("hash offset must not be negative")
        if self.superblock and self.hash_offset % 512:
            raise UsageError(f"hash offset {self.hash_offset} is not a multiple of 512",
                             hint="the superblock must be 512-byte aligned")
        if not self.superblock and self.hash_offset % self.hash_block_size:
            # veritysetup silently rounds down (and writes the tree *before* the offset).
            raise UsageError(f"hash offset {self.hash_offset} is not a multiple of the hash block "
                             f"size {self.hash_block_size}",
                             hint="without a superblock the hash area starts exactly at the offset; "
                                  "veritysetup would silently round it down")

    @property
    def digest_size(self) -> int:
        return self.hash_alg.digest_size

    @property
    def slot_size(self) -> int:
        """Bytes one digest occupies in a hash block: padded to a power of two in format 1."""
        ds = self.digest_size
        if self.hash_type is HashType.CHROMEOS:
            return ds
        return 1 << (ds - 1).bit_length()

    @property
    def per_block_bits(self) -> int:
        return (self.hash_block_size // self.digest_size).bit_length() - 1

    @property
    def digests_per_block(self) -> int:
        return 1 << self.per_block_bits

    @property
    def data_size(self) -> int:
        return self.data_blocks * self.data_block_size


@dataclass(frozen=True, slots=True)
class Level:
    """One tree level: ``index`` 0 hashes the data blocks; ``first_block`` counts hash blocks."""

    index: int
    first_block: int
    blocks: int


@dataclass(frozen=True, slots=True)
class TreeLayout:
    params: VerityParams
    levels: tuple[Level, ...]        # levels[i] is level i (level 0 first in this tuple)
    hash_start_block: int            # first hash block (in hash-block units from the file start)
    hash_end_block: int              # one past the last hash block

    @property
    def hash_blocks(self) -> int:
        return self.hash_end_block - self.hash_start_block

    @property
    def hash_end(self) -> int:
        """Byte offset just after the hash area (the size of a fresh hash file)."""
        return self.hash_end_block * self.params.hash_block_size

    def level_offset(self, index: int) -> int:
        return self.levels[index].first_block * self.params.hash_block_size


def compute_layout(params: VerityParams) -> TreeLayout:
    """Levels and offsets as libcryptsetup computes them (``hash_levels``)."""
    hbs = params.hash_block_size
    if params.superblock:
        start = (params.hash_offset + SUPERBLOCK_SIZE + hbs - 1) // hbs
    else:
        start = params.hash_offset // hbs
    bits = params.per_block_bits
    count = 0
    while bits * count < 64 and (params.data_blocks - 1) >> (bits * count):
        count += 1
    if count > MAX_LEVELS:
        raise UsageError("too many hash tree levels", hint="use larger hash blocks")
    position = start
    levels: list[Level] = [Level(0, 0, 0)] * count
    for i in range(count - 1, -1, -1):
        shift = (i + 1) * bits
        size = (params.data_blocks + (1 << shift) - 1) >> shift
        levels[i] = Level(i, position, size)
        position += size
    return TreeLayout(params, tuple(levels), start, position)


def derive_salt(seed: bytes) -> bytes:
    """systemd-repart (v255+): salt = HMAC-SHA256(key = 16-byte seed, "verity-salt")."""
    return hmac.new(seed, b"verity-salt", hashlib.sha256).digest()


def derive_uuid(seed: bytes, token: str = "verity-uuid") -> bytes:
    """systemd-repart ``derive_uuid``: first 16 bytes of HMAC-SHA256(seed, token) as a v4 UUID."""
    raw = bytearray(hmac.new(seed, token.encode(), hashlib.sha256).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return bytes(raw)


def partition_uuids(root_hash: bytes) -> tuple[bytes, bytes]:
    """systemd-repart: data partition UUID = first 16 root-hash bytes, hash partition = last 16."""
    return root_hash[:16], root_hash[-16:]
