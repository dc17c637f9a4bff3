"""GUID Partition Table (UEFI 2.10 §5.3): the one GPT reader and writer of pcrtool.

``parse_header``/``parse_entry`` read the 92-byte EFI_PARTITION_TABLE_HEADER and the 128-byte
EFI_PARTITION_ENTRY wherever they come from (a disk image, or UEFI_GPT_DATA in an event log);
``read_gpt`` checks a whole disk image (signature, both CRCs, primary and backup agree);
``build_gpt`` writes the primary and backup structures for a list of entries. GUIDs are stored
mixed-endian on disk (``uuid.UUID(bytes_le=…)``); values here are ``uuid.UUID``. Pure.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, replace

from pcrtool.errors import FormatError

SIGNATURE = b"EFI PART"
REVISION = 0x00010000
HEADER_SIZE = 92
ENTRY_SIZE = 128
NAME_BYTES = 72
# signature revision header_size header_crc reserved my alt first_usable last_usable disk_guid
# entries_lba entries_count entry_size entries_crc
HEADER = struct.Struct("<8sIII4xQQQQ16sQIII")
ENTRY = struct.Struct("<16s16sQQQ72s")
_ENTRY_FIXED = struct.Struct("<16s16sQQQ")       # the 56 bytes before the name
assert HEADER.size == HEADER_SIZE and ENTRY.size == ENTRY_SIZE

ATTR_READ_ONLY = 1 << 60        # DPS: mount read-only
ATTR_GROWFS = 1 << 59           # DPS: grow the file system to the partition
ATTR_NO_AUTO = 1 << 63


@dataclass(frozen=True, slots=True)
class GptHeader:
    revision: int
    header_size: int
    header_crc: int
    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    disk_guid: uuid.UUID
    entries_lba: int
    entries_count: int
    entry_size: int
    entries_crc: int

    def pack(self, *, with_crc: bool = True) -> bytes:
        """The 92 header bytes; the header CRC is computed (over the bytes with CRC = 0)."""
        raw = HEADER.pack(SIGNATURE, self.revision, self.header_size, 0, self.my_lba,
                          self.alternate_lba, self.first_usable_lba, self.last_usable_lba,
                          self.disk_guid.bytes_le, self.entries_lba, self.entries_count,
                          self.entry_size, self.entries_crc)
        if not with_crc:
            return raw
        return raw[:16] + zlib.crc32(raw).to_bytes(4, "little") + raw[20:]


@dataclass(frozen=True, slots=True)
class GptEntry:
    index: int                 # slot in the entry array (0-based)
    type_guid: uuid.UUID
    unique_guid: uuid.UUID
    first_lba: int
    last_lba: int
    attributes: int
    name: str

    @property
    def lba_count(self) -> int:
        return self.last_lba - self.first_lba + 1

    def pack(self) -> bytes:
        name = self.name.encode("utf-16-le")
        if len(name) > NAME_BYTES:
            raise FormatError(f"partition name {self.name!r} is longer than 36 UTF-16 units")
        return ENTRY.pack(self.type_guid.bytes_le, self.unique_guid.bytes_le, self.first_lba,
                          self.last_lba, self.attributes, name.ljust(NAME_BYTES, b"\0"))


@dataclass(frozen=True, slots=True)
class GptTable:
    sector_size: int
    header: GptHeader
    entries: tuple[GptEntry, ...]       # used entries only (type GUID not zero), in slot order


def parse_header(data: bytes, *, offset: int = 0, source: str = "GPT header") -> GptHeader:
    """EFI_PARTITION_TABLE_HEADER (UEFI 2.10 Table 5.5); the signature is checked, not the CRC."""
    if len(data) - offset < HEADER_SIZE or data[offset:offset + 8] != SIGNATURE:
        raise FormatError(f"{source}: no 'EFI PART' signature", offset=offset,
                          hint="the input is not a GPT disk image (or uses another sector size)")
    (_sig, revision, header_size, header_crc, my_lba, alt_lba, first, last, disk, entries_lba,
     count, entry_size, entries_crc) = HEADER.unpack_from(data, offset)
    return GptHeader(revision, header_size, header_crc, my_lba, alt_lba, first, last,
                     uuid.UUID(bytes_le=disk), entries_lba, count, entry_size, entries_crc)


def parse_entry(data: bytes, offset: int = 0, *, index: int = 0, entry_size: int = ENTRY_SIZE) -> GptEntry:
    """EFI_PARTITION_ENTRY (UEFI 2.10 Table 5.6); the name stops at the first NUL."""
    type_guid, unique, first, last, attrs = _ENTRY_FIXED.unpack_from(data, offset)
    name = data[offset + 56:offset + entry_size].decode("utf-16-le", "replace").split("\0", 1)[0]
    return GptEntry(index, uuid.UUID(bytes_le=type_guid), uuid.UUID(bytes_le=unique), first, last,
                    attrs, name)


def _check_header_crc(raw: bytes, header: GptHeader, what: str) -> None:
    body = bytearray(raw[:header.header_size])
    body[16:20] = bytes(4)
    if zlib.crc32(bytes(body)) != header.header_crc:
        raise FormatError(f"{what} GPT header CRC mismatch", hint="the GPT is corrupt")


def read_gpt(disk: bytes, *, sector_size: int | None = None, check_backup: bool = True) -> GptTable:
    """Read and check a GPT disk image (sector size detected from 512 and 4096 when not given)."""
    sizes = (sector_size,) if sector_size else (512, 4096)
    for ss in sizes:
        if disk[ss:ss + 8] == SIGNATURE:
            break
    else:
        raise FormatError("no GPT header at LBA 1 (sector size 512 or 4096)",
                          hint="give a GPT disk image (a DDI as systemd-repart writes)")
    header = parse_header(disk, offset=ss, source="primary GPT header")
    if header.header_size < HEADER_SIZE or header.header_size > ss:
        raise FormatError(f"GPT header size {header.header_size} is implausible", offset=ss + 12)
    _check_header_crc(disk[ss:ss + header.header_size], header, "primary")
    if header.entry_size < ENTRY_SIZE or header.entry_size % 8 or header.entries_count > 4096:
        raise FormatError(f"implausible GPT: {header.entries_count} entries of {header.entry_size} bytes")
    start = header.entries_lba * ss
    table = disk[start:start + header.entries_count * header.entry_size]
    if len(table) != header.entries_count * header.entry_size:
        raise FormatError("disk image ends inside the GPT partition entry array", offset=len(disk))
    if zlib.crc32(table) != header.entries_crc:
        raise FormatError("GPT partition entry array CRC mismatch", hint="the GPT is corrupt")
    entries = []
    for i in range(header.entries_count):
        off = i * header.entry_size
        if table[off:off + 16] == bytes(16):
            continue
        e = parse_entry(table, off, index=i, entry_size=header.entry_size)
        if e.first_lba > e.last_lba or e.first_lba < header.first_usable_lba or e.last_lba > header.last_usable_lba:
            raise FormatError(f"GPT entry {i + 1} spans LBAs {e.first_lba}-{e.last_lba}, outside "
                              f"{header.first_usable_lba}-{header.last_usable_lba}")
        if (e.last_lba + 1) * ss > len(disk):
            raise FormatError(f"GPT entry {i + 1} ends after the end of the image", offset=len(disk))
        entries.append(e)
    ordered = sorted(entries, key=lambda e: e.first_lba)
    for a, b in zip(ordered, ordered[1:]):
        if b.first_lba <= a.last_lba:
            raise FormatError(f"GPT entries {a.index + 1} and {b.index + 1} overlap")
    if check_backup:
        alt = header.alternate_lba * ss
        backup = parse_header(disk, offset=alt, source="backup GPT header")
        _check_header_crc(disk[alt:alt + backup.header_size], backup, "backup")
        btable = disk[backup.entries_lba * ss:backup.entries_lba * ss + len(table)]
        if btable != table or backup.disk_guid != header.disk_guid:
            raise FormatError("the backup GPT differs from the primary GPT", hint="the GPT is corrupt")
    return GptTable(ss, header, tuple(entries))


@dataclass(frozen=True, slots=True)
class GptImage:
    """The bytes ``build_gpt`` produced: head (protective MBR + primary GPT) and tail (backup)."""

    head: bytes
    tail: bytes
    header: GptHeader


def protective_mbr(total_sectors: int) -> bytes:
    """MBR with one 0xEE partition covering the disk (UEFI 2.10 §5.2.3)."""
    mbr = bytearray(512)
    size = min(total_sectors - 1, 0xFFFFFFFF)
    # status, CHS start (0,0,2), type 0xEE, CHS end (0xFF 0xFF 0xFF), LBA start 1, size
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, size)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def build_gpt(entries: list[GptEntry], *, disk_guid: uuid.UUID, total_sectors: int,
              sector_size: int = 512, entries_count: int = 128, first_usable_lba: int | None = None) -> GptImage:
    """Primary and backup GPT for ``entries`` (their ``index`` is the slot) on a disk of
    ``total_sectors`` sectors: MBR at LBA 0, header at 1, entries from LBA 2; the backup entries
    just before the backup header in the last LBA."""
    table = bytearray(entries_count * ENTRY_SIZE)
    for e in entries:
        table[e.index * ENTRY_SIZE:(e.index + 1) * ENTRY_SIZE] = e.pack()
    table_sectors = -(-len(table) // sector_size)
    last_lba = total_sectors - 1
    first_usable = first_usable_lba if first_usable_lba is not None else 2 + table_sectors
    header = GptHeader(REVISION, HEADER_SIZE, 0, 1, last_lba, first_usable,
                       last_lba - 1 - table_sectors, disk_guid, 2, entries_count, ENTRY_SIZE,
                       zlib.crc32(table))
    primary = header.pack()
    backup_header = replace(header, my_lba=last_lba, alternate_lba=1, entries_lba=last_lba - table_sectors)
    table_padded = bytes(table).ljust(table_sectors * sector_size, b"\0")
    head = (protective_mbr(total_sectors).ljust(sector_size, b"\0") + primary.ljust(sector_size, b"\0")
            + table_padded)
    tail = table_padded + backup_header.pack().ljust(sector_size, b"\0")
    return GptImage(head, tail, replace(header, header_crc=int.from_bytes(primary[16:20], "little")))
