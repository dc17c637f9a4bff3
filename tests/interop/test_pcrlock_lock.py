"""Every `pcrtool pcrlock lock-*` output byte-identical to `systemd-pcrlock lock-*` (newest
systemd, sid chroot) on the same inputs, all four banks: PE and UKI files, command lines, initrd,
Secure Boot variables (systemd reads them from a mounted efivarfs-like directory), the GPT of a
disk image (systemd reads it from a loop device), and the firmware components and Secure Boot
authorities of the real OVMF captures (systemd reads the log and a swtpm holding its replay)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from helpers_interop import efivars_dir, replay_into_swtpm, run_pcrtool, with_efivars
from tests.support import need_tool

ROOT = Path(__file__).resolve().parents[2]
BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
CAPTURES = sorted(p.parent.name for p in (ROOT / "eventlogs").glob("*/eventlog.bin"))


def _same(sid, tmp_path, verb, ours_args, theirs_args, *, env=None, argv_wrap=None):
    ours, theirs = tmp_path / f"{verb}.pt.pcrlock", tmp_path / f"{verb}.sd.pcrlock"
    for p in (ours, theirs):
        p.unlink(missing_ok=True)
    argv = ["systemd-pcrlock", verb, *theirs_args, f"--pcrlock={theirs}"]
    sid.run(*(argv_wrap(*argv) if argv_wrap else argv), env=env)
    run_pcrtool("pcrlock", verb, *ours_args, "-o", ours, check=True)
    assert ours.read_bytes() == theirs.read_bytes(), f"{verb}: differs from systemd {sid.version}"
    return ours.read_bytes()


def _signed(tmp_path, src: Path) -> Path:
    from helpers_interop import make_keypair
    key, crt = make_keypair(tmp_path, "lock")
    out = tmp_path / (src.name + ".signed")
    run_pcrtool("pe", "sign", src, "--key", key, "--cert", crt, "-o", out, check=True)
    return out


def test_lock_pe_and_lock_uki(sid_systemd, tmp_path):
    for p in (BOOT, STUB):
        if not p.is_file():
            need_tool(str(p))
    boot = tmp_path / "boot.efi"  # a copy: the chroot has its own /usr/lib/systemd/boot
    boot.write_bytes(BOOT.read_bytes())
    assert len(boot.read_bytes()) % 8, "pick an unaligned image"
    for src in (boot, _signed(tmp_path, boot)):  # unaligned unsigned (systemd pads virtually) and signed
        _same(sid_systemd, tmp_path, "lock-pe", [src], [src])
    from tests.predict.helpers_uki import build_uki
    uki = tmp_path / "uki.efi"
    uki.write_bytes(build_uki(tmp_path, [(".linux", BOOT.read_bytes()), (".osrel", b"ID=x\n"), (".cmdline", b"rw"),
                                         (".uname", b"6.1.0"), (".initrd", b"initrd" * 100)], drop=()))
    data = _same(sid_systemd, tmp_path, "lock-uki", [uki], [uki])
    assert data.count(b'"pcr":11') >= 10 and data.count(b'"pcr":11') % 2 == 0 and data.count(b'"pcr":4') == 1


@pytest.mark.parametrize("cmdline", ["quiet rw\n", "console=ttyS0 root=/dev/vda2 ro ünïcode", ""])
def test_lock_kernel_cmdline(sid_systemd, tmp_path, cmdline):
    (tmp_path / "cmdline").write_text(cmdline)
    _same(sid_systemd, tmp_path, "lock-kernel-cmdline", [tmp_path / "cmdline"], [tmp_path / "cmdline"])


def test_lock_kernel_initrd(sid_systemd, tmp_path):
    (tmp_path / "initrd").write_bytes(os.urandom(200_000))
    _same(sid_systemd, tmp_path, "lock-kernel-initrd", [tmp_path / "initrd"], [tmp_path / "initrd"])


def _esl(cert_der: bytes, owner: uuid.UUID) -> bytes:
    x509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072").bytes_le
    return x509 + struct.pack("<III", 28 + 16 + len(cert_der), 0, 16 + len(cert_der)) + owner.bytes_le + cert_der


@pytest.mark.parametrize("variant", ["full", "no-dbx-with-dbt"])
def test_lock_secureboot_policy(sid_systemd, tmp_path, variant):
    certs = ROOT / "eventlogs" / "ovmf-sb-own"
    owner = uuid.UUID("a9b1e2f0-5c2d-4e6b-8f3a-70637274c001")
    from pcrtool.predict.secureboot import certificate_der
    v = {"SecureBoot": b"\x01", "PK": _esl(certificate_der((certs / "pk.crt").read_bytes()), owner),
         "KEK": _esl(certificate_der((certs / "kek.crt").read_bytes()), owner),
         "db": _esl(certificate_der((certs / "db.crt").read_bytes()), owner), "dbx": bytes(80)}
    if variant == "no-dbx-with-dbt":
        del v["dbx"]
        v["dbt"] = _esl(b"\x30\x03\x02\x01\x01", owner)
    ev = efivars_dir(tmp_path / "efivars", v)
    _same(sid_systemd, tmp_path, "lock-secureboot-policy", ["--efivars", ev], [],
          argv_wrap=lambda *a: with_efivars(ev, *a))


@pytest.mark.parametrize("capture", CAPTURES)
def test_firmware_and_authority_from_the_ovmf_captures(sid_systemd, tmp_path, capture):
    log = ROOT / "eventlogs" / capture / "eventlog.bin"
    sw = replay_into_swtpm(log.read_bytes())
    try:
        env = {"SYSTEMD_MEASURE_LOG_FIRMWARE": log, "SYSTEMD_MEASURE_LOG_USERSPACE": "/nonexistent",
               "SYSTEMD_TPM2_DEVICE": f"swtpm:path={sw.tmpdir / 'tpm.sock'}"}
        sb = json.loads((log.parent / "capture.json").read_text())["secure_boot"] != "off"  # as captured
        ev = efivars_dir(tmp_path / "efivars", {"SecureBoot": b"\x01" if sb else b"\x00"})
        for which in ("code", "config"):
            # systemd writes both files to their default places (under /var/lib/pcrlock.d, here a
            # directory of ours mounted there): with --pcrlock= the second would overwrite the first
            pd = tmp_path / f"pcrlock.d-{which}"
            pd.mkdir()
            sid_systemd.run(*with_efivars(ev, "systemd-pcrlock", f"lock-firmware-{which}", pcrlock_d=pd), env=env)
            ours_e, ours_l = tmp_path / f"{which}.pt.early", tmp_path / f"{which}.pt.late"
            run_pcrtool("pcrlock", f"lock-firmware-{which}", log, "--early", ours_e, "--late", ours_l, check=True)
            theirs_e = pd / f"250-firmware-{which}-early.pcrlock.d" / "generated.pcrlock"
            theirs_l = pd / f"550-firmware-{which}-late.pcrlock.d" / "generated.pcrlock"
            assert ours_e.read_bytes() == theirs_e.read_bytes(), f"lock-firmware-{which} early"
            assert ours_l.read_bytes() == theirs_l.read_bytes(), f"lock-firmware-{which} late"
            assert ours_e.read_bytes().count(b'"pcr"') >= 3
        theirs = tmp_path / "auth.sd.pcrlock"
        sid_systemd.run(*with_efivars(ev, "systemd-pcrlock", "lock-secureboot-authority", f"--pcrlock={theirs}"),
                        env=env)
        ours = tmp_path / "auth.pt.pcrlock"
        run_pcrtool("pcrlock", "lock-secureboot-authority", log, "-o", ours, check=True)
        assert ours.exists() == theirs.exists() == sb
        if sb:
            assert ours.read_bytes() == theirs.read_bytes()
            assert ours.read_bytes().count(b'"pcr":7') >= 1
    finally:
        sw.stop()


def test_lock_gpt(sid_systemd, tmp_path):
    need_tool("losetup")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(8 << 20)
    sid_systemd.run("sfdisk", "-q", disk, input="label: gpt\n,2M,U\n,2M,L\n")  # the chroot's fdisk
    loop = subprocess.run(["losetup", "--show", "-f", str(disk)], capture_output=True, text=True)
    if loop.returncode != 0:
        pytest.fail(f"losetup failed: {loop.stderr}")
    dev = loop.stdout.strip()
    try:
        _same(sid_systemd, tmp_path, "lock-gpt", [disk], [dev])
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
