"""Helpers of the interop tests (importable: conftest.py puts this directory on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import need_tool


def run_pcrtool(*args, env: dict | None = None, check: bool = False, input: bytes | None = None):
    """The real CLI in a child process (what users run)."""
    proc = subprocess.run([sys.executable, "-m", "pcrtool", *map(str, args)], capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=300, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"pcrtool {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


def make_keypair(d: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate and its key, made by openssl (the oracle)."""
    key, crt = d / f"{cn}.key", d / f"{cn}.crt"
    subprocess.run([need_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "3650", "-subj", f"/CN={cn}", "-sha256"], check=True, capture_output=True)
    return key, crt
