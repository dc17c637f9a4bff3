"""Minimal PE32/PE32+ reader: the header fields Authenticode and UKI tooling need.

Follows the Microsoft PE/COFF specification ("MS-DOS stub", "COFF File Header", "Optional Header",
"Section Table", "The Attribute Certificate Table (Image Only)") and the sanity checks EDK2's
``PeCoffLoaderGetPeHeader`` applies. Hand-written with ``struct`` rather than pefile because the
signer reads 75 MB UKIs and pefile needs seconds for that; pefile is the oracle in the tests.

Pure: bytes in, values out. Inputs are *untrusted*: every offset is bounds-checked and a bad
file raises one ``FormatError``; suspicious but loadable layouts are collected in ``warnings``.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

from pcrtool.errors import FormatError

PE32_MAGIC = 0x10B
PE32PLUS_MAGIC = 0x20B
MACHINE_IA64 = 0x200
SECTION_HEADER_SIZE = 40
DIRECTORY_SECURITY = 4
WIN_CERT_REVISION_2_0 = 0x0200
WIN_CERT_TYPE_PKCS_SIGNED_DATA = 0x0002
WIN_CERT_TYPE_EFI_GUID = 0x0EF1
CHECKSUM_OFFSET = 64  # within the optional header, PE32 and PE32+ alike

_HINT = "is this a PE/COFF (EFI) binary? check that the file is complete"


def align8(n: int) -> int:
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class Section:
    """One section header plus access to its bytes (PE/COFF "Section Table")."""

    index: int
    name: str
    virtual_address: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    characteristics: int
    header_offset: int
    _file: bytes = field(repr=False, compare=False)
    long_name: str = ""  # ``name`` with a COFF long name ("/4") resolved through the string table

    def __post_init__(self) -> None:
        if not self.long_name:
            object.__setattr__(self, "long_name", self.name)

    @property
    def data(self) -> bytes:
        """The raw bytes in the file (SizeOfRawData from PointerToRawData)."""
        return bytes(self._file[self.raw_offset:self.raw_offset + self.raw_size])

    @property
    def loaded(self) -> bytes:
        """The VirtualSize bytes as loaded: raw data truncated, or zero-padded, to VirtualSize."""
        n = min(self.raw_size, self.virtual_size)
        raw = bytes(self._file[self.raw_offset:self.raw_offset + n])
        return raw + bytes(self.virtual_size - n)


@dataclass(frozen=True, slots=True)
class WinCertificate:
    """One WIN_CERTIFICATE entry of the attribute certificate table."""

    offset: int          # file offset of the entry header
    length: int          # dwLength as written (sbsign, systemd >= 262, pcrtool: unpadded; osslsigncode, systemd < 262: padded)
    revision: int
    cert_type: int
    payload: bytes       # bytes after the 8-byte header, up to dwLength (may carry zero padding)


@dataclass(slots=True)
class PeImage:
    """A parsed PE image. ``data`` is the whole file; offsets are file offsets."""

    data: bytes
    pe_offset: int
    machine: int
    magic: int
    number_of_sections: int
    optional_header_offset: int
    size_of_optional_header: int
    size_of_headers: int
    size_of_image: int
    section_alignment: int
    file_alignment: int
    checksum: int
    subsystem: int
    number_of_rva_and_sizes: int
    sections: list[Section]
    cert_table_offset: int = 0          # data directory 4: a *file offset*, not an RVA
    cert_table_size: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def is_pe32_plus(self) -> bool:
        return self.magic == PE32PLUS_MAGIC

    @property
    def checksum_offset(self) -> int:
        return self.optional_header_offset + CHECKSUM_OFFSET

    @property
    def data_directory_offset(self) -> int:
        return self.optional_header_offset + (112 if self.is_pe32_plus else 96)

    @property
    def security_directory_offset(self) -> int | None:
        """File offset of data directory entry 4, or None when NumberOfRvaAndSizes <= 4."""
        if self.number_of_rva_and_sizes <= DIRECTORY_SECURITY:
            return None
        return self.data_directory_offset + 8 * DIRECTORY_SECURITY

    @property
    def is_signed(self) -> bool:
        return self.cert_table_size != 0

    def section(self, name: str) -> Section | None:
        """The first section called ``name`` (e.g. ``.linux``, or a long name such as
        ``.vendor_cert`` that the header holds as "/4"), or None."""
        for s in self.sections:
            if s.name == name or s.long_name == name:
                return s
        return None

    def certificates(self) -> list[WinCertificate]:
        """The WIN_CERTIFICATE entries, walked as EDK2 does (steps of dwLength rounded up to 8).

        Raises FormatError when the walk does not tile the table exactly: EDK2 then refuses
        the image (DxeImageVerificationHandler), so nothing in it can be trusted.
        """
        entries: list[WinCertificate] = []
        start, end = self.cert_table_offset, self.cert_table_offset + self.cert_table_size
        off = start
        while off < end:
            if off + 8 > end:
                raise FormatError("certificate table entry header runs past the table", offset=off,
                                  hint="the signature table is damaged; re-sign the unsigned binary")
            length, revision, cert_type = struct.unpack_from("<IHH", self.data, off)
            if length < 8 or off + length > end:
                raise FormatError(f"WIN_CERTIFICATE dwLength {length} does not fit the table", offset=off,
                                  hint="the signature table is damaged; re-sign the unsigned binary")
            entries.append(WinCertificate(off, length, revision, cert_type,
                                          bytes(self.data[off + 8:off + length])))
            off += align8(length)
        if off != end:
            raise FormatError(f"certificate table entries end at {off}, table ends at {end}",
                              hint="EDK2 rejects such an image; re-sign the unsigned binary")
        return entries

    @classmethod
    def parse(cls, data: bytes) -> "PeImage":
        """Parse and sanity-check a PE image (PE/COFF spec; EDK2 PeCoffLoaderGetPeHeader checks)."""
        return _parse(data)


def _u16(data, off):
    return struct.unpack_from("<H", data, off)[0]


def _u32(data, off):
    return struct.unpack_from("<I", data, off)[0]


def _parse(data: bytes) -> PeImage:
    if not isinstance(data, (bytes, bytearray, memoryview, mmap.mmap)):
        raise TypeError("PeImage.parse wants bytes")
    size = len(data)
    if size < 64 or data[:2] != b"MZ":
        raise FormatError("not a PE image: no MZ header", hint=_HINT, offset=0)
    pe = _u32(data, 0x3C)
    if pe + 24 > size:
        raise FormatError(f"PE header offset {pe} (e_lfanew) is beyond the end of the file", hint=_HINT,
                          offset=0x3C)
    if data[pe:pe + 4] != b"PE\0\0":
        raise FormatError("not a PE image: no PE signature", hint=_HINT, offset=pe)
    machine, nsections, _ts, symptr, nsyms, opt_size, _chars = struct.unpack_from("<HHIIIHH", data, pe + 4)
    opt = pe + 24
    if opt + 2 > size:
        raise FormatError("optional header is truncated", hint=_HINT, offset=opt)
    magic = _u16(data, opt)
    if machine == MACHINE_IA64 and magic == PE32_MAGIC:
        magic = PE32PLUS_MAGIC  # EDK2 quirk: some IA64 images carry the PE32 magic
    if magic == PE32_MAGIC:
        nrva_off, dd_off = 92, 96
    elif magic == PE32PLUS_MAGIC:
        nrva_off, dd_off = 108, 112
    else:
        raise FormatError(f"unknown optional header magic {magic:#x}", hint=_HINT, offset=opt)
    if opt_size < dd_off or opt + dd_off > size:
        raise FormatError(f"optional header is too short ({opt_size} bytes)", hint=_HINT, offset=pe + 20)
    nrva = _u32(data, opt + nrva_off)
    if nrva > 16 or dd_off + 8 * nrva > opt_size:
        raise FormatError(f"NumberOfRvaAndSizes {nrva} does not fit the optional header", hint=_HINT,
                          offset=opt + nrva_off)
    section_alignment, file_alignment = struct.unpack_from("<II", data, opt + 32)
    size_of_image, size_of_headers, checksum = struct.unpack_from("<III", data, opt + 56)
    subsystem = _u16(data, opt + 68)
    sect_table = opt + opt_size
    sect_end = sect_table + SECTION_HEADER_SIZE * nsections
    if sect_end > size:
        raise FormatError(f"section table ({nsections} sections) runs past the end of the file", hint=_HINT,
                          offset=sect_table)
    if size_of_headers > size:
        raise FormatError(f"SizeOfHeaders {size_of_headers} is larger than the file ({size} bytes)", hint=_HINT,
                          offset=opt + 60)
    if size_of_headers < sect_end:
        raise FormatError(f"SizeOfHeaders {size_of_headers} does not cover the section table (ends at {sect_end})",
                          hint=_HINT, offset=opt + 60)
    cert_off = cert_size = 0
    if nrva > DIRECTORY_SECURITY:
        cert_off, cert_size = struct.unpack_from("<II", data, opt + dd_off + 8 * DIRECTORY_SECURITY)
        if cert_size == 0:
            cert_off = 0
    image = PeImage(data=data, pe_offset=pe, machine=machine, magic=magic, number_of_sections=nsections,
                    optional_header_offset=opt, size_of_optional_header=opt_size,
                    size_of_headers=size_of_headers, size_of_image=size_of_image,
                    section_alignment=section_alignment, file_alignment=file_alignment, checksum=checksum,
                    subsystem=subsystem, number_of_rva_and_sizes=nrva, sections=[],
                    cert_table_offset=cert_off, cert_table_size=cert_size)
    for i in range(nsections):
        h = sect_table + SECTION_HEADER_SIZE * i
        raw_name, vsize, va, rsize, roff = struct.unpack_from("<8sIIII", data, h)
        chars = _u32(data, h + 36)
        name = raw_name.rstrip(b"\0").decode("utf-8", errors="replace")
        if rsize and roff + rsize > size:
            raise FormatError(f"section {name!r} raw data [{roff}, {roff + rsize}) lies outside the file "
                              f"({size} bytes)", hint=_HINT, offset=h)
        image.sections.append(Section(i, name, va, vsize, roff, rsize, chars, h, data,
                                      long_name=_long_name(data, name, symptr, nsyms)))
    _check_layout(image, size)
    return image


def _long_name(data: bytes, name: str, symptr: int, nsyms: int) -> str:
    """PE/COFF "Section Table": a name "/N" (N decimal) is the NUL-terminated string at offset N of
    the COFF string table, which follows the symbol table (PointerToSymbolTable + 18 *
    NumberOfSymbols) and starts with its own 4-byte size. ``name`` unchanged when it is not such
    a name or does not resolve inside the file and the table (images carry no string table
    the loader needs: a bad one is not an error)."""
    if len(name) < 2 or name[0] != "/" or not name[1:].isdigit() or not symptr:
        return name
    table = symptr + 18 * nsyms
    if table + 4 > len(data):
        return name
    table_size = _u32(data, table)
    offset = int(name[1:])
    if offset < 4 or offset >= table_size or table + table_size > len(data):
        return name
    end = bytes(data[table + offset:table + table_size]).find(b"\0")
    raw = bytes(data[table + offset:table + table_size if end < 0 else table + offset + end])
    return raw.decode("utf-8", errors="replace") or name


def _check_layout(image: PeImage, size: int) -> None:
    """Overlaps are errors (bytes hashed twice); gaps and a misplaced table are warnings."""
    raw = sorted((s for s in image.sections if s.raw_size), key=lambda s: s.raw_offset)
    end, prev = image.size_of_headers, "headers"
    for s in raw:
        if s.raw_offset < end:
            raise FormatError(f"section {s.name!r} at file offset {s.raw_offset} overlaps {prev} "
                              f"(which end at {end})", hint="overlapping sections cannot be hashed safely",
                              offset=s.header_offset)
        if s.raw_offset > end:
            image.warnings.append(f"gap of {s.raw_offset - end} bytes before section {s.name!r} "
                                  f"(file offset {end}): not covered by an Authenticode signature")
        end, prev = s.raw_offset + s.raw_size, f"section {s.name!r}"
    if image.cert_table_size:
        start, tend = image.cert_table_offset, image.cert_table_offset + image.cert_table_size
        if tend > size:
            raise FormatError(f"certificate table [{start}, {tend}) lies outside the file ({size} bytes)",
                              hint="the signature table is damaged; re-sign the unsigned binary",
                              offset=image.security_directory_offset)
        if start < end:
            raise FormatError(f"certificate table at {start} overlaps {prev} (ends at {end})",
                              hint="the signature table is damaged; re-sign the unsigned binary",
                              offset=image.security_directory_offset)
        if tend != size:
            image.warnings.append(f"certificate table ends at {tend}, not at the end of the file ({size}): "
                                  "the data after it is not covered by the signature and firmware "
                                  "will compute a different digest")
        if start % 8:
            image.warnings.append(f"certificate table offset {start} is not 8-byte aligned")
