"""A small read-only EROFS reader (Linux fs/erofs/erofs_fs.h): superblock, directories and
uncompressed files, enough to read an extension-release file without mounting anything.

Files stored compressed (layouts 1 and 3) or chunk-based raise ``UnsupportedError``; the
``pcrtool.ddi.fsread`` adapter then falls back to ``fsck.erofs --extract``. Pure.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from pcrtool.errors import FormatError, UnsupportedError

SUPERBLOCK_OFFSET = 1024
MAGIC = 0xE0F5E1E2
_SB = struct.Struct("<IIIBBHQQIIII16s16sI")
LAYOUT_PLAIN, LAYOUT_COMPRESSED_FULL, LAYOUT_INLINE, LAYOUT_COMPRESSED_COMPACT, LAYOUT_CHUNK = range(5)
S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Superblock:
    block_size: int
    root_nid: int
    inodes: int
    build_time: int
    blocks: int
    meta_blkaddr: int
    uuid: uuid.UUID
    volume_name: str
    feature_compat: int
    feature_incompat: int

    @property
    def size(self) -> int:
        return self.blocks * self.block_size


@dataclass(frozen=True, slots=True)
class Inode:
    nid: int
    mode: int
    size: int
    layout: int
    raw_blkaddr: int
    inline_offset: int        # byte offset of inline data (right after inode and xattrs)


def is_erofs(data: bytes) -> bool:
    return len(data) >= SUPERBLOCK_OFFSET + 4 and \
        int.from_bytes(data[SUPERBLOCK_OFFSET:SUPERBLOCK_OFFSET + 4], "little") == MAGIC


def parse_erofs_superblock(data: bytes) -> Superblock:
    if len(data) < SUPERBLOCK_OFFSET + _SB.size:
        raise FormatError("too short for an EROFS superblock")
    (magic, _csum, compat, blkszbits, _ext, root_nid, inos, build_time, _nsec, blocks, meta,
     _xattr, raw_uuid, name, incompat) = _SB.unpack_from(data, SUPERBLOCK_OFFSET)
    if magic != MAGIC:
        raise FormatError("no EROFS superblock (magic 0xe0f5e1e2 at byte 1024)")
    if not 9 <= blkszbits <= 16:
        raise FormatError(f"EROFS block size 2^{blkszbits} is implausible", offset=SUPERBLOCK_OFFSET + 12)
    return Superblock(1 << blkszbits, root_nid, inos, build_time, blocks, meta, uuid.UUID(bytes=raw_uuid),
                      name.split(b"\0", 1)[0].decode("utf-8", "replace"), compat, incompat)


class ErofsReader:
    """Look up paths and read uncompressed files of one EROFS image held in memory."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sb = parse_erofs_superblock(data)

    def inode(self, nid: int) -> Inode:
        off = self.sb.meta_blkaddr * self.sb.block_size + nid * 32
        if off + 32 > len(self.data):
            raise FormatError(f"EROFS inode {nid} lies outside the image", offset=off)
        fmt, xattr_icount, mode = struct.unpack_from("<HHH", self.data, off)
        extended = fmt & 1
        layout = (fmt >> 1) & 7
        if extended:
            size, = struct.unpack_from("<Q", self.data, off + 8)
            isize = 64
        else:
            size, = struct.unpack_from("<I", self.data, off + 8)
            isize = 32
        raw_blkaddr, = struct.unpack_from("<I", self.data, off + 16)
        xattr_size = 0 if xattr_icount == 0 else 12 + (xattr_icount - 1) * 4
        return Inode(nid, mode, size, layout, raw_blkaddr, off + isize + xattr_size)

    def read(self, ino: Inode) -> bytes:
        bs = self.sb.block_size
        if ino.layout == LAYOUT_PLAIN:
            start = ino.raw_blkaddr * bs
            out = self.data[start:start + ino.size]
        elif ino.layout == LAYOUT_INLINE:
            full = ino.size // bs * bs
            start = ino.raw_blkaddr * bs
            out = self.data[start:start + full] + self.data[ino.inline_offset:ino.inline_offset + ino.size - full]
        elif ino.layout in (LAYOUT_COMPRESSED_FULL, LAYOUT_COMPRESSED_COMPACT):
            raise UnsupportedError(f"EROFS inode {ino.nid} is compressed")
        else:
            raise UnsupportedError(f"EROFS inode {ino.nid} uses data layout {ino.layout}")
        if len(out) != ino.size:
            raise FormatError(f"EROFS inode {ino.nid} runs past the end of the image")
        return out

    def listdir(self, ino: Inode) -> dict[str, int]:
        """Directory entries name → nid (without . and ..)."""
        if ino.mode & S_IFMT != S_IFDIR:
            raise FormatError(f"EROFS inode {ino.nid} is not a directory")
        data = self.read(ino)
        bs = self.sb.block_size
        out: dict[str, int] = {}
        for base in range(0, len(data), bs):
            block = data[base:base + bs]
            if len(block) < 12:
                break
            first_nameoff = struct.unpack_from("<H", block, 8)[0]
            count = first_nameoff // 12
            if count == 0 or first_nameoff > len(block):
                raise FormatError(f"EROFS directory {ino.nid} has a corrupt block", offset=base)
            for i in range(count):
                nid, nameoff, _ftype = struct.unpack_from("<QHB", block, i * 12)
                end = struct.unpack_from("<H", block, (i + 1) * 12 + 8)[0] if i + 1 < count else len(block)
                name = block[nameoff:end].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                if name not in (".", ".."):
                    out[name] = nid
        return out

    def lookup(self, path: str) -> Inode | None:
        """The inode at ``path`` (relative to the root; symlinks are not followed), or None."""
        ino = self.inode(self.sb.root_nid)
        for part in filter(None, path.split("/")):
            if ino.mode & S_IFMT != S_IFDIR:
                return None
            nid = self.listdir(ino).get(part)
            if nid is None:
                return None
            ino = self.inode(nid)
        return ino

    def read_file(self, path: str) -> bytes | None:
        ino = self.lookup(path)
        if ino is None or ino.mode & S_IFMT != S_IFREG:
            return None
        return self.read(ino)

    def list_files(self, directory: str) -> list[str]:
        ino = self.lookup(directory)
        if ino is None or ino.mode & S_IFMT != S_IFDIR:
            return []
        return sorted(self.listdir(ino))
