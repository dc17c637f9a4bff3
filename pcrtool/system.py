"""The only reader of the running system's measured-boot state: the firmware event log in
securityfs, PCR values in sysfs, the systemd userspace measurement log.

Paths can be redirected (tests, recorded machines) with arguments or ``PCRTOOL_SYSFS_ROOT``
(a directory that mirrors ``/``).
"""

from __future__ import annotations

import os
from pathlib import Path

from pcrtool.errors import InputFileError
from pcrtool.fileio import read_bytes
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues

EVENT_LOG = "/sys/kernel/security/tpm0/binary_bios_measurements"
SYSFS_TPM = "/sys/class/tpm/tpm0"
USERSPACE_LOG = "/run/log/systemd/tpm2-measure.log"


def _root(path: str) -> Path:
    root = os.environ.get("PCRTOOL_SYSFS_ROOT")
    return Path(root) / path.lstrip("/") if root else Path(path)


def default_event_log_path() -> Path:
    return _root(EVENT_LOG)


def read_event_log(path: str | os.PathLike | None = None) -> bytes:
    """The whole firmware event log, read in one go (securityfs has no useful size or seek,
    tpm2-tools #1975)."""
    p = Path(path) if path is not None else default_event_log_path()
    if path is None and not p.exists():
        raise InputFileError(f"no firmware event log at {str(p)!r}",
                             hint="is securityfs mounted and a TPM present? or give a log file")
    return read_bytes(p, what="event log")


def default_userspace_log_path() -> Path:
    return _root(os.environ.get("SYSTEMD_MEASURE_LOG_USERSPACE") or USERSPACE_LOG)


def read_sysfs_pcrs(banks: list[HashAlg] | None = None, pcrs: range | list[int] = range(PCR_COUNT),
                    *, sysfs: str | os.PathLike | None = None) -> PcrValues:
    """PCR values from ``/sys/class/tpm/tpm0/pcr-<bank>/<n>`` (Linux ≥ 5.12), hex per file."""
    base = Path(sysfs) if sysfs is not None else _root(SYSFS_TPM)
    if banks is None:
        banks = []
        if base.is_dir():
            for entry in sorted(base.iterdir()):
                if entry.name.startswith("pcr-"):
                    try:
                        banks.append(HashAlg.from_name(entry.name[4:]))
                    except Exception:  # noqa: BLE001 - a bank pcrtool does not know
                        continue
    out = PcrValues()
    for alg in banks:
        bank_dir = base / f"pcr-{alg.bank_name}"
        if not bank_dir.is_dir():
            continue
        for pcr in pcrs:
            f = bank_dir / str(pcr)
            try:
                text = f.read_text().strip()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise InputFileError(f"cannot read {str(f)!r}: {e.strerror}",
                                     hint="run as root") from None
            try:
                out.set(alg, pcr, bytes.fromhex(text))
            except ValueError:
                raise InputFileError(f"{str(f)!r} does not hold a hex PCR value") from None
    if not out.values:
        raise InputFileError(f"no PCR values in {str(base)!r}",
                             hint="needs Linux ≥ 5.12 with a TPM 2.0; or use --pcrs FILE / --tcti")
    return out


def read_userspace_log(path: str | os.PathLike | None = None) -> tuple[bytes, bool]:
    """systemd's userspace measurement log and whether it may be torn.

    Readers take a shared flock (the writer holds an exclusive one while appending) and the
    writer sets the sticky bit during a write; a set bit means a record may be incomplete.
    """
    import fcntl
    import stat

    p = Path(path) if path is not None else default_userspace_log_path()
    try:
        with open(p, "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            try:
                torn = bool(os.fstat(f.fileno()).st_mode & stat.S_ISVTX)
                data = f.read()
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except FileNotFoundError:
        raise InputFileError(f"userspace measurement log {str(p)!r} does not exist",
                             hint="systemd ≥ 252 writes it when it measures boot phases") from None
    except PermissionError:
        raise InputFileError(f"cannot read {str(p)!r}: permission denied", hint="run as root") from None
    return data, torn


def map_event_log(path: str | os.PathLike | None = None):
    """The event log as an ``mmap`` when it is a regular file of 1 MiB or more (large logs are
    then walked without a copy in memory), else as bytes (securityfs cannot be mapped)."""
    import mmap

    p = Path(path) if path is not None else default_event_log_path()
    if str(p) != "-":
        try:
            st = p.stat()
        except OSError:
            st = None
        if st is not None and p.is_file() and st.st_size >= 1 << 20:
            try:
                with open(p, "rb") as f:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError):
                pass
    return read_event_log(path)
