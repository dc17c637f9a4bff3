"""The 512-byte dm-verity superblock (cryptsetup ``struct verity_sb``, lib/verity/verity.c).

Little-endian; written by ``veritysetup format`` unless ``--no-superblock`` is given. The kernel
never reads it: it only tells userspace the parameters.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.verity.params import SUPERBLOCK_SIZE, HashType, VerityParams

VERITY_SIGNATURE = b"verity\0\0"

# signature[8] version:u32 hash_type:u32 uuid[16] algorithm[32] data_block_size:u32
# hash_block_size:u32 data_blocks:u64 salt_size:u16 pad[6] salt[256] pad[168]
# (struct rather than construct: format must stay fast to start, and this is one fixed record)
_SB = struct.Struct("<8sII16s32sIIQH6x256s168x")
assert _SB.size == SUPERBLOCK_SIZE


def build_superblock(params: VerityParams) -> bytes:
    """The superblock bytes for ``params`` (UUID all-zero when none is given)."""
    return _SB.pack(VERITY_SIGNATURE, 1, int(params.hash_type), params.uuid or bytes(16),
                    params.hash_alg.bank_name.encode(), params.data_block_size,
                    params.hash_block_size, params.data_blocks, len(params.salt), params.salt)


class _Fields(NamedTuple):
    version: int
    hash_type: int
    uuid: bytes
    algorithm: bytes
    data_block_size: int
    hash_block_size: int
    data_blocks: int
    salt_size: int
    salt: bytes


def is_superblock(data: bytes) -> bool:
    return data[:8] == VERITY_SIGNATURE


def parse_superblock(data: bytes, *, hash_offset: int = 0, source: str = "hash file") -> VerityParams:
    """Parameters from a superblock (``data`` starts at the superblock)."""
    if len(data) < SUPERBLOCK_SIZE:
        raise FormatError(f"{source} is too short for a dm-verity superblock", offset=hash_offset)
    if not is_superblock(data):
        raise FormatError(f"{source} has no dm-verity superblock", offset=hash_offset,
                          hint="pass --no-superblock and the parameters, or the right --hash-offset")
    sb = _Fields._make(_SB.unpack_from(data)[1:])
    if sb.version != 1:
        raise FormatError(f"{source}: unsupported verity superblock version {sb.version}", offset=hash_offset)
    if sb.hash_type not in (0, 1):
        raise FormatError(f"{source}: unsupported verity hash type {sb.hash_type}", offset=hash_offset)
    if sb.salt_size > 256:
        raise FormatError(f"{source}: verity salt size {sb.salt_size} exceeds 256", offset=hash_offset)
    name = sb.algorithm.split(b"\0", 1)[0].decode("ascii", "replace")
    try:
        alg = HashAlg.from_name(name)
    except Exception:
        raise FormatError(f"{source}: unknown verity hash algorithm {name!r}", offset=hash_offset) from None
    try:
        return VerityParams(
            data_blocks=sb.data_blocks, hash_alg=alg, hash_type=HashType(sb.hash_type),
            data_block_size=sb.data_block_size, hash_block_size=sb.hash_block_size,
            salt=bytes(sb.salt[:sb.salt_size]), superblock=True, uuid=bytes(sb.uuid),
            hash_offset=hash_offset)
    except Exception as e:  # UsageError from validation: the superblock holds nonsense
        raise FormatError(f"{source}: invalid verity superblock: {e}", offset=hash_offset) from None
