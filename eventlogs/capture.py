#!/usr/bin/env python3
"""Build a minimal release, boot it in OVMF + swtpm under qemu (TCG), capture the event log.

The release: Debian's kernel and busybox-static (``apt-get download``, extracted with
``dpkg-deb -x``, never installed), a tiny initramfs whose ``/init`` prints the firmware event log
(base64) and the PCRs of every bank to the serial console and powers off, and a UKI assembled
around Debian's systemd-stub with objcopy. The UKI sits on a FAT "superfloppy" ESP as
``EFI/BOOT/BOOTX64.EFI``.

Usage (from the repository root)::

    .venv/bin/python eventlogs/capture.py --out eventlogs/ovmf-sb-off
    .venv/bin/python eventlogs/capture.py --out eventlogs/ovmf-sb-on --secure-boot own
    .venv/bin/python eventlogs/capture.py --out eventlogs/ovmf-cmdline --cmdline "console=ttyS0 …"

This is development tooling (not part of the pcrtool package): it runs qemu, swtpm, objcopy,
mkfs.vfat, mtools, apt-get and dpkg-deb. Everything is written below ``--build`` (default: a
fresh temporary directory); ``--cache`` lets local reruns reuse the downloaded .deb files.
Every build input is pinned for bit-for-bit reproducibility: SOURCE_DATE_EPOCH, newc cpio in
fixed order with fixed inode numbers and mtime, gzip with mtime 0, fixed FAT volume id.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SOURCE_DATE_EPOCH = 1700000000  # 2023-11-14T22:13:20Z, fixed for every build input
DEFAULT_CMDLINE = "console=ttyS0 quiet loglevel=1 panic=-1"
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
OVMF_DIR = Path("/usr/share/OVMF")
OVMF_CODE = OVMF_DIR / "OVMF_CODE_4M.fd"
OVMF_CODE_SB = OVMF_DIR / "OVMF_CODE_4M.secboot.fd"
OVMF_VARS = OVMF_DIR / "OVMF_VARS_4M.fd"
FAT_VOLUME_ID = "50435254"  # "PCRT"
ESP_KIB = 65536
# Owner GUID of the PK/KEK/db entries pcrtool enrols (any fixed GUID; recorded in the log's PCR 7).
OWNER_GUID = "a9b1e2f0-5c2d-4e6b-8f3a-70637274c001"
BANKS = ("sha1", "sha256", "sha384", "sha512")
QEMU_TIMEOUT = 300
REFUSED_MARKER = "Access Denied"

INIT_SCRIPT = r"""#!/bin/sh
# pcrtool e2e initramfs: print the firmware event log and every PCR bank, then power off.
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mount -t securityfs securityfs /sys/kernel/security
/bin/busybox echo 1 > /proc/sys/kernel/printk
L=/sys/kernel/security/tpm0/binary_bios_measurements
/bin/busybox cat $L > /tmp/log
echo "@@PCRTOOL-CMDLINE $(/bin/busybox cat /proc/cmdline)"
echo "@@PCRTOOL-EVENTLOG-BEGIN size=$(/bin/busybox wc -c < /tmp/log) sha256=$(/bin/busybox sha256sum /tmp/log | /bin/busybox cut -d' ' -f1)"
/bin/busybox base64 /tmp/log
echo "@@PCRTOOL-EVENTLOG-END"
for d in /sys/class/tpm/tpm0/pcr-*; do
  bank=${d##*/pcr-}
  i=0
  while [ $i -lt 24 ]; do
    echo "@@PCR $bank $i $(/bin/busybox cat $d/$i)"
    i=$((i+1))
  done
done
echo "@@PCRTOOL-DONE"
/bin/busybox poweroff -f
"""


def log(msg: str) -> None:
    print(f"[capture] {msg}", file=sys.stderr, flush=True)


def run(argv, *, cwd=None, env=None, check=True) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH), "LC_ALL": "C.UTF-8",
                "TZ": "UTC", **(env or {})}
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=full_env, capture_output=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-2000:]}")
    return proc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Inputs: Debian packages


def kernel_package() -> str:
    """The versioned kernel image package linux-image-amd64 currently depends on."""
    proc = run(["apt-cache", "depends", "linux-image-amd64"], check=False)
    out = proc.stdout.decode()
    m = re.search(r"Depends:\s*(linux-image-\S+-amd64)", out)
    if proc.returncode != 0 or not m:
        raise RuntimeError("cannot find the kernel behind linux-image-amd64 (no apt lists? run "
                           f"apt-get update): {proc.stderr.decode(errors='replace').strip()[-300:]}")
    return m.group(1)


def fetch_debs(build: Path, cache: Path | None, *, kernel: str | None = None) -> dict[str, Path]:
    """apt-get download the kernel and busybox-static into build/debs (or reuse cache)."""
    debs = build / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    kpkg = kernel or kernel_package()
    wanted = {"kernel": kpkg, "busybox": "busybox-static"}
    found: dict[str, Path] = {}
    for key, pkg in wanted.items():
        pattern = f"{pkg}_*.deb"
        hits = sorted(cache.glob(pattern)) if cache else []
        if not hits:
            log(f"apt-get download {pkg}")
            run(["apt-get", "download", pkg], cwd=debs)
            hits = sorted(debs.glob(pattern))
            if cache:
                cache.mkdir(parents=True, exist_ok=True)
                for h in hits:
                    shutil.copy2(h, cache / h.name)
        else:
            shutil.copy2(hits[-1], debs / hits[-1].name)
            hits = [debs / hits[-1].name]
        if not hits:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
        found[key] = hits[-1]
    return found


def extract_debs(build: Path, debs: dict[str, Path]) -> tuple[Path, Path, str]:
    kroot, broot = build / "kroot", build / "bbroot"
    for root, deb in ((kroot, debs["kernel"]), (broot, debs["busybox"])):
        if root.exists():
            shutil.rmtree(root)
        run(["dpkg-deb", "-x", deb, root])
    vmlinuz = sorted((kroot / "boot").glob("vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise RuntimeError(f"expected one vmlinuz in {debs['kernel'].name}, found {vmlinuz}")
    uname = vmlinuz[0].name[len("vmlinuz-"):]
    busybox = broot / "bin" / "busybox"
    if not busybox.is_file():
        raise RuntimeError("busybox-static has no /bin/busybox")
    return vmlinuz[0], busybox, uname


# ---------------------------------------------------------------------------------------------
# Initramfs: a pure-Python newc writer (fixed order, inode numbers, owners and mtime)

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def _newc_entry(ino: int, name: str, mode: int, data: bytes = b"", nlink: int = 1,
                rdev: tuple[int, int] = (0, 0), mtime: int = SOURCE_DATE_EPOCH) -> bytes:
    name_b = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, nlink, mtime, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0]
    hdr = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = hdr + name_b
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


#: /init for boots whose kernel exposes no event log (GRUB's legacy loader, Secure Boot off): after
#: the PCR lines it announces a memory dump and waits; the host dumps guest RAM, then quits qemu.
INIT_SCRIPT_MEMDUMP = INIT_SCRIPT.replace('echo "@@PCRTOOL-DONE"', 'echo "@@PCRTOOL-MEMDUMP"\n/bin/busybox sleep 600\necho "@@PCRTOOL-DONE"')
MEMDUMP_MARKER = "@@PCRTOOL-MEMDUMP"


def build_initrd(busybox: Path, *, variant: str = "", init: str = INIT_SCRIPT) -> bytes:
    entries = [  # sorted, parents first
        (".", S_IFDIR | 0o755, b"", 2, (0, 0)),
        ("bin", S_IFDIR | 0o755, b"", 2, (0, 0)),
        ("bin/busybox", S_IFREG | 0o755, busybox.read_bytes(), 1, (0, 0)),
        ("bin/sh", S_IFLNK | 0o777, b"busybox", 1, (0, 0)),
        ("dev", S_IFDIR | 0o755, b"", 2, (0, 0)),
        ("dev/console", S_IFCHR | 0o600, b"", 1, (5, 1)),
        *([("etc", S_IFDIR | 0o755, b"", 2, (0, 0)),
           ("etc/pcrtool-variant", S_IFREG | 0o644, variant.encode() + b"\n", 1, (0, 0))] if variant else []),
        ("init", S_IFREG | 0o755, init.encode(), 1, (0, 0)),
        ("proc", S_IFDIR | 0o755, b"", 2, (0, 0)),
        ("sys", S_IFDIR | 0o755, b"", 2, (0, 0)),
        ("tmp", S_IFDIR | 0o1777, b"", 2, (0, 0)),
    ]
    buf = io.BytesIO()
    for ino, (name, mode, data, nlink, rdev) in enumerate(entries, start=1):
        buf.write(_newc_entry(ino, name, mode, data, nlink, rdev))
    buf.write(_newc_entry(0, "TRAILER!!!", 0, mtime=0))
    raw = buf.getvalue()
    raw += b"\0" * (-len(raw) % 512)
    return gzip.compress(raw, compresslevel=9, mtime=0)


# ---------------------------------------------------------------------------------------------
# UKI: objcopy around systemd-stub, sections placed after the stub's last section


def os_release(version: str) -> str:
    return (f'NAME="pcrtool e2e"\nID=pcrtool-e2e\nVERSION_ID={version}\n'
            f'PRETTY_NAME="pcrtool e2e test release {version}"\n')


def _pe_layout(path: Path) -> tuple[int, int]:
    """(end of the last section's virtual range, SectionAlignment) of a PE image."""
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    end = max(s.VirtualAddress + (s.Misc_VirtualSize or s.SizeOfRawData) for s in pe.sections)
    align = pe.OPTIONAL_HEADER.SectionAlignment
    base = pe.OPTIONAL_HEADER.ImageBase
    pe.close()
    return base + end, align


def build_uki(workdir: Path, *, linux: Path, initrd: bytes, cmdline: str, uname: str,
              version: str, stub: Path = STUB) -> tuple[Path, dict[str, Path]]:
    """Assemble the UKI; returns (uki path, {section name: content file})."""
    workdir.mkdir(parents=True, exist_ok=True)
    files = {
        ".osrel": (workdir / "osrel", os_release(version).encode()),
        ".cmdline": (workdir / "cmdline", cmdline.encode()),
        ".uname": (workdir / "uname", uname.encode()),
        ".initrd": (workdir / "initrd.cpio.gz", initrd),
        ".linux": (workdir / "vmlinuz", linux.read_bytes()),
    }
    end, align = _pe_layout(stub)
    vma = end
    args: list[str] = ["objcopy"]
    for name, (path, data) in files.items():
        path.write_bytes(data)
        os.utime(path, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
        vma = (vma + align - 1) // align * align
        args += ["--add-section", f"{name}={path}", "--set-section-flags", f"{name}=data,readonly",
                 "--change-section-vma", f"{name}={vma:#x}"]
        vma += len(data)
    uki = workdir / "uki.efi"
    args += [str(stub), str(uki)]
    run(args)
    data = uki.read_bytes()
    # Pad to 8 bytes, as signing does before it appends the certificate table: then the
    # Authenticode digest (what PCR 4 measures) is the same for the unsigned and signed UKI.
    data += b"\0" * (-len(data) % 8)
    uki.write_bytes(_pin_pe_timestamp(data))
    return uki, {k: v[0] for k, v in files.items()}


def _pe_checksum(data: bytes, checksum_offset: int) -> int:
    """The PE optional-header CheckSum (16-bit one's-complement-style sum plus file length)."""
    buf = bytearray(data)
    buf[checksum_offset:checksum_offset + 4] = b"\0\0\0\0"
    if len(buf) % 2:
        buf += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("<H", buf):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def _pin_pe_timestamp(data: bytes) -> bytes:
    """objcopy (binutils 2.40) stamps the current time into the COFF header and ignores
    SOURCE_DATE_EPOCH; set TimeDateStamp to SOURCE_DATE_EPOCH and recompute the CheckSum."""
    buf = bytearray(data)
    pe_off = struct.unpack_from("<I", buf, 0x3C)[0]
    if buf[pe_off:pe_off + 4] != b"PE\0\0":
        raise RuntimeError("objcopy output is not a PE image")
    struct.pack_into("<I", buf, pe_off + 8, SOURCE_DATE_EPOCH)
    checksum_offset = pe_off + 24 + 64
    struct.pack_into("<I", buf, checksum_offset, _pe_checksum(bytes(buf), checksum_offset))
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# ESP


def build_esp(uki: Path, esp: Path) -> Path:
    if esp.exists():
        esp.unlink()
    run(["mkfs.vfat", "--invariant", "-i", FAT_VOLUME_ID, "-n", "PCRTOOLESP", "-F", "32",
         "-C", esp, str(ESP_KIB)])
    env = {"MTOOLS_SKIP_CHECK": "1"}
    run(["mmd", "-i", esp, "::EFI", "::EFI/BOOT"], env=env)
    tmp = esp.parent / "BOOTX64.EFI"
    shutil.copyfile(uki, tmp)
    os.utime(tmp, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    run(["mcopy", "-m", "-i", esp, tmp, "::EFI/BOOT/BOOTX64.EFI"], env=env)
    tmp.unlink()
    return esp


# ---------------------------------------------------------------------------------------------
# The mainstream chain: Debian's signed shim → signed GRUB → signed kernel (+ initrd)

OVMF_CODE_MS = OVMF_DIR / "OVMF_CODE_4M.ms.fd"
OVMF_VARS_MS = OVMF_DIR / "OVMF_VARS_4M.ms.fd"
SHIM_EFI = Path("usr/lib/shim/shimx64.efi.signed")
GRUB_EFI = Path("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed")
# Debian's signed GRUB has prefix /EFI/debian baked in; its memdisk config sources $prefix/grub.cfg.
GRUB_CFG_PATH = "EFI/debian/grub.cfg"
KERNEL_PATH = "/boot/vmlinuz"
INITRD_PATH = "/boot/initrd.img"


def grub_cfg(cmdline: str, *, title: str = "pcrtool e2e") -> str:
    """A Debian-shaped grub.cfg: variables, a menu entry booted at once (timeout 0)."""
    return (f"set default=0\nset timeout=0\n"
            f"menuentry '{title}' --class debian {{\n"
            f"\tlinux {KERNEL_PATH} {cmdline.replace('$', chr(92) + '$')}\n"
            f"\tinitrd {INITRD_PATH}\n"
            f"}}\n")


def fetch_chain_debs(build: Path, cache: Path | None, *, kernel: str | None = None) -> dict[str, Path]:
    """The UKI inputs plus shim-signed and grub-efi-amd64-signed (downloaded, never installed)."""
    found = fetch_debs(build, cache, kernel=kernel)
    debs = build / "debs"
    for key, pkg in (("shim", "shim-signed"), ("grub", "grub-efi-amd64-signed")):
        hits = sorted(cache.glob(f"{pkg}_*.deb")) if cache else []
        if hits:
            shutil.copy2(hits[-1], debs / hits[-1].name)
        else:
            log(f"apt-get download {pkg}")
            run(["apt-get", "download", pkg], cwd=debs)
            if cache:
                cache.mkdir(parents=True, exist_ok=True)
                for h in debs.glob(f"{pkg}_*.deb"):
                    shutil.copy2(h, cache / h.name)
        hits = sorted(debs.glob(f"{pkg}_*.deb"))
        if not hits:
            raise RuntimeError(f"apt-get download {pkg} produced no .deb")
        found[key] = hits[-1]
    return found


@dataclass
class ChainRelease:
    """The files of one shim+GRUB release (``files``: ESP path → local file) and its ESP image."""

    build: Path
    esp: Path
    files: dict[str, Path]
    uname: str
    cmdline: str
    debs: dict[str, Path]


def build_chain_release(build: Path, *, cmdline: str = DEFAULT_CMDLINE, initrd_variant: str = "",
                        cache: Path | None = None, name: str = "chain", memdump: bool = False,
                        kernel: str | None = None) -> ChainRelease:
    """ESP: EFI/BOOT/BOOTX64.EFI (shim), EFI/BOOT/grubx64.efi, EFI/debian/grub.cfg, /boot kernel+initrd.

    ``initrd_variant`` (non-empty) adds ``/etc/pcrtool-variant`` to the initramfs, so two releases
    differ in their initrd.
    """
    build.mkdir(parents=True, exist_ok=True)
    debs = fetch_chain_debs(build, cache, kernel=kernel)
    vmlinuz, busybox, uname = extract_debs(build, debs)
    roots = {}
    for key in ("shim", "grub"):
        root = build / f"{key}root"
        if root.exists():
            shutil.rmtree(root)
        run(["dpkg-deb", "-x", debs[key], root])
        roots[key] = root
    workdir = build / name
    workdir.mkdir(parents=True, exist_ok=True)
    initrd = workdir / "initrd.img"
    initrd.write_bytes(build_initrd(busybox, variant=initrd_variant,
                                    init=INIT_SCRIPT_MEMDUMP if memdump else INIT_SCRIPT))
    cfg = workdir / "grub.cfg"
    cfg.write_text(grub_cfg(cmdline))
    files = {"EFI/BOOT/BOOTX64.EFI": roots["shim"] / SHIM_EFI,
             "EFI/BOOT/grubx64.efi": roots["grub"] / GRUB_EFI,
             GRUB_CFG_PATH: cfg,
             KERNEL_PATH.lstrip("/"): vmlinuz,
             INITRD_PATH.lstrip("/"): initrd}
    esp = build_esp_files(files, workdir / "esp.img")
    return ChainRelease(build, esp, files, uname, cmdline, debs)


def chain_artefacts(files: dict[str, Path], out: Path) -> dict:
    """What a test needs to predict this release without the big binaries: per-bank Authenticode
    digests (shim, GRUB, kernel) and file digests (kernel, initrd, grub.cfg), the GRUB image's
    memdisk config and prefix, shim's vendor certificate, vendor dbx and SBAT levels (extracted
    with pcrtool into ``out``)."""
    from pcrtool.model import HashAlg
    from pcrtool.pe import authenticode_digest
    from pcrtool.predict.grub import read_grub_image
    from pcrtool.predict.shim import read_shim_image

    banks = [HashAlg.from_name(b) for b in BANKS]
    data = {k: v.read_bytes() for k, v in files.items()}
    meta: dict = {"authenticode": {}, "file": {}}
    for key in ("EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", KERNEL_PATH.lstrip("/")):
        meta["authenticode"][key] = {a.bank_name: authenticode_digest(data[key], a).hex() for a in banks}
    for key in (KERNEL_PATH.lstrip("/"), INITRD_PATH.lstrip("/"), GRUB_CFG_PATH):
        meta["file"][key] = {a.bank_name: a.digest(data[key]).hex() for a in banks}
    grub = read_grub_image(data["EFI/BOOT/grubx64.efi"])
    (out / "memdisk-grub.cfg").write_bytes(grub.memdisk["grub.cfg"])
    meta["grub_prefix"], meta["grub_embedded_config"] = grub.prefix, grub.config
    shim = read_shim_image(data["EFI/BOOT/BOOTX64.EFI"])
    (out / "shim-vendor-cert.der").write_bytes(shim.vendor_authorized)
    (out / "shim-vendor-dbx.esl").write_bytes(shim.vendor_deauthorized)
    meta["shim_sbat_level"] = {"previous": shim.sbat_previous, "latest": shim.sbat_latest}
    (out / "artefacts.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def build_esp_files(files: dict[str, Path], esp: Path) -> Path:
    """A FAT32 superfloppy with ``files`` (ESP path → local file), mtimes pinned."""
    if esp.exists():
        esp.unlink()
    run(["mkfs.vfat", "--invariant", "-i", FAT_VOLUME_ID, "-n", "PCRTOOLESP", "-F", "32",
         "-C", esp, str(ESP_KIB)])
    env = {"MTOOLS_SKIP_CHECK": "1"}
    dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
    run(["mmd", "-i", esp, *[f"::{d}" for d in dirs]], env=env)
    tmpdir = esp.parent / "esp-staging"
    tmpdir.mkdir(exist_ok=True)
    for dest, src in files.items():
        tmp = tmpdir / Path(dest).name
        shutil.copyfile(src, tmp)
        os.utime(tmp, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
        run(["mcopy", "-m", "-i", esp, tmp, f"::{dest}"], env=env)
        tmp.unlink()
    tmpdir.rmdir()
    return esp


# ---------------------------------------------------------------------------------------------
# Secure Boot keys and variable store


@dataclass
class SbKeys:
    """PEM paths: certificate per role; private keys only where signing needs them."""

    pk_crt: Path
    kek_crt: Path
    db_crt: Path
    db_key: Path | None = None


def pcrtool_exe() -> str:
    exe = Path(sys.executable).parent / "pcrtool"
    return str(exe) if exe.exists() else "pcrtool"


def generate_sb_keys(keydir: Path, *, cn_prefix: str = "pcrtool e2e") -> SbKeys:
    """Fresh RSA-2048 PK/KEK/db keys with self-signed certificates from ``pcrtool key generate``.

    New keys every run (private keys stay in ``keydir``, mode 0600; only certificates are kept
    in a capture directory).
    """
    keydir.mkdir(parents=True, exist_ok=True)
    out = {}
    for role in ("pk", "kek", "db"):
        key, crt = keydir / f"{role}.key", keydir / f"{role}.crt"
        run([pcrtool_exe(), "key", "generate", key, "--type", "rsa2048",
             "--cert", f"{cn_prefix} {role.upper()}", "--cert-output", crt])
        out[role] = (crt, key)
    return SbKeys(out["pk"][0], out["kek"][0], out["db"][0], out["db"][1])


def make_sb_vars(keys: SbKeys, dest: Path) -> Path:
    """OVMF_VARS_4M.fd with our PK/KEK/db enrolled and Secure Boot enabled (no Microsoft keys)."""
    virt_fw_vars = Path(sys.executable).parent / "virt-fw-vars"
    exe = str(virt_fw_vars) if virt_fw_vars.exists() else "virt-fw-vars"
    run([exe, "--input", OVMF_VARS, "--output", dest, "--set-pk", OWNER_GUID, keys.pk_crt,
         "--add-kek", OWNER_GUID, keys.kek_crt, "--add-db", OWNER_GUID, keys.db_crt,
         "--secure-boot", "--no-microsoft"])
    return dest


EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
LOAD_OPTION_NUMBER = 0x0100


def load_option(description: str, file_path: str, optional_data: bytes) -> bytes:
    """EFI_LOAD_OPTION (UEFI 2.10 §3.1.3) with a short-form FILEPATH device path (EDK2 expands it
    to the file on any simple file system) and ``optional_data`` = the LoadOptions the image gets."""
    path = file_path.encode("utf-16-le") + b"\0\0"
    device_path = struct.pack("<BBH", 4, 4, 4 + len(path)) + path + bytes([0x7F, 0xFF, 4, 0])
    desc = description.encode("utf-16-le") + b"\0\0"
    return struct.pack("<IH", 1, len(device_path)) + desc + device_path + optional_data  # LOAD_OPTION_ACTIVE


def add_boot_entry(vars_in: Path, dest: Path, optional_data: bytes) -> Path:
    """A Boot0100 entry for \\EFI\\BOOT\\BOOTX64.EFI with LoadOptions, selected by BootNext."""
    spec = dest.with_suffix(".json")
    entry = load_option("pcrtool e2e", "\\EFI\\BOOT\\BOOTX64.EFI", optional_data)
    spec.write_text(json.dumps({"version": 2, "variables": [
        {"name": f"Boot{LOAD_OPTION_NUMBER:04X}", "guid": EFI_GLOBAL_VARIABLE, "attr": 7, "data": entry.hex()},
        {"name": "BootNext", "guid": EFI_GLOBAL_VARIABLE, "attr": 7,
         "data": struct.pack("<H", LOAD_OPTION_NUMBER).hex()}]}))
    virt_fw_vars = Path(sys.executable).parent / "virt-fw-vars"
    exe = str(virt_fw_vars) if virt_fw_vars.exists() else "virt-fw-vars"
    run([exe, "--input", vars_in, "--output", dest, "--set-json", spec])
    return dest


def pe_sign(uki: Path, key: Path, crt: Path, dest: Path) -> Path:
    """Authenticode-sign with ``pcrtool pe sign`` (key file)."""
    run([pcrtool_exe(), "pe", "sign", uki, "--key", key, "--cert", crt, "--output", dest])
    return dest


# ---------------------------------------------------------------------------------------------
# Boot


@dataclass
class BootResult:
    serial: str
    refused: bool
    completed: bool
    seconds: float
    exit_code: int | None


def boot(esp: Path, rundir: Path, *, secure_boot: bool, vars_fd: Path | None = None,
         timeout: float = QEMU_TIMEOUT, code: Path | None = None, memdump: Path | None = None,
         dump_marker: str = MEMDUMP_MARKER) -> BootResult:
    """Boot the ESP in OVMF + swtpm (TPM 2.0) under qemu TCG; return the serial console text.

    Stops early (kills qemu) when the serial console shows "Access Denied" (Secure Boot refusal).
    swtpm and qemu are always reaped; swtpm exits with qemu (TPM2_Shutdown + CMD_SHUTDOWN).
    """
    rundir.mkdir(parents=True, exist_ok=True)
    tpmdir = rundir / "tpm"
    if tpmdir.exists():
        shutil.rmtree(tpmdir)
    tpmdir.mkdir()
    sock = rundir / "swtpm.sock"
    serial = rundir / "serial.log"
    for p in (sock, serial):
        if p.exists():
            p.unlink()
    vars_copy = rundir / "vars.fd"
    shutil.copyfile(vars_fd or OVMF_VARS, vars_copy)
    swtpm = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={tpmdir}",
                              "--ctrl", f"type=unixio,path={sock}",
                              "--log", f"file={rundir / 'swtpm.log'},level=1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    qemu = None
    t0 = time.monotonic()
    refused = completed = False
    try:
        for _ in range(100):
            if sock.exists():
                break
            if swtpm.poll() is not None:
                raise RuntimeError("swtpm exited before creating its socket")
            time.sleep(0.05)
        machine = "q35,accel=tcg" + (",smm=on" if secure_boot else "")
        monitor = rundir / "monitor.sock"
        argv = ["qemu-system-x86_64", "-machine", machine, "-m", "1024", "-smp", "1",
                "-nic", "none", "-display", "none", "-no-reboot",
                "-monitor", f"unix:{monitor},server,nowait" if memdump else "none",
                "-serial", f"file:{serial}",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,"
                          f"file={code or (OVMF_CODE_SB if secure_boot else OVMF_CODE)}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
                "-drive", f"file={esp},format=raw,if=none,id=esp,snapshot=on,readonly=off",
                "-device", "virtio-blk-pci,drive=esp",
                "-chardev", f"socket,id=chrtpm,path={sock}",
                "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"]
        if secure_boot:
            argv[5:5] = ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=open(rundir / "qemu.stderr", "wb"))
        while qemu.poll() is None:
            if time.monotonic() - t0 > timeout:
                break
            text = serial.read_text(errors="replace") if serial.exists() else ""
            if REFUSED_MARKER in text:
                refused = True
                time.sleep(0.3)
                break
            if memdump is not None and dump_marker in text:
                _monitor(monitor, f"pmemsave 0 {GUEST_RAM:#x} \"{memdump}\"")
                break
            time.sleep(0.2)
    finally:
        for proc in (qemu, swtpm):
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    seconds = time.monotonic() - t0
    text = serial.read_text(errors="replace") if serial.exists() else ""
    completed = "@@PCRTOOL-DONE" in text or (memdump is not None and memdump.exists()
                                            and memdump.stat().st_size == GUEST_RAM)
    return BootResult(text, refused, completed, seconds, qemu.returncode if qemu else None)


GUEST_RAM = 1024 * 1024 * 1024


def _monitor(sock: Path, *commands: str) -> None:
    """Send human-monitor commands over qemu's unix socket (each waits for the prompt)."""
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.settimeout(300)

        def until_prompt() -> None:
            buf = b""
            while not buf.endswith(b"(qemu) "):
                chunk = s.recv(4096)
                if not chunk:
                    return
                buf += chunk
        until_prompt()
        for cmd in commands:
            s.sendall(cmd.encode() + b"\n")
            if cmd != "quit":
                until_prompt()


SPEC_ID = b"Spec ID Event03\0"


def log_from_memory(dump: Path) -> bytes:
    """The firmware's crypto-agile event log found in a guest RAM dump: the TCG_PCR_EVENT header
    whose event is the Spec ID Event03, then TCG_PCR_EVENT2 records while they are well-formed.

    The longest well-formed copy wins (EDK2 may leave shorter stale copies); the caller checks it
    by replaying it against the PCRs the guest read.
    """
    import mmap

    best = b""
    with open(dump, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mem:
        pos = mem.find(SPEC_ID)
        while pos >= 0:
            start = pos - 32  # pcr, type, sha1 digest[20], event size before the Spec ID data
            if start >= 0 and struct.unpack_from("<II", mem, start) == (0, 3):
                size = struct.unpack_from("<I", mem, start + 28)[0]
                spec = mem[start + 32:start + 32 + size]
                n = struct.unpack_from("<I", spec, 24)[0]
                algs = {struct.unpack_from("<H", spec, 28 + 4 * i)[0]: struct.unpack_from("<H", spec, 30 + 4 * i)[0]
                        for i in range(n)}
                off = start + 32 + size
                while off + 12 <= len(mem):
                    pcr, etype, count = struct.unpack_from("<III", mem, off)
                    if pcr > 23 or etype == 0 or count != len(algs):
                        break
                    o = off + 12
                    ok = True
                    for _ in range(count):
                        alg = struct.unpack_from("<H", mem, o)[0]
                        if alg not in algs:
                            ok = False
                            break
                        o += 2 + algs[alg]
                    if not ok:
                        break
                    esize = struct.unpack_from("<I", mem, o)[0]
                    if esize > 1 << 20:
                        break
                    off = o + 4 + esize
                if off - start > len(best):
                    best = bytes(mem[start:off])
            pos = mem.find(SPEC_ID, pos + 1)
    return best


@dataclass
class Capture:
    eventlog: bytes
    pcrs: dict[str, dict[int, bytes]] = field(default_factory=dict)
    cmdline: str = ""


def parse_serial(text: str) -> Capture:
    """Extract the base64 event log and the PCR lines printed by /init."""
    lines = [ln.rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]
    try:
        begin = next(i for i, ln in enumerate(lines) if "@@PCRTOOL-EVENTLOG-BEGIN" in ln)
        end = next(i for i, ln in enumerate(lines) if "@@PCRTOOL-EVENTLOG-END" in ln)
    except StopIteration:
        raise RuntimeError("serial console has no event log markers (boot did not reach /init?)")
    m = re.search(r"size=(\d+) sha256=([0-9a-f]{64})", lines[begin])
    if not m:
        raise RuntimeError(f"bad marker line {lines[begin]!r}")
    b64 = "".join(ln.strip() for ln in lines[begin + 1:end]
                  if re.fullmatch(r"[A-Za-z0-9+/=]+", ln.strip()))
    data = base64.b64decode(b64)
    if len(data) != int(m.group(1)) or hashlib.sha256(data).hexdigest() != m.group(2):
        raise RuntimeError("event log from serial console is damaged (size/sha256 mismatch)")
    pcrs: dict[str, dict[int, bytes]] = {}
    for ln in lines:
        pm = re.search(r"@@PCR (\w+) (\d+) ([0-9A-Fa-f]+)\s*$", ln)
        if pm:
            pcrs.setdefault(pm.group(1), {})[int(pm.group(2))] = bytes.fromhex(pm.group(3))
    cm = next((ln.split("@@PCRTOOL-CMDLINE ", 1)[1] for ln in lines if "@@PCRTOOL-CMDLINE " in ln), "")
    for bank, values in pcrs.items():
        if sorted(values) != list(range(24)):
            raise RuntimeError(f"incomplete PCR bank {bank} on the serial console")
    return Capture(data, pcrs, cm)


def pcrs_json(pcrs: dict[str, dict[int, bytes]]) -> str:
    """{"sha256": {"0": hex, …}, …} — the JSON form pcrtool.model.PcrValues.parse reads."""
    ordered = {b: {str(i): pcrs[b][i].hex() for i in sorted(pcrs[b])}
               for b in BANKS if b in pcrs}
    return json.dumps(ordered, indent=2) + "\n"


def pcrs_text(pcrs: dict[str, dict[int, bytes]]) -> str:
    return "".join(f"{i}:{b}={pcrs[b][i].hex()}\n" for b in BANKS if b in pcrs for i in sorted(pcrs[b]))


# ---------------------------------------------------------------------------------------------
# Release = everything built from the inputs


@dataclass
class Release:
    build: Path
    uki: Path
    sections: dict[str, Path]
    esp: Path
    uname: str
    cmdline: str
    version: str
    debs: dict[str, Path]


def build_release(build: Path, *, cmdline: str = DEFAULT_CMDLINE, version: str = "1",
                  cache: Path | None = None, name: str = "release") -> Release:
    build.mkdir(parents=True, exist_ok=True)
    debs = fetch_debs(build, cache)
    vmlinuz, busybox, uname = extract_debs(build, debs)
    initrd = build_initrd(busybox)
    workdir = build / name
    uki, sections = build_uki(workdir, linux=vmlinuz, initrd=initrd, cmdline=cmdline,
                              uname=uname, version=version)
    esp = build_esp(uki, workdir / "esp.img")
    return Release(build, uki, sections, esp, uname, cmdline, version, debs)


def esp_for(uki: Path, dest: Path) -> Path:
    return build_esp(uki, dest)


def tool_versions() -> dict[str, str]:
    pkgs = ["ovmf", "qemu-system-x86", "swtpm", "libtpms0", "systemd-boot-efi", "binutils",
            "dosfstools", "mtools"]
    out = run(["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *pkgs], check=False).stdout
    return dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line)


def write_capture(out: Path, cap: Capture, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "eventlog.bin").write_bytes(cap.eventlog)
    (out / "pcrs.json").write_text(pcrs_json(cap.pcrs))
    (out / "pcrs.txt").write_text(pcrs_text(cap.pcrs))
    (out / "capture.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="directory for eventlog.bin, pcrs.*")
    ap.add_argument("--chain", choices=["uki", "shim-grub"], default="uki",
                    help="uki: a UKI as BOOTX64.EFI; shim-grub: Debian's signed shim → GRUB → kernel")
    ap.add_argument("--kernel-package", metavar="PKG",
                    help="shim-grub: this signed linux-image-* package instead of linux-image-amd64's")
    ap.add_argument("--initrd-variant", default="", metavar="TEXT",
                    help="shim-grub: put TEXT into /etc/pcrtool-variant of the initramfs")
    ap.add_argument("--secure-boot", choices=["off", "own", "ms"], default="off",
                    help="off: OVMF_CODE_4M + VARS_4M; own: secboot code, fresh PK/KEK/db enrolled "
                         "with virt-fw-vars, UKI signed with the db key (pcrtool pe sign); "
                         "ms: OVMF_CODE_4M.ms + OVMF_VARS_4M.ms (Microsoft keys, shim-grub only)")
    ap.add_argument("--cmdline", default=DEFAULT_CMDLINE, help="UKI .cmdline section")
    ap.add_argument("--version", default="1", help="VERSION_ID in the UKI's .osrel")
    ap.add_argument("--load-options", metavar="TEXT",
                    help="boot through a Boot0100 entry (BootNext) whose LoadOptions are TEXT as "
                         "UTF-16LE (no NUL unless --load-options-nul)")
    ap.add_argument("--load-options-nul", action="store_true", help="store LoadOptions with a NUL")
    ap.add_argument("--build", type=Path, help="build directory (default: a fresh temp dir, removed)")
    ap.add_argument("--cache", type=Path, help="reuse/store downloaded .deb files here")
    ap.add_argument("--keep", action="store_true", help="keep the build directory")
    args = ap.parse_args(argv)

    tmp = None
    build = args.build
    if build is None:
        tmp = tempfile.mkdtemp(prefix="pcrtool-capture-")
        build = Path(tmp)
    try:
        if args.chain == "shim-grub":
            return main_chain(args, build)
        if args.secure_boot == "ms":
            ap.error("--secure-boot ms needs --chain shim-grub (a UKI is not signed by Microsoft)")
        t0 = time.monotonic()
        rel = build_release(build, cmdline=args.cmdline, version=args.version, cache=args.cache)
        log(f"built UKI {rel.uki} ({rel.uki.stat().st_size} B) in {time.monotonic() - t0:.1f} s")
        meta: dict = {
            "secure_boot": args.secure_boot,
            "cmdline": args.cmdline,
            "kernel_package": rel.debs["kernel"].name,
            "busybox_package": rel.debs["busybox"].name,
            "uname": rel.uname,
            "source_date_epoch": SOURCE_DATE_EPOCH,
            "stub": str(STUB),
            "stub_sha256": sha256_file(STUB),
            "uki_sha256": sha256_file(rel.uki),
            "sections_sha256": {k: sha256_file(p) for k, p in rel.sections.items()},
            "tools": tool_versions(),
        }
        vars_fd = None
        esp = rel.esp
        if args.secure_boot == "own":
            keys = generate_sb_keys(build / "sbkeys")
            vars_fd = make_sb_vars(keys, build / "sb-vars.fd")
            signed = pe_sign(rel.uki, keys.db_key, keys.db_crt, build / "uki.signed.efi")
            esp = build_esp(signed, build / "esp-signed.img")
            meta["signed_uki_sha256"] = sha256_file(signed)
            meta["signer"] = "pcrtool pe sign --key db.key --cert db.crt (key from pcrtool key generate)"
            meta["owner_guid"] = OWNER_GUID
            args.out.mkdir(parents=True, exist_ok=True)
            for role, crt in (("pk", keys.pk_crt), ("kek", keys.kek_crt), ("db", keys.db_crt)):
                shutil.copyfile(crt, args.out / f"{role}.crt")
            meta["ovmf_code"] = str(OVMF_CODE_SB)
        else:
            meta["ovmf_code"] = str(OVMF_CODE)
        meta["ovmf_vars_template"] = str(OVMF_VARS)
        if args.load_options is not None:
            opt = args.load_options.encode("utf-16-le") + (b"\0\0" if args.load_options_nul else b"")
            vars_fd = add_boot_entry(vars_fd or OVMF_VARS, build / "boot-vars.fd", opt)
            meta["load_options"] = args.load_options
            meta["load_options_hex"] = opt.hex()
            meta["boot_entry"] = f"Boot{LOAD_OPTION_NUMBER:04X} (BootNext), FilePath(\\EFI\\BOOT\\BOOTX64.EFI)"
        res = boot(esp, build / "run", secure_boot=args.secure_boot != "off", vars_fd=vars_fd)
        log(f"boot took {res.seconds:.1f} s (refused={res.refused}, completed={res.completed})")
        if not res.completed:
            tail = res.serial[-1500:]
            raise RuntimeError(f"boot did not complete; serial tail:\n{tail}")
        cap = parse_serial(res.serial)
        meta["guest_cmdline"] = cap.cmdline
        meta["banks"] = [b for b in BANKS if b in cap.pcrs]
        meta["eventlog_sha256"] = hashlib.sha256(cap.eventlog).hexdigest()
        write_capture(args.out, cap, meta)
        log(f"wrote {args.out} (log {len(cap.eventlog)} B, banks {meta['banks']})")
        return 0
    finally:
        if tmp and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def main_chain(args, build: Path) -> int:
    """Boot Debian's signed shim → GRUB → kernel; write the capture and the release's files."""
    t0 = time.monotonic()
    ms = args.secure_boot == "ms"
    rel = build_chain_release(build, cmdline=args.cmdline, initrd_variant=args.initrd_variant,
                              cache=args.cache, memdump=not ms, kernel=args.kernel_package)
    log(f"built the shim+GRUB ESP in {time.monotonic() - t0:.1f} s")
    if args.secure_boot == "own":
        raise RuntimeError("--chain shim-grub boots with --secure-boot off or ms")
    code, vars_fd = (OVMF_CODE_MS, OVMF_VARS_MS) if ms else (OVMF_CODE, OVMF_VARS)
    meta: dict = {
        "chain": "shim-grub",
        "secure_boot": args.secure_boot,
        "cmdline": args.cmdline,
        "initrd_variant": args.initrd_variant,
        "packages": {k: p.name for k, p in sorted(rel.debs.items())},
        "uname": rel.uname,
        "source_date_epoch": SOURCE_DATE_EPOCH,
        "esp_files_sha256": {k: sha256_file(v) for k, v in rel.files.items()},
        "ovmf_code": str(code),
        "ovmf_vars_template": str(vars_fd),
        "tools": tool_versions(),
    }
    dump = None if ms else build / "run" / "guest-ram.bin"
    res = boot(rel.esp, build / "run", secure_boot=ms, vars_fd=vars_fd, code=code, memdump=dump)
    log(f"boot took {res.seconds:.1f} s (refused={res.refused}, completed={res.completed})")
    if not res.completed:
        raise RuntimeError(f"boot did not complete; serial tail:\n{res.serial[-1500:]}")
    cap = parse_serial(res.serial)
    if dump is not None:
        # the kernel exposed no log (GRUB's legacy loader): take the firmware's from guest RAM
        meta["eventlog_source"] = "guest RAM dump (qemu pmemsave) after boot: the firmware's log area"
        meta["kernel_exposed_log_bytes"] = len(cap.eventlog)
        cap.eventlog = log_from_memory(dump)
        dump.unlink()
    meta["guest_cmdline"] = cap.cmdline
    meta["banks"] = [b for b in BANKS if b in cap.pcrs]
    meta["eventlog_sha256"] = hashlib.sha256(cap.eventlog).hexdigest()
    write_capture(args.out, cap, meta)
    # the small release files go with the capture (the kernel, shim and GRUB come from the packages)
    shutil.copyfile(rel.files[GRUB_CFG_PATH], args.out / "grub.cfg")
    chain_artefacts(rel.files, args.out)
    log(f"wrote {args.out} (log {len(cap.eventlog)} B, banks {meta['banks']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
