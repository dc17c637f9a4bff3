"""Test inputs for the PE tests: Debian's systemd-boot binaries, a kernel, and edited variants.

The edge-case variants are made by editing the headers of a real binary with ``struct``
(independently of pcrtool's parser), the way the research notes built E1/E3/E4.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
ROOT = Path(__file__).resolve().parents[2]
KERNEL_META = "linux-image-cloud-amd64"        # small Debian-signed kernel (~27 MB .deb)
KERNEL_PKG = "linux-image-6.1.0-56-cloud-amd64"  # fallback when the metapackage cannot be resolved

# Known answers from the research notes (pesign -h, sbsign, osslsigncode agree), Debian bookworm
# systemd-boot-efi 252: the unsigned stub as firmware sees it, and as signed (padded to 8).
STUB_DIGEST_UNPADDED = "28fd6b9a39b745449fa2389a31045900804eae49ea7edb0f8c152a131df0002c"
STUB_DIGEST_SIGNED = "32cab00c99673e8b50d5d7f7602b2f8fdb5138aba67d1d2e422fdc8464310bc1"


def raw_headers(data: bytes) -> dict:
    """A few header offsets read directly, independent of pcrtool.pe."""
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    nsec, optsz = struct.unpack_from("<H", data, pe + 6)[0], struct.unpack_from("<H", data, pe + 20)[0]
    opt = pe + 24
    magic = struct.unpack_from("<H", data, opt)[0]
    dd = opt + (112 if magic == 0x20B else 96)
    return {"pe": pe, "nsec": nsec, "opt": opt, "sect": opt + optsz, "secdir": dd + 32,
            "checksum": opt + 64}


def section_headers(data: bytes) -> list[list]:
    h = raw_headers(data)
    out = []
    for i in range(h["nsec"]):
        off = h["sect"] + 40 * i
        name, vsize, va, rsize, roff = struct.unpack_from("<8sIIII", data, off)
        out.append([off, name, vsize, va, rsize, roff])
    return out


def variant_last_section_unaligned(data: bytes) -> bytes:
    """E1: last section's SizeOfRawData - 3, file cut right after it (no trailing data)."""
    d = bytearray(data)
    hdrs = sorted(section_headers(d), key=lambda s: s[5])
    off, _name, _vs, _va, rsize, roff = hdrs[-1]
    struct.pack_into("<I", d, off + 16, rsize - 3)
    pe = raw_headers(d)["pe"]
    struct.pack_into("<II", d, pe + 12, 0, 0)  # no COFF symbol table after it
    return bytes(d[:roff + rsize - 3])


def variant_gap(data: bytes, gap: int = 512) -> bytes:
    """E3: ``gap`` junk bytes inserted in front of the second section (by file offset)."""
    hdrs = sorted(section_headers(data), key=lambda s: s[5])
    at = hdrs[1][5]
    d = bytearray(data[:at]) + bytearray(b"\xa5" * gap) + bytearray(data[at:])
    for off, _n, _vs, _va, rsize, roff in hdrs[1:]:
        if rsize:
            struct.pack_into("<I", d, off + 20, roff + gap)
    pe = raw_headers(d)["pe"]
    symptr = struct.unpack_from("<I", d, pe + 12)[0]
    if symptr:
        struct.pack_into("<I", d, pe + 12, symptr + gap)
    return bytes(d)


def variant_headers_swapped(data: bytes) -> bytes:
    """E4: the last two section headers swapped (table no longer in file order)."""
    d = bytearray(data)
    h = raw_headers(d)
    a = h["sect"] + 40 * (h["nsec"] - 2)
    b = a + 40
    d[a:a + 40], d[b:b + 40] = d[b:b + 40], d[a:a + 40]
    return bytes(d)


def need_tool(name: str) -> str:
    """Path of an oracle tool; skip without it, fail under CI=true (as the root conftest does)."""
    import pytest

    from pcrtool.tools import find_tool
    path = find_tool(name)
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return path


def strip_signatures(data: bytes) -> bytes:
    """The file without its certificate table (what `sbattach --remove` does), done by hand."""
    h = raw_headers(data)
    off, size = struct.unpack_from("<II", data, h["secdir"])
    if not size:
        return data
    d = bytearray(data[:off])
    struct.pack_into("<II", d, h["secdir"], 0, 0)
    return bytes(d)


def cache_dir() -> Path:
    """Download cache: _work/cache locally, a temp dir under CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        p = Path(tempfile.gettempdir()) / "pcrtool-test-cache"
    else:
        p = ROOT / "_work" / "cache"
    p.mkdir(parents=True, exist_ok=True)
    return p


def kernel_image() -> Path | None:
    """A Debian-signed vmlinuz (apt-get download, cached); None when it cannot be fetched."""
    cache = cache_dir()
    vmlinuz = cache / "vmlinuz"
    if vmlinuz.is_file():
        return vmlinuz
    if not shutil.which("apt-get"):
        return None
    debs = list(cache.glob("linux-image-*.deb"))
    if not debs:
        try:
            subprocess.run(["apt-get", "download", _kernel_package()], cwd=cache, check=True,
                           capture_output=True, timeout=300)
        except (subprocess.SubprocessError, OSError):
            return None
        debs = list(cache.glob("linux-image-*.deb"))
        if not debs:
            return None
    tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(debs[0])], check=True, capture_output=True).stdout
    import io
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for m in tf.getmembers():
            if m.name.startswith("./boot/vmlinuz-"):
                tmp = vmlinuz.with_suffix(".tmp")
                tmp.write_bytes(tf.extractfile(m).read())
                tmp.rename(vmlinuz)
                return vmlinuz
    return None


def _kernel_package() -> str:
    """The versioned package the cloud-kernel metapackage currently points to."""
    try:
        out = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True,
                             timeout=60).stdout
    except (subprocess.SubprocessError, OSError):
        return KERNEL_PKG
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-") and line.endswith("-cloud-amd64"):
            return line.split()[1]
    return KERNEL_PKG


def make_uki(tmp: Path, initrd_size: int, *, seed: int = 1) -> Path:
    """A synthetic UKI: the stub with .osrel/.cmdline/.linux/.initrd added by objcopy."""
    import random
    rnd = random.Random(seed)
    files = {}
    for name, content in [("osrel", b"ID=pcrtool\nVERSION_ID=1\n"), ("cmdline", b"console=ttyS0 quiet\0"),
                          ("linux", rnd.randbytes(4 << 20)), ("initrd", rnd.randbytes(initrd_size))]:
        p = tmp / f"uki-{name}.bin"
        p.write_bytes(content)
        files[name] = p
    out = tmp / f"uki-{initrd_size}.efi"
    vmas = {"osrel": 0x20000, "cmdline": 0x30000, "linux": 0x2000000, "initrd": 0x3000000}
    args = ["objcopy"]
    for name in ("osrel", "cmdline", "linux", "initrd"):
        args += ["--add-section", f".{name}={files[name]}", "--change-section-vma", f".{name}={vmas[name]:#x}"]
    subprocess.run(args + [str(STUB), str(out)], check=True, capture_output=True)
    return out


def make_cert(tmp: Path, bits: int = 2048, cn: str = "pcrtool test") -> tuple[Path, Path]:
    """A self-signed RSA certificate + key made with openssl (the oracle tool)."""
    key, crt = tmp / f"key{bits}-{abs(hash(cn)) % 10000}.pem", tmp / f"cert{bits}-{abs(hash(cn)) % 10000}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", f"rsa:{bits}", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "3650", "-subj", f"/CN={cn}", "-sha256"],
                   check=True, capture_output=True)
    return key, crt


def pcrtool(*args: str, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process (what users run)."""
    from tests.support.cli import run_pcrtool
    return run_pcrtool(*args, env=env, check=check)


def tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run an oracle tool (skip/fail if missing)."""
    exe = need_tool(args[0])
    proc = subprocess.run([exe, *map(str, args[1:])], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def sign_with_pcrtool(data: bytes, key: Path, cert: Path, *, epoch: int = 1700000000, alg=None) -> bytes:
    """Direct signing through the library (same code path as `pcrtool pe sign`)."""
    import datetime as dt

    from pcrtool.model import HashAlg
    from pcrtool.pe.sign import sign_image
    from pcrtool.sign import load_signer
    with load_signer(str(key), certificate=str(cert)) as signer:
        return sign_image(data, signer, dt.datetime.fromtimestamp(epoch, dt.timezone.utc),
                          alg or HashAlg.SHA256)


def make_chain(tmp: Path) -> dict[str, Path]:
    """root CA → intermediate CA → leaf (RSA-2048), made with openssl."""
    def run(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    ext = tmp / "ca.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    leaf_ext = tmp / "leaf.ext"
    leaf_ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    out = {}
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp / "root.key", "-out", tmp / "root.crt",
        "-subj", "/CN=pcrtool root CA", "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE")
    for name, issuer, extfile in (("inter", "root", ext), ("leaf", "inter", leaf_ext)):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", tmp / f"{name}.key", "-out", tmp / f"{name}.csr",
            "-subj", f"/CN=pcrtool {name}")
        run("x509", "-req", "-in", tmp / f"{name}.csr", "-CA", tmp / f"{issuer}.crt", "-CAkey", tmp / f"{issuer}.key",
            "-CAcreateserial", "-out", tmp / f"{name}.crt", "-days", "3650", "-extfile", extfile)
    for name in ("root", "inter", "leaf"):
        out[name + "_crt"], out[name + "_key"] = tmp / f"{name}.crt", tmp / f"{name}.key"
    return out


def make_pe32(tmp: Path) -> Path:
    """A small PE32 (i386) EFI application built with GNU as + ld (i386pe emulation)."""
    src = tmp / "pe32.s"
    src.write_text(".text\n.globl _start\n_start:\n  ret\n  .fill 3000, 1, 0x90\n"
                   ".data\n  .fill 777, 1, 0x41\n"
                   '.section .sbat, "a"\n  .ascii "sbat,1,SBAT Version,sbat,1,https://example\\n"\n')
    obj, out = tmp / "pe32.o", tmp / "pe32.efi"
    subprocess.run(["as", "--32", "-o", str(obj), str(src)], check=True, capture_output=True)
    subprocess.run(["ld", "-m", "i386pe", "--subsystem", "10", "-e", "_start", "-o", str(out), str(obj)],
                   check=True, capture_output=True)
    return out
