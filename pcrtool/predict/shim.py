"""shim's own measurements: PCR 14 (MOK lists), PCR 7 (SbatLevel, the vendor certificate
authority), PCR 4 (the images it verifies and loads).

Rules (rhboot/shim ``mok.c``/``verify.c``/``pe.c``, checked on a real boot of Debian 12's
shim 16.1 → GRUB 2.06 → Linux 6.1, see ``eventlogs/README.md``):

- PCR 14, ``EV_IPL`` with data = the ASCII name + NUL, in the order MokList, MokListX,
  MokListTrusted; the digest covers the *mirrored* list: for MokList/MokListX the vendor addend
  (the ``.vendor_cert`` certificate as one EFI_SIGNATURE_LIST of type X.509, owner SHIM_LOCK_GUID,
  or a vendor ``db``/``dbx`` ESL as is) followed by the machine's ``MokList``/``MokListX`` variable
  data; an empty result is replaced by one EFI_CERT_SHA256 list holding 32 zero bytes (owner
  SHIM_LOCK_GUID); MokListTrusted is the variable's data, or one byte ``01`` when it is absent
  (``MOK_VARIABLE_INVERSE``).
- PCR 7, ``EV_EFI_VARIABLE_AUTHORITY`` (UEFI_VARIABLE_DATA, vendor SHIM_LOCK_GUID): ``SbatLevel``
  with the SBAT level shim applied (Secure Boot off: reset to the original ``sbat,1,2021030218``),
  after PCR 14's MokList/MokListX; then, with Secure Boot on, the first time a
  certificate verifies an image, ``MokListRT`` holding EFI_SIGNATURE_DATA (owner SHIM_LOCK_GUID +
  DER) — shim 15.x logged the vendor certificate as ``Shim`` holding the bare DER.
- PCR 4: each image shim loads (GRUB) *and* each buffer GRUB passes to shim_lock's Verify (the
  kernel) is ``EV_EFI_BOOT_SERVICES_APPLICATION`` with the Authenticode digest; when GRUB then
  starts the verified kernel with LoadImage, shim's loader measures it again: **the kernel appears
  twice** with the same digest.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.families import family_of
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.predict.secureboot import (
    EFI_CERT_X509_GUID,
    Variable,
    variable_measurement,
)
from pcrtool.tcg.constants import EventType
from pcrtool.tcg.guid import SHIM_LOCK_GUID

EFI_CERT_SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
MOK_LISTS = ("MokList", "MokListX", "MokListTrusted")


@dataclass(frozen=True, slots=True)
class ShimImage:
    """What a shim binary carries: its vendor certificate/db, vendor dbx and SBAT level policies."""

    vendor_authorized: bytes            # DER certificate, or an ESL list (vendor_db)
    vendor_authorized_is_db: bool
    vendor_deauthorized: bytes          # ESL list (vendor_dbx), possibly empty
    sbat_previous: str | None
    sbat_latest: str | None
    sbat: str | None                    # the image's own .sbat section


def _sections(data: bytes) -> dict[str, bytes]:
    """Section name → raw content; long names ("/4") as the PE parser resolves them."""
    from pcrtool.pe import PeImage

    out: dict[str, bytes] = {}
    for s in PeImage.parse(data).sections:
        size = min(s.raw_size, s.virtual_size) if s.virtual_size else s.raw_size
        out.setdefault(s.long_name, bytes(data[s.raw_offset:s.raw_offset + size]))
    return out


def read_shim_image(data: bytes) -> ShimImage:
    """Parse ``.vendor_cert`` (struct cert_table) and ``.sbatlevel`` of a shim binary."""
    secs = _sections(data)
    vc = secs.get(".vendor_cert")
    if vc is None or len(vc) < 16:
        raise FormatError("not a shim binary: no .vendor_cert section", hint="give shimx64.efi")
    a_size, x_size, a_off, x_off = struct.unpack_from("<IIII", vc, 0)
    if a_off + a_size > len(vc) or x_off + x_size > len(vc):
        raise FormatError(".vendor_cert: certificate table runs past the section")
    auth, deauth = vc[a_off:a_off + a_size], vc[x_off:x_off + x_size]
    is_db = bool(auth) and auth[:1] != b"\x30"  # a DER certificate starts with SEQUENCE
    previous = latest = None
    lvl = secs.get(".sbatlevel")
    if lvl is not None and len(lvl) >= 12:
        _version, p_off, l_off = struct.unpack_from("<III", lvl, 0)
        body = lvl[4:]

        def cstr(off: int) -> str | None:
            if off >= len(body):
                return None
            return body[off:body.find(b"\0", off) if b"\0" in body[off:] else len(body)].decode("ascii", "replace")
        previous, latest = cstr(p_off), cstr(l_off)
    sbat = secs.get(".sbat")
    return ShimImage(auth, is_db, deauth, previous, latest,
                     sbat.split(b"\0", 1)[0].decode("ascii", "replace") if sbat else None)


def _esl_one(sig_type: uuid.UUID, data: bytes) -> bytes:
    """One EFI_SIGNATURE_LIST with one entry owned by SHIM_LOCK_GUID (shim's fill_esl_with_one_signature)."""
    return (sig_type.bytes_le + struct.pack("<III", 28 + 16 + len(data), 0, 16 + len(data))
            + SHIM_LOCK_GUID.bytes_le + data)


def mok_list_data(shim: ShimImage | None, name: str, variable: bytes | None = None) -> bytes:
    """The bytes shim hashes into PCR 14 for ``name`` (see the module docstring)."""
    if name == "MokListTrusted":
        return variable if variable else b"\x01"
    if name not in ("MokList", "MokListX"):
        raise ValueError(name)
    data = b""
    if shim is not None:
        if name == "MokList" and shim.vendor_authorized:
            data += (shim.vendor_authorized if shim.vendor_authorized_is_db
                     else _esl_one(EFI_CERT_X509_GUID, shim.vendor_authorized))
        elif name == "MokListX":
            data += shim.vendor_deauthorized
    data += variable or b""
    return data or _esl_one(EFI_CERT_SHA256_GUID, bytes(32))


def mok_measurements(shim: ShimImage | None, variables: dict[str, bytes | None] | None = None,
                     banks: Sequence[HashAlg] = DEFAULT_BANKS) -> list[Measurement]:
    """PCR 14: MokList, MokListX, MokListTrusted (``variables``: the machine's MOK variable data);
    the EV_IPL family's ``mok-list`` rule makes each event of the list :func:`mok_list_data` builds."""
    variables = variables or {}
    ipl = family_of(EventType.EV_IPL)
    out = []
    for name in MOK_LISTS:
        pcr, logged, digests = ipl.measure("mok-list", name, mok_list_data(shim, name, variables.get(name)), banks)
        out.append(Measurement(pcr, digests, EventType.EV_IPL, name, logged))
    return out


def sbat_level_measurement(level: str, banks: Sequence[HashAlg] = DEFAULT_BANKS) -> Measurement:
    """PCR 7 EV_EFI_VARIABLE_AUTHORITY ``SbatLevel`` (vendor SHIM_LOCK_GUID) with the applied level."""
    return variable_measurement(Variable("SbatLevel", SHIM_LOCK_GUID, level.encode()), banks,
                                event_type=EventType.EV_EFI_VARIABLE_AUTHORITY)


def vendor_authority_measurement(certificate_der: bytes, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                                 name: str = "MokListRT") -> Measurement:
    """PCR 7 authority for the certificate that verified GRUB (and the kernel): ``MokListRT`` holds
    EFI_SIGNATURE_DATA (owner SHIM_LOCK_GUID + DER); shim 15.x's ``Shim`` holds the bare DER."""
    data = certificate_der if name == "Shim" else SHIM_LOCK_GUID.bytes_le + certificate_der
    return variable_measurement(Variable(name, SHIM_LOCK_GUID, data), banks,
                                event_type=EventType.EV_EFI_VARIABLE_AUTHORITY)


SBAT_ORIGINAL = "sbat,1,2021030218\n"


def default_sbat_level(shim: ShimImage, current: str | None = None, *, policy: str = "previous",
                       secure_boot: bool | None = True) -> str:
    """The SBAT level shim applies (``sbat.c``, default "automatic" SbatPolicy): with Secure Boot
    off it resets SbatLevel to the original ``sbat,1,2021030218``; with Secure Boot on it applies
    its ``previous`` (or, with ``policy="latest"``, ``latest``) level unless the machine's SbatLevel
    (``current``) is already newer (datestamp comparison)."""
    if secure_boot is False:
        return SBAT_ORIGINAL
    mine = shim.sbat_latest if policy == "latest" else shim.sbat_previous
    if mine is None:
        if current is None:
            raise FormatError("this shim has no .sbatlevel section", hint="give the SbatLevel explicitly")
        return current
    if current is None:
        return mine

    def stamp(level: str) -> str:
        first = level.split("\n", 1)[0].split(",")
        return first[2] if len(first) > 2 else ""
    return current if stamp(current) >= stamp(mine) else mine
