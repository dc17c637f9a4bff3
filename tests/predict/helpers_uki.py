"""Build real UKIs for tests: systemd-boot's stub plus sections, added with objcopy (binutils)."""

from __future__ import annotations

from tests.support import need_tool  # noqa: F401

import subprocess
from pathlib import Path

import pytest



STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")


def build_uki(tmp: Path, sections: list[tuple[str, bytes]], *, drop: tuple[str, ...] = (".sbat",),
              stub: Path = STUB, name: str = "uki.efi") -> bytes:
    """A UKI with ``sections`` appended in order (duplicates allowed: multi-profile layouts).

    ``drop`` removes stub sections first (systemd 252's systemd-measure has no ``--sbat``).
    """
    objcopy = need_tool("objcopy")
    if not stub.is_file():
        pytest.skip(f"{stub} missing (systemd-boot-efi)")
    tmp.mkdir(parents=True, exist_ok=True)
    out = tmp / name
    args = [objcopy]
    for d in drop:
        args += ["--remove-section", d]
    vma = 0x100000
    for i, (sec, content) in enumerate(sections):
        f = tmp / f"sec{i}{sec}"
        f.write_bytes(content)
        # objcopy cannot add two sections of one name in a single call: rename afterwards.
        tmp_name = f".s{i}"
        args += ["--add-section", f"{tmp_name}={f}", "--change-section-vma", f"{tmp_name}={vma:#x}",
                 "--set-section-flags", f"{tmp_name}=data,readonly"]
        vma += (len(content) + 0xFFFF) // 0x10000 * 0x10000 + 0x10000
    args += [str(stub), str(out)]
    subprocess.run(args, check=True, capture_output=True)
    data = bytearray(out.read_bytes())
    _rename_sections(data, {f".s{i}": sec for i, (sec, _) in enumerate(sections)})
    out.write_bytes(bytes(data))
    return bytes(data)


def _rename_sections(data: bytearray, names: dict[str, str]) -> None:
    """Patch 8-byte section names in the PE section table (names ≤ 8 bytes)."""
    import struct

    pe = struct.unpack_from("<I", data, 0x3C)[0]
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    opt = struct.unpack_from("<H", data, pe + 20)[0]
    table = pe + 24 + opt
    for i in range(nsec):
        off = table + 40 * i
        raw = bytes(data[off:off + 8]).rstrip(b"\0").decode()
        if raw in names:
            new = names[raw].encode()
            assert len(new) <= 8, new
            data[off:off + 8] = new.ljust(8, b"\0")
