"""Platform firmware events: separators, actions, POST codes, S-CRTM, firmware blobs, handoff
tables, H-CRTM, non-host info (TCG PFP 1.05 §10.4.1 and §10.4.4)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded, decode_ascii, decode_utf16
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg import structs
from pcrtool.tcg.guid import WELL_KNOWN, guid_from_bytes

_BLOB = struct.Struct("<QQ")
SEPARATOR_VALUES = {0: "success", 0xFFFFFFFF: "success", 1: "error", 0x4C434257: "Windows WBCL"}


@dataclass(frozen=True, slots=True)
class Separator(Decoded):
    """EV_SEPARATOR: 0x00000000 (or 0xFFFFFFFF) marks success, 0x00000001 an error (PFP §10.4.1)."""

    value: int | None
    data: bytes
    kind = "separator"

    def describe(self) -> str:
        if self.value is None:
            return f"separator {self.data.hex()}"
        return f"separator 0x{self.value:08x} ({SEPARATOR_VALUES.get(self.value, 'unknown')})"


@dataclass(frozen=True, slots=True)
class Text(Decoded):
    """An event whose data is a string (EV_EFI_ACTION, EV_ACTION, EV_POST_CODE "ACPI DATA", …)."""

    text: str
    encoding: str
    kind = "text"

    def describe(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Blob(Decoded):
    """UEFI_PLATFORM_FIRMWARE_BLOB(2): a memory range measured by firmware (PFP §10.2.4)."""

    base: int
    length: int
    description: str | None = None
    kind = "firmware-blob"

    def describe(self) -> str:
        prefix = f"{self.description} " if self.description else ""
        return f"{prefix}blob base=0x{self.base:x} length=0x{self.length:x}"


@dataclass(frozen=True, slots=True)
class HandoffTable(Decoded):
    guid: str
    name: str | None
    address: int


@dataclass(frozen=True, slots=True)
class HandoffTables(Decoded):
    """UEFI_HANDOFF_TABLE_POINTERS(2) (PFP §10.2.5): configuration tables such as SMBIOS/ACPI."""

    tables: tuple[HandoffTable, ...]
    description: str | None = None
    kind = "handoff-tables"

    def to_json(self) -> dict:
        return {"kind": self.kind, "description": self.description,
                "tables": [{"guid": t.guid, "name": t.name, "address": t.address} for t in self.tables]}

    def describe(self) -> str:
        names = ", ".join(t.name or t.guid for t in self.tables)
        return f"{self.description + ': ' if self.description else ''}{names}"


@dataclass(frozen=True, slots=True)
class Guid(Decoded):
    guid: str
    kind = "guid"

    def describe(self) -> str:
        return self.guid


@dataclass(frozen=True, slots=True)
class Bytes(Decoded):
    data: bytes
    note: str = ""
    kind = "bytes"

    def describe(self) -> str:
        head = self.data[:24].hex() + ("…" if len(self.data) > 24 else "")
        return f"{self.note + ' ' if self.note else ''}{head}"


@dataclass(frozen=True, slots=True)
class NonHostInfo(Decoded):
    """EV_NONHOST_INFO: vendor-defined, usually a NUL-terminated ASCII signature then data."""

    signature: str
    data: bytes
    kind = "nonhost-info"

    def describe(self) -> str:
        return f"{self.signature} {self.data[:16].hex()}"


def decode_separator(event: Event, log: EventLog | None) -> Separator:
    value = struct.unpack("<I", event.data)[0] if len(event.data) == 4 else None
    return Separator(value, event.data)


def decode_text(event: Event, log: EventLog | None):
    text = decode_ascii(event.data)
    if text is not None:
        return Text(text, "ascii")
    text = decode_utf16(event.data)
    if text is not None:
        return Text(text, "utf-16le")
    return Bytes(event.data)


def decode_text_or_blob(event: Event, log: EventLog | None):
    """EV_POST_CODE(2), EV_S_CRTM_CONTENTS: an ASCII string, or a 16-byte
    UEFI_PLATFORM_FIRMWARE_BLOB (tpm2-tools #2017)."""
    text = decode_ascii(event.data)
    if text is not None:
        return Text(text, "ascii")
    if len(event.data) == 16:
        return decode_blob(event, log)
    return Bytes(event.data)


def decode_blob(event: Event, log: EventLog | None) -> Blob:
    if len(event.data) < 16:
        raise FormatError(f"firmware blob has {len(event.data)} bytes, needs 16")
    base, length = _BLOB.unpack_from(event.data, 0)   # UEFI_PLATFORM_FIRMWARE_BLOB
    return Blob(base, length)


def decode_blob2(event: Event, log: EventLog | None) -> Blob:
    b = structs.UEFI_PLATFORM_FIRMWARE_BLOB2.parse(event.data)
    return Blob(b.blob_base, b.blob_length, b.blob_description.decode("latin-1").rstrip("\0"))


def _handoff(event: Event, log: EventLog | None, with_description: bool) -> HandoffTables:
    width = log.uintn_bytes if log is not None else 8
    t = structs.uefi_handoff_table_pointers(width, with_description=with_description).parse(event.data)
    tables = tuple(HandoffTable(str(e.vendor_guid), WELL_KNOWN.get(e.vendor_guid), e.vendor_table)
                   for e in t.table_entry)
    desc = t.table_description.decode("latin-1").rstrip("\0") if with_description else None
    return HandoffTables(tables, desc)


def decode_handoff(event: Event, log: EventLog | None) -> HandoffTables:
    return _handoff(event, log, False)


def decode_handoff2(event: Event, log: EventLog | None) -> HandoffTables:
    return _handoff(event, log, True)


def decode_scrtm_version(event: Event, log: EventLog | None):
    """EV_S_CRTM_VERSION: UTF-16 version string, or a 16-byte GUID (PFP §10.4.1)."""
    text = decode_utf16(event.data)
    if text is not None:
        return Text(text, "utf-16le")
    if len(event.data) == 16:
        return Guid(str(guid_from_bytes(event.data)))
    text = decode_ascii(event.data.split(b"\0", 1)[0]) if event.data[:1].isalnum() else None
    if text is not None:
        return Bytes(event.data, note=text)
    return Bytes(event.data)


def decode_nonhost_info(event: Event, log: EventLog | None):
    head, sep, rest = event.data.partition(b"\0")
    sig = decode_ascii(head) if sep else None
    if sig is not None:
        return NonHostInfo(sig, rest)
    return Bytes(event.data)

