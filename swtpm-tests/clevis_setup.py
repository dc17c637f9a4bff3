"""What the clevis pin tests share: running tools, and the host side of a bind — a signing key,
approvals for the releases in ``p.json``, the pin installed in ``bin/`` and an empty LUKS2 image
file with a password keyslot (``clevis luks bind`` then adds the pin's keyslot)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PCRTOOL = [sys.executable, "-m", "pcrtool"]
PASSWORD = "correct horse battery"


def run(*args, env=None, check=True, timeout=300, **kw):
    p = subprocess.run(list(map(str, args)), capture_output=True, env=env, timeout=timeout, **kw)
    if check:
        assert p.returncode == 0, f"{args[:3]} exit {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}"
    return p


def pcrtool(*args, **kw):
    return run(*PCRTOOL, *args, **kw)


def prepare_host(d: Path, approvals: Path, disk: Path, *, product: str | None = "fooos") -> tuple[dict, Path]:
    """Key ``d/k.pem`` (public ``d/pub.pem``), ``approvals`` for ``d/p.json`` on PCR 11, the pin in
    ``d/bin`` and a 32 MiB LUKS2 ``disk``; returns (an environment with the pin on PATH, the password file)."""
    pcrtool("key", "generate", d / "k.pem", "--public-output", d / "pub.pem")
    scope = ("--product", product) if product else ()
    pcrtool("policy", "approve", "-r", d / "p.json", "-k", d / "k.pem", "--pcrs", "11", *scope, "-o", approvals)
    pcrtool("clevis", "install", "--dir", d / "bin")
    password = d / "pass.txt"
    password.write_text(PASSWORD)
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    run("cryptsetup", "luksFormat", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
        "--batch-mode", disk, password)
    return {**os.environ, "PATH": f"{d / 'bin'}:{os.environ['PATH']}"}, password
