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


def hash_ranges(image: PeImage, virtual_pad: int = 0) -> list[tuple[int, int]]:
    """The [start, end) file ranges EDK2 feeds to the hash, in order.

    ``virtual_pad`` zero bytes are taken to follow the file (the padding a signer appends);
    ranges may then reach past ``len(image.data)``.
    """
    size = len(image.data) + virtual_pad
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


_READY_STEP = 8 << 20


def image_digest(image: PeImage, alg: HashAlg = HashAlg.SHA256, virtual_pad: int = 0, *,
                 ready=None) -> bytes:
    """EDK2's digest of the parsed image (followed by ``virtual_pad`` zero bytes).

    ``ready(end)``, when given, is called before bytes below ``end`` are read (in steps of at
    most 8 MiB, ``end`` increasing): it lets the caller hash a file while it is being written.
    """
    h = alg.new()
    view = memoryview(image.data)
    n = len(view)
    for a, b in hash_ranges(image, virtual_pad):
        if a < n:
            end = min(b, n)
            if ready is None:
                h.update(view[a:end])
            else:
                for pos in range(a, end, _READY_STEP):
                    stop = min(end, pos + _READY_STEP)
                    ready(stop)
                    h.update(view[pos:stop])
        if b > n:
            h.update(bytes(b - max(a, n)))
    return h.digest()


def pad_length(image: PeImage) -> int:
    """Zero bytes a signer appends before the certificate table (to an 8-byte boundary).

    Refuses an unaligned file that already has a table (systemd-sbsign does the same): padding
    would move the existing table away from its recorded offset.
    """
    size = len(image.data)
    if size % 8 == 0:
        return 0
    if image.cert_table_size:
        raise FormatError(f"file size {size} is not a multiple of 8 but it has a certificate table",
                          hint="the existing signatures are misplaced; re-sign the unsigned binary")
    return align8(size) - size


def authenticode_digest(data: bytes, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """The Authenticode digest EDK2 computes for ``data`` exactly as given.

    For an unsigned file this is what firmware compares against db/dbx image hashes and what
    PCR 4 measures (the file as loaded, no padding). The digest a new signature will carry is
    ``signing_digest``; for a signed file both are equal.
    """
    return image_digest(PeImage.parse(data), alg)


def signing_image(data: bytes) -> bytes:
    """The file as it will be signed: zero-padded to 8 bytes when it has no certificate table yet.

    Refuses an unaligned file that already has a table (see ``pad_length``).
    """
    if len(data) % 8 == 0:
        return data
    return bytes(data) + bytes(pad_length(PeImage.parse(data)))


def signing_digest(data: bytes, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """The digest a new signature over ``data`` carries (EDK2 digest of the padded image)."""
    image = PeImage.parse(data)
    return image_digest(image, alg, pad_length(image))


_MASKS: dict[int, int] = {}


def word_sum(data, start: int = 0, end: int | None = None) -> int:
    """Sum of the little-endian 16-bit words of data[start:end] modulo 0xFFFF (start must be even).

    Uses 2**16 == 1 (mod 0xFFFF): the little-endian integer of an even-aligned chunk is congruent
    to the sum of its words. Chunks go through ``int.from_bytes`` and are added up (big-integer
    addition is cheap); the sum is then folded with shifts, masks and adds
    (N = hi * 2**k + lo == hi + lo for k a multiple of 16), far faster than a division.
    """
    view = memoryview(data)
    end = len(data) if end is None else end
    total, chunk = 0, 1 << 20
    for pos in range(start, end, chunk):
        total += int.from_bytes(view[pos:min(end, pos + chunk)], "little")
    bits = total.bit_length()
    while bits > 256:
        half = (bits // 2 + 63) & ~63
        mask = _MASKS.get(half)
        if mask is None:
            mask = _MASKS[half] = (1 << half) - 1
        total = (total >> half) + (total & mask)
        bits = total.bit_length()
    return total % 0xFFFF


def _fold(total: int, size: int) -> int:
    folded = total % 0xFFFF
    if folded == 0 and total != 0:
        folded = 0xFFFF
    return (folded + size) & 0xFFFFFFFF


def pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The PE CheckSum ("imagehlp" algorithm): 16-bit one's-complement sum + file length."""
    total = word_sum(data, 0, checksum_offset) + word_sum(data, checksum_offset + 4)
    return _fold(total, len(data))


def digest_and_body_sum(image: PeImage, alg: HashAlg, virtual_pad: int = 0) -> tuple[bytes, int]:
    """EDK2 digest and ``word_sum`` of everything after the headers, computed side by side.

    hashlib releases the GIL, so the digest runs in a thread while this one sums words: the
    two passes over a 75 MB UKI cost about one. The header part of the checksum changes when
    a signature is appended and is summed then (it is small).
    """
    import threading

    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(image_digest(image, alg, virtual_pad)))
    worker.start()
    body = word_sum(image.data, _body_start(image))
    worker.join()
    return result[0], body


def body_start(image: PeImage) -> int:
    """Where the part of the file that signing leaves untouched starts (even: see ``word_sum``)."""
    return (image.size_of_headers + 1) & ~1


_body_start = body_start


def signed_chunks(data: bytes, der: bytes, *, body_sum: int | None = None) -> list:
    """The signed file as chunks: the header bytes, the untouched rest of ``data`` (a memoryview),
    the zero padding and the new WIN_CERTIFICATE. Written one after the other they form
    ``append_certificate``'s output without copying a 75 MB image in memory.

    Layout as systemd-sbsign 262 (and sbsign) write it: file zero-padded to 8, the entry zero-filled
    to a multiple of 8 but its dwLength = 8 + len(der) unpadded (systemd 257..261 padded dwLength;
    EDK2 and every verifier step over entries by align8(dwLength), so both forms verify and nothing
    needs the old one), an existing table extended (it must end the file), data directory 4 and the
    CheckSum updated. ``body_sum`` is ``word_sum(data, body start)`` when already known.
    """
    image = PeImage.parse(data)
    pad = pad_length(image)
    sec_dir = image.security_directory_offset
    if sec_dir is None:
        raise FormatError("the image has no certificate-table data directory entry (NumberOfRvaAndSizes <= 4)",
                          hint="such an image cannot carry an Authenticode signature")
    if image.cert_table_size:
        if image.cert_table_offset + image.cert_table_size != len(data):
            raise FormatError("the existing certificate table is not at the end of the file",
                              hint="data was appended after signing; re-sign the unsigned binary")
        image.certificates()  # the existing table must walk cleanly
        table_off = image.cert_table_offset
    else:
        table_off = len(data) + pad
    length = align8(8 + len(der))
    entry = struct.pack("<IHH", 8 + len(der), 0x0200, 0x0002) + der + bytes(length - 8 - len(der))
    split = _body_start(image)
    head = bytearray(data[:split])
    struct.pack_into("<II", head, sec_dir, table_off, image.cert_table_size + length)
    struct.pack_into("<I", head, image.checksum_offset, 0)
    if body_sum is None:
        body_sum = word_sum(data, split)
    total = word_sum(head) + body_sum + word_sum(entry)   # the entry starts 8-aligned
    struct.pack_into("<I", head, image.checksum_offset, _fold(total, len(data) + pad + length))
    return [bytes(head), memoryview(data)[split:], bytes(pad), entry]


def append_certificate(data: bytes, der: bytes) -> bytes:
    """``data`` (padded to 8 first) with one more WIN_CERTIFICATE holding ``der``."""
    return b"".join(signed_chunks(data, der))
