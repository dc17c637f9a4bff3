"""Build a signed DDI (adapter): stage the source tree, run ``mkfs.erofs``, hash, sign, lay out.

Reproducible: the staged tree's timestamps are clamped to SOURCE_DATE_EPOCH (also passed to
mkfs.erofs), owners are root (``--all-root``), the file-system UUID, salt, verity UUID, disk
GUID and partition UUIDs come from the seed as repart derives them, and mkfs.erofs sorts
directory entries itself. Without compression the image is the one ``systemd-repart
--make-ddi`` makes from the same tree, seed and key (when the same mkfs.erofs runs).

``PCRTOOL_MKFS_EROFS`` names another mkfs.erofs command line (e.g. one inside a chroot).
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from pcrtool import tools
from pcrtool.ddi import dps, layout
from pcrtool.ddi.release import ExtensionType, parse_os_release
from pcrtool.errors import InputFileError, UsageError
from pcrtool.sign.api import certificate_fingerprint
from pcrtool.verity.sig_partition import VeritySig, build_sig_partition
from pcrtool.verity.tree import build_tree

COMPRESSORS = ("none", "lz4", "lz4hc", "lzma", "zstd", "deflate")
# What CopyFiles= of repart's --make-ddi definitions take from the source tree.
COPY_DIRS = {ExtensionType.SYSEXT: ("usr", "opt"), ExtensionType.CONFEXT: ("etc",),
             ExtensionType.PORTABLE: None}


@dataclass(frozen=True, slots=True)
class BuiltImage:
    layout: layout.Layout
    root_hash: bytes
    fs_size: int
    seed: uuid.UUID
    fs_uuid: uuid.UUID
    head: bytes
    fs: bytes
    hash_area: bytes
    tail: bytes

    def sig_partition(self, der: bytes, certificate) -> bytes:
        fingerprint = bytes.fromhex(certificate_fingerprint(certificate))
        return build_sig_partition(VeritySig(self.root_hash, fingerprint, der),
                                   self.layout.sig_size)

    def write(self, f, sig_partition: bytes) -> None:
        lay = self.layout
        f.write(self.head)
        f.write(bytes(lay.data_offset - len(self.head)))
        f.write(self.fs)
        f.write(bytes(lay.data_size - len(self.fs)))
        f.write(self.hash_area)
        f.write(bytes(lay.hash_size - len(self.hash_area)))
        f.write(sig_partition)
        f.write(self.tail)


def release_text(pairs: list[str]) -> str:
    """An extension-release file from ``KEY=VALUE`` flags (values quoted when they need it)."""
    import shlex
    lines = []
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or not key.replace("_", "").isalnum() or key != key.upper():
            raise UsageError(f"--release {pair!r} is not KEY=VALUE", hint="e.g. --release ID=_any --release SYSEXT_LEVEL=1.0")
        lines.append(f"{key}={value if value and shlex.quote(value) == value else shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def check_release(src: Path, kind: ExtensionType, name: str, written: str | None = None) -> dict[str, str]:
    """The extension-release file systemd will look for: in the tree, or written from flags."""
    if kind is ExtensionType.PORTABLE:
        return {}
    rel = src / kind.release_path(name)
    if written is not None:
        if rel.exists():
            raise UsageError(f"{src} has {kind.release_path(name)} already; --release would replace it",
                             hint="drop --release or the file")
        text, where = written, "--release"
    elif not rel.is_file():
        raise UsageError(f"{src} has no {kind.release_path(name)}",
                         hint="systemd only merges an image whose extension-release file has its name; "
                              "write one or pass --release ID=… (repeatable)")
    else:
        text, where = rel.read_text(errors="replace"), str(rel)
    fields = parse_os_release(text, source=where)
    if "ID" not in fields:
        raise UsageError(f"{where} has no ID=", hint="use ID=_any to match every host")
    return fields


def _stage(src: Path, dest: Path, kind: ExtensionType, epoch: int, extra: dict[str, str]) -> None:
    dirs = COPY_DIRS[kind]
    dest.chmod(0o755)
    names = dirs if dirs is not None else sorted(os.listdir(src))
    for name in names:
        s = src / name
        if not (s.exists() or s.is_symlink()):
            continue
        if s.is_dir() and not s.is_symlink():
            shutil.copytree(s, dest / name, symlinks=True)
        else:
            shutil.copy2(s, dest / name, follow_symlinks=False)
    for rel, text in extra.items():        # files written from flags (the extension-release)
        target = dest / rel
        for parent in reversed(target.relative_to(dest).parents[:-1]):
            (dest / parent).mkdir(mode=0o755, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    for root, dirnames, filenames in os.walk(dest, topdown=False):
        for n in dirnames + filenames:
            p = os.path.join(root, n)
            st = os.lstat(p)
            if st.st_mtime > epoch:
                os.utime(p, (epoch, epoch), follow_symlinks=False)
    os.utime(dest, (epoch, epoch))


def mkfs_command() -> list[str]:
    custom = os.environ.get("PCRTOOL_MKFS_EROFS")
    return shlex.split(custom) if custom else [tools.require_tool("mkfs.erofs")]


def make_erofs(src: Path, kind: ExtensionType, *, fs_uuid: uuid.UUID, epoch: int, arch: str,
               compress: str, workdir: Path, extra: dict[str, str] | None = None) -> bytes:
    stage = workdir / "tree"
    stage.mkdir()
    _stage(src, stage, kind, epoch, extra or {})
    for key, value in layout.validatefs_xattrs(arch).items():
        try:
            os.setxattr(stage, key, value)
        except OSError as e:
            raise InputFileError(f"cannot set {key} on the staging directory {workdir}: {e.strerror}",
                                 hint="use a TMPDIR on a file system with user xattrs (tmpfs, ext4)") from None
    out = workdir / "fs.erofs"
    argv = [*mkfs_command(), "-U", str(fs_uuid), "--quiet"]
    if compress != "none":
        argv.append(f"-z{compress}")
    argv += ["--all-root", str(out), str(stage)]
    tools.run(argv, env={"SOURCE_DATE_EPOCH": str(epoch)})
    return out.read_bytes()


def build_image(src: Path, kind: ExtensionType, *, seed: uuid.UUID, arch: str, compress: str = "none",
                epoch: int = 0, extra: dict[str, str] | None = None) -> BuiltImage:
    """Everything but the signature: file system, hash tree, GPT."""
    if compress not in COMPRESSORS:
        raise UsageError(f"--compress takes {', '.join(COMPRESSORS)}, not {compress!r}")
    if not src.is_dir():
        raise InputFileError(f"{src} is not a directory", hint="give the extension's source tree")
    data_type = dps.partition_type("root", arch).uuid
    fs_uuid = layout.filesystem_uuid(seed.bytes, data_type)
    with tempfile.TemporaryDirectory(prefix="pcrtool-ddi-") as tmp:
        fs = make_erofs(src, kind, fs_uuid=fs_uuid, epoch=epoch, arch=arch, compress=compress,
                        workdir=Path(tmp), extra=extra)
    lay = layout.plan_layout(len(fs))
    # erofs images are whole blocks already: no copy unless the size needs rounding
    padded = fs if len(fs) == lay.verity_size else fs + bytes(lay.verity_size - len(fs))
    params = layout.verity_params(seed.bytes, lay.verity_size)
    tree = build_tree(params, padded)
    head, tail = layout.assemble_gpt(lay, seed=seed.bytes, arch=arch, root_hash=tree.root_hash)
    return BuiltImage(lay, tree.root_hash, len(fs), seed, fs_uuid, head, fs, tree.hash_area(), tail)
