"""Differential tests against the newest systemd-pcrlock (the sid chroot), which precomputes the
same records as pcrtool's predictor.

``lock-uki`` (PCR 4 Authenticode + PCR 11 section records), ``lock-pe``, ``lock-kernel-cmdline`` and
``lock-kernel-initrd`` (PCR 9) are compared record by record, all banks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers_uki import build_uki

from pcrtool.model import HashAlg
from pcrtool.predict.cmdline import (
    linux_initrd_measurement,
    linux_load_options_measurement,
)
from pcrtool.predict.pe import application_measurement
from pcrtool.predict.uki import section_measurements, sections_from_uki

_RUN = None
ALL = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
SD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")



@pytest.fixture(autouse=True)
def _sid(sid_systemd, tmp_path):
    global _RUN
    _RUN = (sid_systemd, tmp_path)


def _pcrlock(verb: str, content: bytes) -> list[tuple[int, dict]]:
    sid, d = _RUN
    (d / "input").write_bytes(content)
    sid.run("systemd-pcrlock", verb, d / "input", f"--pcrlock={d / 'out.pcrlock'}")
    doc = json.loads((d / "out.pcrlock").read_text())
    (d / "out.pcrlock").unlink()
    return [(r["pcr"], {HashAlg.from_name(x["hashAlg"]): bytes.fromhex(x["digest"]) for x in r["digests"]})
            for r in doc["records"]]


def _ours(measurements) -> list[tuple[int, dict]]:
    return [(m.pcr, dict(m.digests)) for m in measurements]


def _pad8(data: bytes) -> bytes:
    return data + bytes(-len(data) % 8)


def test_lock_uki(tmp_path):
    uki = _pad8(build_uki(tmp_path, [(".linux", SD_BOOT.read_bytes()), (".osrel", b"ID=x\n"), (".cmdline", b"rw"),
                                     (".uname", b"6.1.0"), (".initrd", b"initrd" * 100)], drop=()))
    ours = [application_measurement(uki, ALL)] + section_measurements(sections_from_uki(uki, stub=None), ALL)
    assert _pcrlock("lock-uki", uki) == _ours(ours)


def test_lock_pe():
    image = _pad8(SD_BOOT.read_bytes())
    assert _pcrlock("lock-pe", image) == _ours([application_measurement(image, ALL)])


def test_lock_pe_pads_unaligned_unsigned_images_to_8_bytes():
    """systemd's pe_hash hashes an unsigned image as if zero-padded to 8 bytes (the signing view);
    EDK2 measures the file as loaded (pcrtool's PCR 4 default, confirmed on OVMF by pesign/e2e)."""
    from pcrtool.pe import PeImage
    from pcrtool.pe.digest import image_digest

    image = SD_BOOT.read_bytes()
    pad = -len(image) % 8
    assert pad, "systemd-bootx64.efi happens to be 8-aligned; pick another image"
    parsed = PeImage.parse(image)
    ((pcr, theirs),) = _pcrlock("lock-pe", image)
    assert pcr == 4 and theirs == {alg: image_digest(parsed, alg, pad) for alg in ALL}
    assert theirs != dict(application_measurement(image, ALL).digests)


@pytest.mark.parametrize("cmdline", ["quiet rw", "console=ttyS0 root=/dev/vda2 ro ünïcode"])
def test_lock_kernel_cmdline(cmdline):
    assert _pcrlock("lock-kernel-cmdline", cmdline.encode()) == _ours([linux_load_options_measurement(cmdline, ALL)])


def test_lock_kernel_initrd():
    data = os.urandom(5000)
    assert _pcrlock("lock-kernel-initrd", data) == _ours([linux_initrd_measurement(data, ALL)])
