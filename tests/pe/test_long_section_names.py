"""COFF long section names: names over 8 bytes are stored as "/N", an offset into the COFF string table
(PE/COFF "Section Table"), as shim's build (objcopy) writes .vendor_cert and .sbatlevel. The PE parser
resolves them (``Section.long_name``; ``name`` stays the header's bytes, which firmware and systemd-stub
see); objdump is the oracle. predict/shim reads a shim-like binary through it."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from helpers_pe import tool
from pcrtool.errors import FormatError
from pcrtool.pe import PeImage
from pcrtool.predict.shim import read_shim_image

CAPTURE = Path(__file__).resolve().parents[2] / "eventlogs" / "ovmf-ms-shim-grub-a"


def _objdump_names(path: Path) -> list[str]:
    out = tool("objdump", "-h", path).stdout
    return [line.split()[1] for line in out.splitlines() if line.strip()[:1].isdigit()]


@pytest.fixture(scope="module")
def shim_like(stub, tmp_path_factory) -> Path:
    """The Debian stub plus shim's two long-named sections, added by objcopy as shim's build does."""
    d = tmp_path_factory.mktemp("longnames")
    cert = (CAPTURE / "shim-vendor-cert.der").read_bytes()
    dbx = (CAPTURE / "shim-vendor-dbx.esl").read_bytes()
    (d / "vc").write_bytes(struct.pack("<IIII", len(cert), len(dbx), 16, 16 + len(cert)) + cert + dbx)
    previous, latest = b"sbat,1,2022052400\ngrub,2\n\0", b"sbat,1,2023012900\nshim,2\ngrub,3\n\0"
    (d / "lvl").write_bytes(struct.pack("<III", 0, 8, 8 + len(previous)) + previous + latest)
    out = d / "shim-like.efi"
    tool("objcopy", "--long-section-names=enable",
         "--add-section", f".vendor_cert={d / 'vc'}", "--change-section-vma", ".vendor_cert=0x300000",
         "--add-section", f".sbatlevel={d / 'lvl'}", "--change-section-vma", ".sbatlevel=0x310000",
         stub, out)
    return out


def test_long_names_resolve_as_objdump_reads_them(shim_like):
    image = PeImage.parse(shim_like.read_bytes())
    assert [s.long_name for s in image.sections] == _objdump_names(shim_like)
    vc, lvl = image.sections[-2:]
    assert (vc.name, vc.long_name, lvl.long_name) == ("/4", ".vendor_cert", ".sbatlevel")
    assert lvl.name.startswith("/") and lvl.name[1:].isdigit()
    assert image.section(".vendor_cert") is vc and image.section("/4") is vc
    assert all(s.long_name == s.name for s in image.sections[:-2])   # short names stay as they are


def test_shim_reader_finds_its_sections_through_the_parser(shim_like):
    shim = read_shim_image(shim_like.read_bytes())
    assert shim.vendor_authorized == (CAPTURE / "shim-vendor-cert.der").read_bytes()
    assert not shim.vendor_authorized_is_db
    assert shim.vendor_deauthorized == (CAPTURE / "shim-vendor-dbx.esl").read_bytes()
    assert (shim.sbat_previous, shim.sbat_latest) == ("sbat,1,2022052400\ngrub,2\n", "sbat,1,2023012900\nshim,2\ngrub,3\n")
    assert shim.sbat is None or "sbat,1," in shim.sbat   # the stub's own .sbat, as text


@pytest.mark.parametrize("damage", ["offset past the table", "table past the file", "no symbol table"])
def test_a_bad_string_table_keeps_the_header_name(shim_like, damage):
    data = bytearray(shim_like.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    symptr, nsyms = struct.unpack_from("<II", data, pe + 12)
    table = symptr + 18 * nsyms
    if damage == "offset past the table":
        struct.pack_into("<I", data, table, 4)          # the table claims to hold nothing
    elif damage == "table past the file":
        struct.pack_into("<I", data, table, len(data))
    else:
        struct.pack_into("<II", data, pe + 12, 0, 0)
    image = PeImage.parse(bytes(data))
    assert [s.long_name for s in image.sections[-2:]] == [s.name for s in image.sections[-2:]]
    assert image.sections[-2].name == "/4"
    with pytest.raises(FormatError, match="vendor_cert"):
        read_shim_image(bytes(data))
