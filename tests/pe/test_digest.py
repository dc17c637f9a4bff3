"""The Authenticode digest against pesign -h, known answers, pefile and edited binaries."""

from __future__ import annotations

import struct
import subprocess

import pytest

from helpers_pe import (STUB_DIGEST_SIGNED, STUB_DIGEST_UNPADDED, need_tool, raw_headers, section_headers,
                        variant_gap, variant_headers_swapped, variant_last_section_unaligned)
from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.pe import PeImage, authenticode_digest, pe_checksum, signing_digest, signing_image


def pesign_hash(path) -> str:
    out = subprocess.run([need_tool("pesign"), "-h", "-P", "-i", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split("hash:")[1].strip()


def test_stub_known_answers(stub):
    data = stub.read_bytes()
    assert authenticode_digest(data).hex() == STUB_DIGEST_UNPADDED
    assert signing_digest(data).hex() == STUB_DIGEST_SIGNED
    assert pesign_hash(stub) == STUB_DIGEST_SIGNED


@pytest.mark.parametrize("which", ["stub", "boot", "kernel", "uki"])
def test_signing_digest_equals_pesign(which, request):
    path = request.getfixturevalue(which)
    assert signing_digest(path.read_bytes()).hex() == pesign_hash(path)


def test_signed_kernel_digest_is_unchanged_by_padding(kernel):
    data = kernel.read_bytes()
    img = PeImage.parse(data)
    assert img.is_signed and not img.warnings
    assert authenticode_digest(data) == signing_digest(data)
    assert authenticode_digest(data).hex() == pesign_hash(kernel)


def test_sha384_digest_matches_virt_firmware(stub):
    pesign = pytest.importorskip("virt.peutils.pesign")
    pefile = pytest.importorskip("pefile")
    padded = signing_image(stub.read_bytes())
    pe = pefile.PE(data=padded)
    for alg, name in [(HashAlg.SHA256, "sha256"), (HashAlg.SHA384, "sha384")]:
        assert authenticode_digest(padded, alg) == pesign.pe_authenticode_hash(pe, name)


@pytest.mark.parametrize("which", ["stub", "boot", "kernel", "uki"])
def test_sections_and_checksum_match_pefile(which, request):
    pefile = pytest.importorskip("pefile")
    data = request.getfixturevalue(which).read_bytes()
    img = PeImage.parse(data)
    pe = pefile.PE(data=data, fast_load=True)
    assert [(s.name, s.virtual_address, s.virtual_size, s.raw_offset, s.raw_size) for s in img.sections] == [
        (s.Name.rstrip(b"\0").decode(), s.VirtualAddress, s.Misc_VirtualSize, s.PointerToRawData,
         s.SizeOfRawData) for s in pe.sections]
    assert pe_checksum(data, img.checksum_offset) == pe.generate_checksum()
    assert img.checksum == pe.OPTIONAL_HEADER.CheckSum


def test_section_data_and_loaded(uki):
    data = uki.read_bytes()
    img = PeImage.parse(data)
    osrel = img.section(".osrel")
    assert osrel.loaded == b"ID=pcrtool\nVERSION_ID=1\n"           # VirtualSize < raw: truncated
    assert osrel.data.startswith(osrel.loaded) and len(osrel.data) == osrel.raw_size == 512
    reloc = img.section(".reloc")
    assert len(reloc.loaded) == reloc.virtual_size == 12
    # VirtualSize > SizeOfRawData: zero-padded
    d = bytearray(data)
    struct.pack_into("<I", d, osrel.header_offset + 8, 600)
    grown = PeImage.parse(bytes(d)).section(".osrel")
    assert grown.loaded == osrel.data + bytes(88)


def test_edge_case_digests(stub):
    s = stub.read_bytes()
    e1 = variant_last_section_unaligned(s)
    assert len(e1) % 8 and not PeImage.parse(e1).warnings
    # padding is physical and hashed: differs from the unpadded digest pesign predicts
    assert signing_digest(e1) != authenticode_digest(e1)
    e3 = variant_gap(s)
    assert any("gap of 512 bytes" in w for w in PeImage.parse(e3).warnings)
    assert signing_digest(e3).hex() == pesign_hash_bytes(e3)   # pesign walks sections right here
    junk = bytearray(e3)
    junk[50176:50176 + 512] = bytes(512)                           # the gap is not hashed
    assert signing_digest(bytes(junk)) == signing_digest(e3)
    e4 = variant_headers_swapped(s)
    # pesign sorts only n-1 headers and gets E4 wrong; EDK2 (and we) sort all of them
    assert signing_digest(e4).hex() != pesign_hash_bytes(e4)


def pesign_hash_bytes(data: bytes) -> str:
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".efi") as f:
        f.write(data)
        f.flush()
        return pesign_hash(f.name)


def test_unsigned_digest_ignores_checksum_and_secdir(stub):
    s = bytearray(stub.read_bytes())
    h = raw_headers(s)
    before = authenticode_digest(bytes(s))
    struct.pack_into("<I", s, h["checksum"], 0xDEADBEEF)
    assert authenticode_digest(bytes(s)) == before
    s[100] ^= 0xFF  # in the DOS stub: hashed
    assert authenticode_digest(bytes(s)) != before


@pytest.mark.parametrize("cut", [0, 10, 63, 0x80, 0x100, 0x180])
def test_truncated_headers_are_format_errors(stub, cut):
    with pytest.raises(FormatError):
        PeImage.parse(stub.read_bytes()[:cut])


def test_garbage_is_format_error():
    for blob in [b"", b"MZ", b"MZ" + bytes(100), b"\x7fELF" + bytes(4000), bytes(range(256)) * 4]:
        with pytest.raises(FormatError):
            PeImage.parse(blob)


def test_overlapping_sections_rejected(stub):
    d = bytearray(stub.read_bytes())
    hdrs = section_headers(d)
    struct.pack_into("<I", d, hdrs[1][0] + 20, hdrs[0][5] + 16)  # .reloc inside .text
    with pytest.raises(FormatError, match="overlaps section '.text'"):
        PeImage.parse(bytes(d))


def test_section_outside_file_rejected(stub):
    d = bytearray(stub.read_bytes())
    hdrs = section_headers(d)
    struct.pack_into("<I", d, hdrs[-1][0] + 16, 0x7FFFFFFF)
    with pytest.raises(FormatError, match="outside the file"):
        PeImage.parse(bytes(d))


def test_huge_section_count_rejected(stub):
    d = bytearray(stub.read_bytes())
    struct.pack_into("<H", d, raw_headers(d)["pe"] + 6, 0xFFFF)
    with pytest.raises(FormatError, match="section table"):
        PeImage.parse(bytes(d))


def test_table_not_at_eof_warns(kernel):
    img = PeImage.parse(kernel.read_bytes() + b"appended")
    assert any("not at the end of the file" in w for w in img.warnings)


def test_certificate_walk(kernel):
    certs = PeImage.parse(kernel.read_bytes()).certificates()
    assert len(certs) == 1 and certs[0].revision == 0x200 and certs[0].cert_type == 2


def test_word_sum_matches_plain_definition():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pcrtool.pe.digest import word_sum

    @settings(deadline=None, max_examples=200)
    @given(st.binary(max_size=5000), st.integers(0, 3))
    def check(blob, extra_mib):
        blob = blob + (b"\xff" * (extra_mib << 19))
        padded = blob + b"\0" * (len(blob) % 2)
        plain = sum(struct.unpack(f"<{len(padded) // 2}H", padded)) % 0xFFFF
        assert word_sum(blob) == plain

    check()


def test_ready_callback_sees_increasing_ends_and_changes_nothing(uki, monkeypatch):
    """``image_digest(ready=…)`` (the CLI hashes its output while writing it) asks for every byte
    before reading it, in increasing order, and gives the same digest as pesign."""
    from pcrtool.pe import digest as authenticode

    monkeypatch.setattr(authenticode, "_READY_STEP", 1 << 20)
    data = uki.read_bytes()
    image = PeImage.parse(data)
    ends: list[int] = []
    got = authenticode.image_digest(image, HashAlg.SHA256, authenticode.pad_length(image), ready=ends.append)
    assert got.hex() == pesign_hash(uki)                # pesign hashes the image as it will be signed
    assert ends == sorted(ends) and len(ends) >= len(data) >> 20
    assert ends[-1] == min(len(data), max(b for _a, b in authenticode.hash_ranges(image, authenticode.pad_length(image))))
