"""DDI adapter for files and tools: map an image, load trusted certificates as systemd does, read
the host's os-release, and read extension-release files the in-process reader cannot (compressed
erofs via ``fsck.erofs --extract``, squashfs via ``unsquashfs -cat``)."""

from __future__ import annotations

import mmap
import os
import platform
import tempfile
from pathlib import Path

from pcrtool import fileio, tools
from pcrtool.ddi import dps
from pcrtool.ddi.image import Dissected
from pcrtool.ddi.release import ExtensionType
from pcrtool.ddi.verify import TrustedCert
from pcrtool.errors import InputFileError, ToolError, UsageError

# CONF_PATHS("verity.d") in systemd's userspace root-hash signature check.
SYSTEM_CERT_DIRS = ("/etc/verity.d", "/run/verity.d", "/usr/local/lib/verity.d", "/usr/lib/verity.d")
HOST_OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


class MappedImage:
    """An image file mapped read-only (``with MappedImage(path) as image: image[a:b]``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self._f = open(self.path, "rb")
        except OSError as e:
            raise InputFileError(f"cannot open {path}: {e.strerror}", hint="give the .raw DDI file") from None
        size = os.fstat(self._f.fileno()).st_size
        if size < 4096:
            self._f.close()
            raise InputFileError(f"{path} has {size} bytes: too small for a DDI")
        self.map = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)

    def __enter__(self):
        return self.map

    def __exit__(self, *exc) -> None:
        self.map.close()
        self._f.close()


def _pem_certificates(data: bytes) -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    try:
        return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(data)]
    except ValueError:
        return []


def load_trusted_certs(cert_args: list[str] | None) -> tuple[list[TrustedCert], list[str]]:
    """Certificates from ``--certs`` (directories of ``*.crt``, or files), else from systemd's
    verity.d directories. Like systemd, only PEM is read and only the first certificate of a file;
    a file name in an earlier directory masks the same name in later ones."""
    sources = cert_args if cert_args else list(SYSTEM_CERT_DIRS)
    seen: dict[str, Path] = {}
    files: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            for f in sorted(p.glob("*.crt")):
                if f.name not in seen:
                    seen[f.name] = f
        elif p.is_file():
            files.append(p)
        elif cert_args:
            raise InputFileError(f"--certs {s}: no such file or directory")
    files += [seen[n] for n in sorted(seen)]
    certs: list[TrustedCert] = []
    skipped: list[str] = []
    for f in files:
        if f.stat().st_size == 0:        # an empty file masks (systemd's /dev/null convention)
            continue
        ders = _pem_certificates(fileio.read_bytes(f, what="certificate"))
        if not ders:
            skipped.append(f"{f}: not a PEM certificate (systemd ignores it)")
            continue
        certs.append(TrustedCert(str(f), ders[0]))
    return certs, [str(s) for s in sources] + skipped


def host_os_release(path: str | None) -> str:
    if path:
        return fileio.read_text(path, what="host os-release")
    for p in HOST_OS_RELEASE:
        if os.path.exists(p):
            return fileio.read_text(p, what="host os-release")
    raise InputFileError("no /etc/os-release or /usr/lib/os-release", hint="pass --host-os-release FILE")


def host_arch(arg: str | None) -> str:
    if arg:
        if not dps.is_arch(arg):
            raise UsageError(f"unknown architecture {arg!r}", hint="e.g. x86-64, arm64, riscv64")
        return arg
    return dps.native_arch(platform.machine())


def extract_release_files(image, d: Dissected, kind: ExtensionType | None) -> dict[str, bytes]:
    """extension-release files read by the file system's own tools (for what the in-process erofs
    reader cannot read: compressed files, squashfs)."""
    des = d.data_designator
    if des is None:
        return {}
    p = d.used[des]
    kinds = [kind] if kind and kind is not ExtensionType.PORTABLE else [ExtensionType.SYSEXT, ExtensionType.CONFEXT]
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="pcrtool-ddi-") as tmp:
        fs = Path(tmp) / "fs.img"
        fs.write_bytes(image[p.offset:p.offset + p.size])
        if p.fstype == "erofs":
            dest = Path(tmp) / "x"
            try:
                tools.run(["fsck.erofs", f"--extract={dest}", "--no-preserve", str(fs)])
            except ToolError as e:
                raise ToolError(f"fsck.erofs cannot read the {des} file system: {e.message}",
                                hint="apt-get install erofs-utils (a newer one for newer images)") from None
            for k in kinds:
                directory = dest / k.release_path("x").rsplit("/", 1)[0]
                if directory.is_dir():
                    for f in sorted(directory.glob("extension-release.*")):
                        if f.is_file():
                            out[f"{k.value}:{f.name[len('extension-release.'):]}"] = f.read_bytes()
        elif p.fstype == "squashfs":
            for k in kinds:
                directory = k.release_path("x").rsplit("/", 1)[0]
                listing = tools.run(["unsquashfs", "-lc", "-d", "", str(fs), directory], check=False)
                for line in listing.stdout.decode("utf-8", "replace").splitlines():
                    rel = line.strip().lstrip("/")
                    base = rel.rsplit("/", 1)[-1]
                    if base.startswith("extension-release."):
                        data = tools.run(["unsquashfs", "-cat", str(fs), rel]).stdout
                        out[f"{k.value}:{base[len('extension-release.'):]}"] = data
    return out
