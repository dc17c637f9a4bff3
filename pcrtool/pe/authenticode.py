"""The Authenticode PE image digest exactly as EDK2 computes it, and the signed-file layout.

Algorithm: Authenticode PE spec "Calculating the PE Image Hash"; EDK2
``SecurityPkg/Library/DxeImageVerificationLib`` ``HashPeImage``:

1. the headers up to SizeOfHeaders minus the CheckSum field and data-directory entry 4;
2. every section with SizeOfRawData != 0, ordered by PointerToRawData (stable insertion sort);
3. "extra data": from the *counter* SizeOfHeaders + sum(SizeOfRawData) up to
   FileSize - CertificateTable.Size, when the file is longer than the counter.

No virtual padding: a signed file carries the zero padding to 8 bytes physically, so the signer
first pads (``signing_image``) and then hashes exactly what EDK2 will hash (sbsign's approach;
the only one correct for a last section that ends unaligned with no trailing data).
"""

from __future__ import annotations

import struct

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.pe.image import PeImage, align8


def hash_ranges(image: PeImage) -> list[tuple[int, int]]:
    """The [start, end) file ranges EDK2 feeds to the hash, in order."""
    size = len(image.data)
    hdr_end = image.size_of_headers
    csum = image.checksum_offset
    sec_dir = image.security_directory_offset
    ranges: list[tuple[int, int]] = [(0, csum)]
    if sec_dir is None:
        if hdr_end < csum + 4:
            raise FormatError(f"SizeOfHeaders {hdr_end} ends inside the optional header", offset=csum)
        ranges.append((csum + 4, hdr_end))
    else:
        if hdr_end < sec_dir + 8:
            raise FormatError(f"SizeOfHeaders {hdr_end} ends inside the data directory", offset=sec_dir)
        ranges += [(csum + 4, sec_dir), (sec_dir + 8, hdr_end)]
    counter = hdr_end
    for s in sorted(image.sections, key=lambda s: s.raw_offset):
        if s.raw_size == 0:
            continue
        ranges.append((s.raw_offset, s.raw_offset + s.raw_size))
        counter += s.raw_size
    if size > counter:
        cert_size = image.cert_table_size if sec_dir is not None else 0
        if size > counter + cert_size:
            ranges.append((counter, size - cert_size))
        elif size < counter + cert_size:
            raise FormatError(f"file size {size} is smaller than the hashed bytes ({counter}) plus the "
                              f"certificate table ({cert_size}); EDK2 refuses such an image")
    return [(a, b) for a, b in ranges if b > a]


def image_digest(image: PeImage, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """EDK2's digest of the parsed image as it is (no padding added)."""
    h = alg.new()
    view = memoryview(image.data)
    for a, b in hash_ranges(image):
        h.update(view[a:b])
    return h.digest()


def authenticode_digest(data: bytes, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """The Authenticode digest EDK2 computes for ``data`` exactly as given.

    For an unsigned file this is what firmware compares against db/dbx image hashes and what
    PCR 4 measures (the file as loaded, no padding). The digest a new signature will carry is
    ``signing_digest``; for a signed file both are equal.
    """
    return image_digest(PeImage.parse(data), alg)


def signing_image(data: bytes) -> bytes:
    """The file as it will be signed: zero-padded to 8 bytes when it has no certificate table yet.

    Refuses an unaligned file that already has a table (systemd-sbsign does the same): padding it
    would move the existing table away from its recorded offset.
    """
    if len(data) % 8 == 0:
        return data
    image = PeImage.parse(data)
    if image.cert_table_size:
        raise FormatError(f"file size {len(data)} is not a multiple of 8 but it has a certificate table",
                          hint="the existing signatures are misplaced; re-sign the unsigned binary")
    return bytes(data) + bytes(align8(len(data)) - len(data))


def signing_digest(data: bytes, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """The digest a new signature over ``data`` carries (EDK2 digest of the padded image)."""
    return authenticode_digest(signing_image(data), alg)


def pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The PE CheckSum ("imagehlp" algorithm): 16-bit one's-complement sum + file length.

    Uses that 2**16 == 1 (mod 0xFFFF), so a little-endian integer of an even-length chunk is
    congruent to the sum of its 16-bit words: big chunks go through ``int.from_bytes``.
    """
    view = memoryview(data)
    n = len(data)
    total = 0
    chunk = 1 << 20
    parts = [(0, checksum_offset), (checksum_offset + 4, n)]
    for a, b in parts:
        pos = a
        while pos < b:
            e = min(b, pos + chunk)
            total += int.from_bytes(view[pos:e], "little")
            pos = e
        # the start offsets are even (checksum_offset is 4-aligned), so no word shift is needed
    folded = total % 0xFFFF
    if folded == 0 and total != 0:
        folded = 0xFFFF
    return (folded + n) & 0xFFFFFFFF


def append_certificate(data: bytes, der: bytes) -> bytes:
    """Append one WIN_CERTIFICATE (revision 2.0, PKCS_SIGNED_DATA) holding ``der``.

    Layout as systemd-sbsign writes it: file zero-padded to 8, dwLength = align8(8 + len(der))
    with zero fill, an existing table extended (it must end the file), data directory 4 and the
    CheckSum updated.
    """
    padded = signing_image(data)
    image = PeImage.parse(padded)
    sec_dir = image.security_directory_offset
    if sec_dir is None:
        raise FormatError("the image has no certificate-table data directory entry (NumberOfRvaAndSizes <= 4)",
                          hint="such an image cannot carry an Authenticode signature")
    if image.cert_table_size:
        if image.cert_table_offset + image.cert_table_size != len(padded):
            raise FormatError("the existing certificate table is not at the end of the file",
                              hint="data was appended after signing; re-sign the unsigned binary")
        image.certificates()  # the existing table must walk cleanly
        table_off = image.cert_table_offset
    else:
        table_off = len(padded)
    length = align8(8 + len(der))
    entry = struct.pack("<IHH", length, 0x0200, 0x0002) + der + bytes(length - 8 - len(der))
    out = bytearray(padded)
    out += entry
    struct.pack_into("<II", out, sec_dir, table_off, image.cert_table_size + length)
    struct.pack_into("<I", out, image.checksum_offset, 0)
    struct.pack_into("<I", out, image.checksum_offset, pe_checksum(out, image.checksum_offset))
    return bytes(out)
