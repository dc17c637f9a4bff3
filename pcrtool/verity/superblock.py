"""The 512-byte dm-verity superblock (cryptsetup ``struct verity_sb``, lib/verity/verity.c).

Little-endian; written by ``veritysetup format`` unless ``--no-superblock`` is given. The kernel
never reads it: it only tells userspace the parameters.
"""

from __future__ import annotations

from construct import Bytes, Const, Int16ul, Int32ul, Int64ul, Padding, Struct, StreamError, ConstError

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.verity.params import SUPERBLOCK_SIZE, HashType, VerityParams

VERITY_SIGNATURE = b"verity\0\0"

verity_sb = Struct(
    "signature" / Const(VERITY_SIGNATURE),
    "version" / Int32ul,
    "hash_type" / Int32ul,
    "uuid" / Bytes(16),
    "algorithm" / Bytes(32),
    "data_block_size" / Int32ul,
    "hash_block_size" / Int32ul,
    "data_blocks" / Int64ul,
    "salt_size" / Int16ul,
    Padding(6),
    "salt" / Bytes(256),
    Padding(168),
)
assert verity_sb.sizeof() == SUPERBLOCK_SIZE


def build_superblock(params: VerityParams) -> bytes:
    """The superblock bytes for ``params`` (UUID all-zero when none is given)."""
    name = params.hash_alg.bank_name.encode()
    return verity_sb.build(dict(
        version=1, hash_type=int(params.hash_type), uuid=params.uuid or bytes(16),
        algorithm=name.ljust(32, b"\0"), data_block_size=params.data_block_size,
        hash_block_size=params.hash_block_size, data_blocks=params.data_blocks,
        salt_size=len(params.salt), salt=params.salt.ljust(256, b"\0")))


def is_superblock(data: bytes) -> bool:
    return data[:8] == VERITY_SIGNATURE


def parse_superblock(data: bytes, *, hash_offset: int = 0, source: str = "hash file") -> VerityParams:
    """Parameters from a superblock (``data`` starts at the superblock)."""
    try:
        sb = verity_sb.parse(data[:SUPERBLOCK_SIZE])
    except ConstError:
        raise FormatError(f"{source} has no dm-verity superblock", offset=hash_offset,
                          hint="pass --no-superblock and the parameters, or the right --hash-offset") from None
    except StreamError:
        raise FormatError(f"{source} is too short for a dm-verity superblock", offset=hash_offset) from None
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
