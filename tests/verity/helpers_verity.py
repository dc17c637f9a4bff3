"""Helpers for the dm-verity tests (importable: conftest puts this directory on sys.path).

veritysetup and openssl are the oracles; the PKI is made by the openssl command line.
"""

from __future__ import annotations

from tests.support import need_tool  # noqa: F401

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path


UUID = "12345678-1234-1234-1234-123456789abc"


def run(*argv, check=True, input=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, check=check, input=input)


def data_bytes(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class VsResult:
    root: str
    hash_bytes: bytes


def veritysetup_format(data: Path, hash_path: Path, *, alg="sha256", fmt=1, dbs=4096, hbs=4096,
                       salt: bytes | None = b"\x5a" * 32, superblock=True, hash_offset=0,
                       data_blocks=None, uuid=UUID) -> VsResult:
    """Run `veritysetup format` and return the root hash and the hash file bytes."""
    argv = [need_tool("veritysetup"), "format", data, hash_path, f"--hash={alg}", f"--format={fmt}",
            f"--data-block-size={dbs}", f"--hash-block-size={hbs}",
            f"--salt={salt.hex() if salt else '-'}"]
    argv += [f"--uuid={uuid}"] if superblock else ["--no-superblock"]
    if hash_offset:
        argv.append(f"--hash-offset={hash_offset}")
    if data_blocks is not None:
        argv.append(f"--data-blocks={data_blocks}")
    out = run(*argv).stdout.decode()
    root = next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash:"))
    return VsResult(root, hash_path.read_bytes())


@dataclass
class Pki:
    dir: Path
    ca_key: Path
    ca_cert: Path
    leaf_key: Path
    leaf_cert: Path
    ec_key: Path
    ec_cert: Path
    other_key: Path
    other_cert: Path


def cli(*args) -> tuple[int, str, str]:
    """Run `pcrtool …` in-process; return (exit code, stdout, stderr)."""
    from tests.support.cli import run_pcrtool_in_process
    proc = run_pcrtool_in_process(*args)
    return proc.returncode, proc.stdout, proc.stderr
