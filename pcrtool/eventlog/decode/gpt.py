"""EV_EFI_GPT_EVENT: UEFI_GPT_DATA (TCG PFP §10.2.6) — the GPT header and the partition entries
the firmware measured (UEFI 2.10 §5.3)."""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg.guid import WELL_KNOWN, guid_text


@dataclass(frozen=True, slots=True)
class Partition:
    type_guid: str
    type_name: str | None
    unique_guid: str
    first_lba: int
    last_lba: int
    attributes: int
    name: str

    def to_json(self) -> dict:
        return {"typeGuid": self.type_guid, "type": self.type_name, "uniqueGuid": self.unique_guid,
                "firstLba": self.first_lba, "lastLba": self.last_lba,
                "attributes": f"0x{self.attributes:016x}", "name": self.name}


@dataclass(frozen=True, slots=True)
class Gpt(Decoded):
    disk_guid: str
    revision: int
    header_size: int
    my_lba: int
    alternate_lba: int
    first_usable_lba: int
    last_usable_lba: int
    partition_entry_lba: int
    number_of_partition_entries: int
    size_of_partition_entry: int
    partitions: tuple[Partition, ...]
    kind = "gpt"

    def to_json(self) -> dict:
        return {"kind": self.kind, "diskGuid": self.disk_guid, "revision": f"0x{self.revision:08x}",
                "headerSize": self.header_size, "myLba": self.my_lba, "alternateLba": self.alternate_lba,
                "firstUsableLba": self.first_usable_lba, "lastUsableLba": self.last_usable_lba,
                "partitionEntryLba": self.partition_entry_lba,
                "numberOfPartitionEntries": self.number_of_partition_entries,
                "sizeOfPartitionEntry": self.size_of_partition_entry,
                "partitions": [p.to_json() for p in self.partitions]}

    def describe(self) -> str:
        return f"GPT disk {self.disk_guid}, {len(self.partitions)} partitions"


_HEADER = struct.Struct("<8sIIII QQQQ 16s QIII")   # EFI_PARTITION_TABLE_HEADER, 92 bytes


def decode_gpt(event: Event, log: EventLog | None) -> Gpt:
    """struct-based for speed; equal to ``structs.uefi_gpt_data`` (tested against it)."""
    width = log.uintn_bytes if log is not None else 8
    data = event.data
    if data[:8] != b"EFI PART":
        raise FormatError("GPT header signature is not 'EFI PART'")
    if len(data) < 92 + width:
        raise FormatError(f"UEFI_GPT_DATA has {len(data)} bytes, needs {92 + width}")
    (_sig, revision, header_size, _crc, _res, my_lba, alt_lba, first, last, disk, entry_lba,
     n_entries, entry_size, _acrc) = _HEADER.unpack_from(data, 0)
    count = int.from_bytes(data[92:92 + width], "little")
    if entry_size < 56:
        raise FormatError(f"SizeOfPartitionEntry {entry_size} is below 56")
    if count * entry_size > len(data) - 92 - width:
        raise FormatError(f"{count} partitions of {entry_size} bytes run past the event data")
    parts = []
    pos = 92 + width
    for _ in range(count):
        type_guid = guid_text(data[pos:pos + 16])
        first_lba, last_lba, attributes = struct.unpack_from("<QQQ", data, pos + 32)
        name = data[pos + 56:pos + entry_size].decode("utf-16-le", "replace").split("\0", 1)[0]
        parts.append(Partition(type_guid, WELL_KNOWN.get(uuid.UUID(type_guid)), guid_text(data[pos + 16:pos + 32]),
                               first_lba, last_lba, attributes, name))
        pos += entry_size
    return Gpt(guid_text(disk), revision, header_size, my_lba, alt_lba, first, last, entry_lba,
               n_entries, entry_size, tuple(parts))
