"""EV_EFI_GPT_EVENT: UEFI_GPT_DATA (TCG PFP §10.2.6) — the GPT header and the partition entries
the firmware measured (UEFI 2.10 §5.3)."""

from __future__ import annotations

from dataclasses import dataclass

import construct

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg import structs
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
    width = log.uintn_bytes if log is not None else 8
    if event.data[:8] != b"EFI PART":
        raise FormatError("GPT header signature is not 'EFI PART'")
    try:
        g = structs.uefi_gpt_data(width).parse(event.data)
    except construct.ConstructError as e:
        raise FormatError(f"UEFI_GPT_DATA: {str(e).splitlines()[0][:80]}") from None
    h = g.header
    parts = tuple(
        Partition(str(p.partition_type_guid), WELL_KNOWN.get(p.partition_type_guid),
                  str(p.unique_partition_guid), p.starting_lba, p.ending_lba, p.attributes,
                  p.partition_name.decode("utf-16-le", "replace").split("\0", 1)[0])
        for p in g.partitions)
    return Gpt(str(h.disk_guid), h.revision, h.header_size, h.my_lba, h.alternate_lba,
               h.first_usable_lba, h.last_usable_lba, h.partition_entry_lba,
               h.number_of_partition_entries, h.size_of_partition_entry, parts)
