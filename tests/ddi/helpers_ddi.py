"""Helpers for the DDI tests (importable: conftest puts this directory on sys.path).

Oracles: systemd 262's systemd-repart, systemd-dissect and systemd-analyze in the sid chroot,
openssl for keys and certificates, mkfs.erofs/fsck.erofs from erofs-utils.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

from tests.support import need_tool

SEED = "b4d4f6a0-6c0e-4b5f-9f47-2f0c1b1d4a11"
EPOCH = "1700000000"
SYSEXT_POLICY = "root=verity+signed+absent:usr=verity+signed+absent"


def run(*argv, check=True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, check=check, **kw)


def cli(*args) -> tuple[int, str, str]:
    """Run `pcrtool …` in-process; return (exit code, stdout, stderr)."""
    from pcrtool.cli import main
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def make_tree(root: Path, name: str, release: str, *, files: int = 20, kind: str = "sysext") -> Path:
    """A small extension tree with its extension-release file."""
    if kind == "confext":
        rel = root / "etc/extension-release.d"
        data = root / "etc" / name
    else:
        rel = root / "usr/lib/extension-release.d"
        data = root / "usr/share" / name
    rel.mkdir(parents=True)
    data.mkdir(parents=True)
    (rel / f"extension-release.{name}").write_text(release)
    for i in range(files):
        (data / f"file{i:03d}.txt").write_text(f"{name} file {i}\n" * (i + 1))
    return root


def self_signed(d: Path, name: str, *, days: int = 30) -> tuple[Path, Path]:
    """An RSA-2048 key and self-signed certificate made by the openssl command line."""
    openssl = need_tool("openssl")
    key, cert = d / f"{name}.key", d / f"{name}.crt"
    run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-subj", f"/CN={name}", "-days", str(days))
    return key, cert


def dissect_json(sid, image: Path) -> dict:
    """systemd-dissect --json=short in the chroot (``.ci/sid-chroot run`` makes its root a mount
    point, which the metadata helper's mount namespace needs)."""
    return json.loads(sid.run("systemd-dissect", "--json=short", str(image)).stdout)


def entries(image: bytes):
    from pcrtool.gpt import read_gpt
    return read_gpt(image)
