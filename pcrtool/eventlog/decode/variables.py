"""UEFI variable events: UEFI_VARIABLE_DATA (TCG PFP §10.2.2) in EV_EFI_VARIABLE_DRIVER_CONFIG,
_BOOT, _BOOT2 and _AUTHORITY; the variable contents: SecureBoot, PK/KEK/db/dbx/dbt/dbr and shim's
MokList* as EFI_SIGNATURE_LISTs (UEFI 2.10 §32.4.1) with X.509 subject/issuer/serial/fingerprint,
Boot#### as EFI_LOAD_OPTION (§3.1.3), BootOrder as UINT16s, authority EFI_SIGNATURE_DATA.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import uuid
from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded, decode_ascii
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg.devicepath import DevicePath, parse_device_path
from pcrtool.tcg.guid import EFI_CERT_X509_GUID, SIGNATURE_TYPES, WELL_KNOWN, guid_text

SIGNATURE_DB_NAMES = frozenset({"PK", "KEK", "db", "dbx", "dbt", "dbr", "PKDefault", "KEKDefault",
                                "dbDefault", "dbxDefault", "MokList", "MokListX", "MokListRT",
                                "MokListXRT", "vendor_db"})
_III = struct.Struct("<III")
_BOOT_ENTRY = re.compile(r"^(Boot|Driver|SysPrep|PlatformRecovery)[0-9A-Fa-f]{4}$")


@dataclass(frozen=True, slots=True)
class X509Info:
    subject: str
    issuer: str
    serial: str
    sha256_fingerprint: str
    not_before: str
    not_after: str

    def to_json(self) -> dict:
        return {"subject": self.subject, "issuer": self.issuer, "serial": self.serial,
                "sha256Fingerprint": self.sha256_fingerprint, "notBefore": self.not_before,
                "notAfter": self.not_after}


@functools.lru_cache(maxsize=512)
def x509_info(der: bytes) -> X509Info | None:
    """Subject, issuer, serial and SHA-256 fingerprint of a DER certificate (None if not one)."""
    import warnings

    from cryptography import x509
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # firmware certificates with negative serials etc.
            return _x509_info(x509.load_der_x509_certificate(der), der)
    except Exception:  # noqa: BLE001 - any malformed certificate is "not a certificate"
        return None


def _x509_info(cert, der: bytes) -> X509Info:
    return X509Info(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                    f"{cert.serial_number:x}", hashlib.sha256(der).hexdigest(),
                    cert.not_valid_before_utc.isoformat(), cert.not_valid_after_utc.isoformat())


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    owner: str
    type: str                      # x509, sha256, …
    data: bytes
    certificate: X509Info | None = None

    def to_json(self) -> dict:
        out = {"owner": self.owner, "type": self.type}
        if self.certificate is not None:
            out["x509"] = self.certificate.to_json()   # the DER is in the event data
        else:
            out["data"] = self.data.hex()
        return out

    def describe(self) -> str:
        if self.certificate is not None:
            return f"x509 {self.certificate.subject}"
        return f"{self.type} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class SignatureList:
    signature_type: str
    type_name: str
    header: bytes
    entries: tuple[SignatureEntry, ...]

    def to_json(self) -> dict:
        return {"signatureType": self.signature_type, "type": self.type_name,
                "header": self.header.hex(), "entries": [e.to_json() for e in self.entries]}


def walk_signature_lists(untrusted_data: bytes):
    """The one EFI_SIGNATURE_LIST reader (UEFI 2.10 §32.4.1): yields, per list, (offset, signature
    type GUID text, SignatureHeader bytes, [(owner GUID text, SignatureData bytes)]). Every size is
    checked against the buffer before use; a malformed list raises FormatError with its offset."""
    data = untrusted_data
    pos = 0
    end = len(data)
    unpack = _III.unpack_from
    while pos < end:
        if end - pos < 28:
            raise FormatError(f"EFI_SIGNATURE_LIST header truncated ({end - pos} bytes)", offset=pos)
        list_size, header_size, sig_size = unpack(data, pos + 16)
        if list_size < 28 + header_size or list_size > end - pos or sig_size < 16 or \
                (list_size - 28 - header_size) % sig_size:
            raise FormatError(f"bad EFI_SIGNATURE_LIST sizes (list {list_size}, header {header_size}, "
                              f"signature {sig_size})", offset=pos)
        first = pos + 28 + header_size
        stop = pos + list_size
        entries = [(guid_text(data[at:at + 16]), bytes(data[at + 16:at + sig_size]))
                   for at in range(first, stop, sig_size)]
        yield pos, guid_text(data[pos:pos + 16]), bytes(data[pos + 28:first]), entries
        pos = stop


def parse_signature_lists(data: bytes) -> tuple[SignatureList, ...]:
    """EFI_SIGNATURE_LIST sequence (a signature database: db, dbx, MokList …). Raises FormatError."""
    lists: list[SignatureList] = []
    for _pos, type_text, header, raw_entries in walk_signature_lists(data):
        sig_type = uuid.UUID(type_text)
        type_name = SIGNATURE_TYPES.get(sig_type, type_text)
        is_x509 = sig_type == EFI_CERT_X509_GUID
        entries = tuple(SignatureEntry(owner, type_name, payload, x509_info(payload) if is_x509 else None)
                        for owner, payload in raw_entries)
        lists.append(SignatureList(type_text, type_name, header, entries))
    return tuple(lists)


@dataclass(frozen=True, slots=True)
class LoadOption:
    """EFI_LOAD_OPTION: a Boot#### entry."""

    attributes: int
    description: str
    device_path: DevicePath
    optional_data: bytes

    @property
    def active(self) -> bool:
        return bool(self.attributes & 1)

    def to_json(self) -> dict:
        return {"attributes": self.attributes, "active": self.active, "description": self.description,
                "devicePath": self.device_path.text, "optionalData": self.optional_data.hex()}

    def describe(self) -> str:
        return f"{self.description} {self.device_path.text}"


def parse_load_option(data: bytes) -> LoadOption:
    if len(data) < 6:
        raise FormatError("EFI_LOAD_OPTION shorter than 6 bytes")
    attributes, path_len = struct.unpack_from("<IH", data, 0)
    pos = data.find(b"\0\0", 6)
    while pos >= 0 and pos % 2:          # a UTF-16 NUL starts on an even offset
        pos = data.find(b"\0\0", pos + 1)
    if pos < 0:
        raise FormatError("EFI_LOAD_OPTION description is not NUL-terminated")
    description = bytes(data[6:pos]).decode("utf-16-le", "replace")
    pos += 2
    if path_len > len(data) - pos:
        raise FormatError(f"EFI_LOAD_OPTION device path of {path_len} bytes runs past the data")
    path = parse_device_path(data[pos:pos + path_len])
    return LoadOption(attributes, description, path, bytes(data[pos + path_len:]))


@dataclass(frozen=True, slots=True)
class Variable(Decoded):
    """UEFI_VARIABLE_DATA plus the decoded variable data (``value``)."""

    guid: str
    name: str
    data: bytes
    value: object = None
    trailing: bytes = b""
    kind = "uefi-variable"

    @property
    def vendor(self) -> str | None:
        return WELL_KNOWN.get(uuid.UUID(self.guid))

    def to_json(self) -> dict:
        value = self.value
        if isinstance(value, tuple):
            value = [v.to_json() if hasattr(v, "to_json") else v for v in value]
        elif hasattr(value, "to_json"):
            value = value.to_json()
        elif isinstance(value, bytes):
            value = value.hex()
        # the variable data is in the event's "data" already; "value" is its decoded form
        out = {"kind": self.kind, "guid": self.guid, "name": self.name, "dataLength": len(self.data),
               "value": value}
        if self.trailing:
            out["trailing"] = self.trailing.hex()
        return out

    def describe(self) -> str:
        value = self.value
        if value == () or value == b"":
            return f"{self.name} (empty)"
        if isinstance(value, tuple) and value and isinstance(value[0], SignatureList):
            n = sum(len(sl.entries) for sl in value)
            certs = [e.certificate.subject for sl in value for e in sl.entries if e.certificate]
            more = f": {'; '.join(certs[:2])}" if certs else ""
            return f"{self.name} ({n} entries){more}"
        if isinstance(value, SignatureEntry):
            return f"{self.name}: {value.describe()}"
        if isinstance(value, LoadOption):
            return f"{self.name}: {value.describe()}"
        if isinstance(value, tuple):
            return f"{self.name}: {','.join(f'{v:04X}' if isinstance(v, int) else str(v) for v in value)}"
        if isinstance(value, bool):
            return f"{self.name}: {'enabled' if value else 'disabled'}"
        if isinstance(value, str):
            return f"{self.name}: {value.strip()[:60]}"
        if self.data:
            return f"{self.name}: {self.data[:16].hex()}{'…' if len(self.data) > 16 else ''}"
        return f"{self.name} (empty)"


def parse_variable_data(data: bytes) -> tuple[str, str, bytes, bytes]:
    """UEFI_VARIABLE_DATA → (guid, name, variable data, trailing bytes). Raises FormatError."""
    if len(data) < 32:
        raise FormatError(f"UEFI_VARIABLE_DATA needs 32 bytes, has {len(data)}")
    guid = guid_text(data)
    name_len, data_len = struct.unpack_from("<QQ", data, 16)
    if name_len * 2 > len(data) - 32:
        raise FormatError(f"variable name length {name_len} runs past the event data")
    name_end = 32 + name_len * 2
    if data_len > len(data) - name_end:
        raise FormatError(f"variable data length {data_len} runs past the event data")
    name = bytes(data[32:name_end]).decode("utf-16-le", "replace").rstrip("\0")
    value_end = name_end + data_len
    return guid, name, bytes(data[name_end:value_end]), bytes(data[value_end:])


def decode_variable_value(name: str, data: bytes, *, authority: bool = False):
    """Typed contents of a measured variable (or the raw bytes when nothing fits)."""
    if authority:
        return _authority_value(data)
    if name in ("SecureBoot", "DeployedMode", "AuditMode", "SetupMode", "MokSBState") and len(data) == 1:
        return bool(data[0])
    if name in SIGNATURE_DB_NAMES:
        if not data:
            return ()
        try:
            return parse_signature_lists(data)
        except FormatError:
            return data
    if name in ("BootOrder", "DriverOrder") and len(data) % 2 == 0:
        return tuple(struct.unpack(f"<{len(data) // 2}H", data))
    if _BOOT_ENTRY.match(name):
        try:
            return parse_load_option(data)
        except FormatError:
            return data
    if name in ("SbatLevel", "SbatLevelRT"):
        return decode_ascii(data) or data
    return data


def _authority_value(data: bytes):
    """EV_EFI_VARIABLE_AUTHORITY data: EFI_SIGNATURE_DATA (owner + cert), or shim's own forms
    (MokListTrusted 1 byte, SbatLevel text, a bare certificate) — go-attestation #222/#283."""
    if len(data) > 16:
        cert = x509_info(bytes(data[16:]))
        if cert is not None:
            return SignatureEntry(str(uuid.UUID(bytes_le=bytes(data[:16]))), "x509", bytes(data[16:]), cert)
    cert = x509_info(bytes(data)) if data[:1] == b"\x30" else None
    if cert is not None:
        return SignatureEntry("", "x509", bytes(data), cert)
    if len(data) == 1:
        return bool(data[0])
    text = decode_ascii(data)
    if text is not None:
        return text
    if len(data) > 16:   # EFI_SIGNATURE_DATA with a hash
        return SignatureEntry(str(uuid.UUID(bytes_le=bytes(data[:16]))), "hash", bytes(data[16:]))
    return data


def decode_variable(event: Event, log: EventLog | None) -> Variable:
    guid, name, value_bytes, trailing = parse_variable_data(event.data)
    authority = int(event.event_type) == 0x800000E0
    value = decode_variable_value(name, value_bytes, authority=authority)
    return Variable(guid, name, value_bytes, value, trailing)
