"""Helpers of the interop tests (importable: conftest.py puts this directory on sys.path)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import cli, need_tool


def run_pcrtool(*args, env: dict | None = None, check: bool = False, input: bytes | None = None):
    """The real CLI in a child process (what users run), bytes in and out: tests.support.cli's
    runner with the interop tests' 300 s timeout."""
    return cli.run_pcrtool(*args, env=env, check=check, input=input, timeout=300, text=False)


def make_keypair(d: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed RSA-2048 certificate and its key, made by openssl (the oracle)."""
    key, crt = d / f"{cn}.key", d / f"{cn}.crt"
    subprocess.run([need_tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "3650", "-subj", f"/CN={cn}", "-sha256"], check=True, capture_output=True)
    return key, crt


EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"


def efivars_dir(d: Path, variables: dict) -> Path:
    """An efivarfs-like directory (NAME-GUID files: u32 attributes, then the data) for systemd."""
    d.mkdir(parents=True, exist_ok=True)
    for name, data in variables.items():
        guid = EFI_DB if name in ("db", "dbx", "dbt", "dbr") else EFI_GLOBAL
        (d / f"{name}-{guid}").write_bytes(b"\x27\x00\x00\x00" + data)
    return d


def with_efivars(efivars: Path, *argv, pcrlock_d: Path | None = None) -> list:
    """argv for sid.run that first mounts ``efivars`` as /sys/firmware/efi/efivars (private
    mount namespace of the chroot), so systemd reads those variables as this machine's; with
    ``pcrlock_d`` that directory is /var/lib/pcrlock.d (where lock-* verbs write by default)."""
    script = ('mount -t tmpfs none /sys/firmware && mkdir -p /sys/firmware/efi/efivars && '
              'mount --bind "$0" /sys/firmware/efi/efivars && '
              '{ [ -z "$PCRLOCK_D" ] || { mkdir -p /var/lib/pcrlock.d && mount --bind "$PCRLOCK_D" /var/lib/pcrlock.d; }; } && '
              'exec "$@"')
    return ["env", f"PCRLOCK_D={pcrlock_d or ''}", "sh", "-c", script, str(efivars), *map(str, argv)]


def replay_into_swtpm(log_bytes: bytes):
    """A started pcrtool Swtpm whose PCRs hold the replay of ``log_bytes`` (every extended event,
    every bank); the caller stops it."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.swtpm import Swtpm
    from pcrtool.tpm import open_tpm

    log = parse_event_log(log_bytes)
    sw = Swtpm.start()
    try:
        with open_tpm(sw.tcti) as tpm:
            for ev in log.events:
                if ev.is_extended and ev.digests:
                    tpm.extend(ev.pcr, dict(ev.digests))
    except BaseException:
        sw.stop()
        raise
    return sw
