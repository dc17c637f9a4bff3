"""EV_EFI_GPT_EVENT: UEFI_GPT_DATA (TCG PFP §10.2.6) — the GPT header and the partition entries
the firmware measured (UEFI 2.10 §5.3)."""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.gpt import HEADER_SIZE, parse_entry, parse_header
from pcrtool.tcg.guid import WELL_KNOWN


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


def decode_gpt(event: Event, log: EventLog | None) -> Gpt:
    """Header and entries read by ``pcrtool.gpt`` (the one GPT parser); equal to
    ``structs.uefi_gpt_data`` (tested against it)."""
    width = log.uintn_bytes if log is not None else 8
    data = event.data
    if data[:8] != b"EFI PART":
        raise FormatError("GPT header signature is not 'EFI PART'")
    if len(data) < HEADER_SIZE + width:
        raise FormatError(f"UEFI_GPT_DATA has {len(data)} bytes, needs {HEADER_SIZE + width}")
    h = parse_header(data)
    entry_size = h.entry_size
    count = int.from_bytes(data[92:92 + width], "little")
    if entry_size < 56:
        raise FormatError(f"SizeOfPartitionEntry {entry_size} is below 56")
    if count * entry_size > len(data) - 92 - width:
        raise FormatError(f"{count} partitions of {entry_size} bytes run past the event data")
    parts = []
    pos = 92 + width
    for i in range(count):
        e = parse_entry(data, pos, index=i, entry_size=entry_size)
        parts.append(Partition(str(e.type_guid), WELL_KNOWN.get(e.type_guid), str(e.unique_guid),
                               e.first_lba, e.last_lba, e.attributes, e.name))
        pos += entry_size
    return Gpt(str(h.disk_guid), h.revision, h.header_size, h.my_lba, h.alternate_lba, h.first_usable_lba,
               h.last_usable_lba, h.entries_lba, h.entries_count, entry_size, tuple(parts))
