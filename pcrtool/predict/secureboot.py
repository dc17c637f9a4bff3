"""PCR 7: the Secure Boot policy as firmware measures it, from variable contents.

TCG PFP §3.3.4.8 / §10.4.4 and EDK2 ``SecureBootConfig``/``TcgDxe``: each of SecureBoot, PK, KEK,
db, dbx is measured as EV_EFI_VARIABLE_DRIVER_CONFIG whose digest covers the whole
UEFI_VARIABLE_DATA (GUID, u64 name length in characters, u64 data length, UTF-16LE name without
NUL, data); an absent variable is measured with empty data. Then EV_SEPARATOR, then one
EV_EFI_VARIABLE_AUTHORITY per distinct certificate that verified an image (UEFI_VARIABLE_DATA of
``db`` holding the matching EFI_SIGNATURE_DATA: owner GUID + certificate).

Variable files may be raw data (ESL), authenticated-variable updates (``.auth``:
EFI_VARIABLE_AUTHENTICATION_2 then the ESLs) or efivarfs dumps (u32 attributes then data).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.predict.pe import SEPARATOR_OK, separator
from pcrtool.tcg.constants import EventType
from pcrtool.tcg.guid import EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE_GUID, SHIM_LOCK_GUID  # noqa: F401
from pcrtool.tcg.structs import EFI_SIGNATURE_LIST, UEFI_VARIABLE_DATA

PCR_SECURE_BOOT_POLICY = 7
EFI_IMAGE_SECURITY_DATABASE = EFI_IMAGE_SECURITY_DATABASE_GUID
WIN_CERT_TYPE_EFI_GUID = 0x0EF1

#: Measured in this order (EDK2 mSecureBootVarList; pcrlock lock-secureboot-policy).
POLICY_VARIABLES: tuple[tuple[str, uuid.UUID], ...] = (
    ("SecureBoot", EFI_GLOBAL_VARIABLE), ("PK", EFI_GLOBAL_VARIABLE), ("KEK", EFI_GLOBAL_VARIABLE),
    ("db", EFI_IMAGE_SECURITY_DATABASE), ("dbx", EFI_IMAGE_SECURITY_DATABASE),
)
OPTIONAL_VARIABLES: tuple[tuple[str, uuid.UUID], ...] = (
    ("dbt", EFI_IMAGE_SECURITY_DATABASE), ("dbr", EFI_IMAGE_SECURITY_DATABASE),
)
_GUID_OF = dict(POLICY_VARIABLES + OPTIONAL_VARIABLES)


@dataclass(frozen=True, slots=True)
class Variable:
    """One UEFI variable as measured: vendor GUID, name, data."""

    name: str
    guid: uuid.UUID
    data: bytes

    def variable_data(self) -> bytes:
        """UEFI_VARIABLE_DATA (TCG PFP §10.4.4 / UEFI spec)."""
        return UEFI_VARIABLE_DATA.build({"variable_name": self.guid,
                                         "unicode_name": self.name.encode("utf-16-le"),
                                         "variable_data": self.data})

    @classmethod
    def from_variable_data(cls, data: bytes) -> "Variable":
        """Decode an untrusted UEFI_VARIABLE_DATA payload (e.g. from an event log)."""
        from pcrtool.eventlog.decode.variables import parse_variable_data
        try:
            guid, name, value, _trailing = parse_variable_data(data)
        except FormatError as e:
            raise FormatError(f"not a UEFI_VARIABLE_DATA structure: {e}") from None
        return cls(name, uuid.UUID(guid), value)


def variable_measurement(var: Variable, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                         event_type: EventType = EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                         pcr: int = PCR_SECURE_BOOT_POLICY) -> Measurement:
    return Measurement.of_event(pcr, event_type, var.name, var.variable_data(), banks)


def signature_data(owner: uuid.UUID, certificate: bytes) -> bytes:
    """EFI_SIGNATURE_DATA: SignatureOwner GUID then the signature (a DER certificate or a hash)."""
    return owner.bytes_le + certificate


def authority_variable(owner: uuid.UUID, certificate: bytes, *, name: str = "db",
                       guid: uuid.UUID = EFI_IMAGE_SECURITY_DATABASE) -> Variable:
    """The EV_EFI_VARIABLE_AUTHORITY variable for the db entry that verified an image."""
    return Variable(name, guid, signature_data(owner, certificate))


def secureboot_measurements(variables: Iterable[Variable], authorities: Iterable[Variable] = (),
                            banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                            separator_value: bytes = SEPARATOR_OK) -> list[Measurement]:
    """PCR 7 from reset: policy variables (in the given order), separator, authorities."""
    out = [variable_measurement(v, banks) for v in variables]
    out.append(separator(PCR_SECURE_BOOT_POLICY, banks, separator_value))
    out += [variable_measurement(a, banks, event_type=EventType.EV_EFI_VARIABLE_AUTHORITY) for a in authorities]
    return out


def policy_variables(values: dict[str, bytes | None], *, include_optional: bool = False) -> list[Variable]:
    """SecureBoot, PK, KEK, db, dbx (absent → empty) and, when present, dbt/dbr, in EDK2 order."""
    unknown = set(values) - set(_GUID_OF)
    if unknown:
        raise UsageError(f"unknown Secure Boot variable {sorted(unknown)[0]!r}",
                         hint="use SecureBoot, PK, KEK, db, dbx, dbt, dbr")
    out = [Variable(n, g, values.get(n) or b"") for n, g in POLICY_VARIABLES]
    out += [Variable(n, g, values[n]) for n, g in OPTIONAL_VARIABLES
            if values.get(n) is not None or include_optional]
    return out


# --- variable files ------------------------------------------------------------------------

def validate_signature_lists(data: bytes, *, source: str = "variable") -> None:
    """Check that ``data`` is a sequence of well-formed EFI_SIGNATURE_LISTs (UEFI spec §32.4.1)."""
    from pcrtool.eventlog.decode.variables import walk_signature_lists
    try:
        for _ in walk_signature_lists(data):
            pass
    except FormatError as e:
        raise FormatError(f"{source}: malformed EFI_SIGNATURE_LIST", offset=e.offset,
                          hint="is this an ESL, .auth or efivarfs file?") from None


def _is_auth(data: bytes) -> bool:
    if len(data) < 40:
        return False
    length, revision, cert_type = struct.unpack_from("<IHH", data, 16)
    return revision == 0x0200 and cert_type == WIN_CERT_TYPE_EFI_GUID and 24 <= length <= len(data) - 16


def read_variable_file(data: bytes, *, name: str, fmt: str = "auto", source: str = "variable file") -> bytes:
    """The variable data inside an ESL, .auth or efivarfs file (``fmt``: auto|esl|auth|efivarfs|raw).

    ``SecureBoot`` is one byte (0/1); efivarfs dumps of it are 5 bytes.
    """
    if fmt not in ("auto", "esl", "auth", "efivarfs", "raw"):
        raise UsageError(f"unknown variable file format {fmt!r}", hint="auto, esl, auth, efivarfs or raw")
    if fmt == "raw":
        return data
    if name == "SecureBoot":
        if fmt in ("auto", "efivarfs") and len(data) == 5:
            data = data[4:]
        if len(data) != 1 or data[0] not in (0, 1):
            raise FormatError(f"{source}: SecureBoot must be one byte 0 or 1 (or a 5-byte efivarfs dump)")
        return data
    if fmt == "auth" or (fmt == "auto" and _is_auth(data)):
        if not _is_auth(data):
            raise FormatError(f"{source}: not an EFI_VARIABLE_AUTHENTICATION_2 (.auth) file",
                              hint="expected EFI_TIME then WIN_CERTIFICATE_UEFI_GUID")
        length = struct.unpack_from("<I", data, 16)[0]
        payload = data[16 + length:]
        validate_signature_lists(payload, source=source)
        return payload
    if fmt == "efivarfs" or (fmt == "auto" and len(data) >= 4 and _looks_efivarfs(data)):
        payload = data[4:]
        validate_signature_lists(payload, source=source)
        return payload
    validate_signature_lists(data, source=source)
    return data


def _looks_efivarfs(data: bytes) -> bool:
    attrs = struct.unpack_from("<I", data, 0)[0]
    if attrs & ~0x7F or not attrs & 0x1:  # unknown attribute bits, or not NON_VOLATILE
        return False
    if len(data) == 4:
        return True
    try:
        validate_signature_lists(data[4:])
        return True
    except FormatError:
        return False


EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")


def x509_signature_list(certificate_der: bytes, owner: uuid.UUID) -> bytes:
    """An EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID holding one certificate (UEFI §32.4.1)."""
    return EFI_SIGNATURE_LIST.build({
        "signature_type": EFI_CERT_X509_GUID, "signature_header": b"",
        "signature_size": 16 + len(certificate_der),
        "signatures": [{"signature_owner": owner, "signature_data": certificate_der}],
    })


CERTIFICATE_SUFFIXES = (".crt", ".cer", ".der", ".pem")
ZERO_OWNER = uuid.UUID(int=0)


def is_certificate_file(data: bytes, filename: str = "") -> bool:
    """A PEM certificate, or a file named like one (.crt/.cer/.der/.pem): not a variable file."""
    return data.lstrip().startswith(b"-----BEGIN CERTIFICATE") or filename.lower().endswith(CERTIFICATE_SUFFIXES)


def variable_from_file(data: bytes, *, name: str, filename: str = "", fmt: str = "auto",
                       owner: uuid.UUID = ZERO_OWNER, source: str = "variable file") -> bytes:
    """Variable data from an ESL, .auth or efivarfs file, or from a certificate (wrapped in one
    EFI_CERT_X509 signature list with ``owner``, as ``sbsiglist``/``cert-to-efi-sig-list`` do)."""
    if is_certificate_file(data, filename):
        return x509_signature_list(certificate_der(data), owner)
    return read_variable_file(data, name=name, fmt=fmt, source=source)


def certificate_der(data: bytes) -> bytes:
    """DER bytes of a PEM or DER X.509 certificate."""
    if data.lstrip().startswith(b"-----BEGIN"):
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        except ValueError as e:
            raise FormatError(f"not a PEM certificate: {e}") from None
    return data
