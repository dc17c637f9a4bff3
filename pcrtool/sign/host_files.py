"""File adapter of the signing host: bounded reads of regular files only, all-or-nothing outputs and
the append-only audit log.

The build host controls the request directory. Every input is opened relative to the directory's
file descriptor with ``O_NOFOLLOW|O_NONBLOCK`` after an ``lstat`` (a symlink, FIFO or device is
refused before it is opened, so a FIFO cannot hang and ``/dev/zero`` cannot be read), checked with
``fstat`` to be the same regular file, and read up to a limit. Error messages name the file and the
reason, never anything derived from its content.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterable

from pcrtool.errors import InputFileError
from pcrtool.sign.request.limits import quote

AUDIT_LOG_ENV = "PCRTOOL_AUDIT_LOG"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_error(e: OSError, what: str, name: str) -> InputFileError:
    reason = {2: "does not exist", 13: "permission denied", 40: "is a symbolic link"}.get(e.errno, e.strerror)
    return InputFileError(f"{what} {quote(name)}: {reason}", hint="give a regular file")


def read_regular(name: str, limit: int, *, what: str, dir_fd: int | None = None) -> bytes:
    """The whole content of regular file ``name`` (relative to ``dir_fd``), at most ``limit`` bytes."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError as e:
        raise _os_error(e, what, name) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputFileError(f"{what} {quote(name)} is {_kind_of(st.st_mode)}; only regular files are read",
                             hint="give the file itself, not a link, pipe or device")
    if st.st_size > limit:
        raise InputFileError(f"{what} {quote(name)} has {st.st_size} bytes, more than the {limit} allowed")
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        raise _os_error(e, what, name) from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise InputFileError(f"{what} {quote(name)} was replaced while it was opened")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise InputFileError(f"{what} {quote(name)} has more than the {limit} bytes allowed")
        return b"".join(chunks)
    except OSError as e:
        raise _os_error(e, what, name) from None
    finally:
        os.close(fd)


class RequestDir:
    """A request's directory, opened once; files inside it are read by plain name only."""

    def __init__(self, manifest: str | os.PathLike) -> None:
        p = Path(manifest)
        self.manifest_name = p.name
        self.path = p.parent if str(p.parent) else Path(".")
        if not self.manifest_name or self.manifest_name in (".", ".."):
            raise InputFileError(f"signing request {quote(str(p))} is not a file name")
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise _os_error(e, "request directory", str(self.path)) from None

    def read(self, name: str, limit: int, *, what: str) -> bytes:
        if "/" in name or name in ("", ".", ".."):
            raise InputFileError(f"{what} {quote(name)} is not a plain name inside the request directory")
        return read_regular(name, limit, what=what, dir_fd=self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "RequestDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OutputSet:
    """All-or-nothing outputs: each goes to a temporary file next to its target; ``commit`` renames
    them all at the end, ``abort`` (or an exception inside ``with``) removes every temporary file.
    A target that exists as anything but a regular file (symlink, FIFO, device) is refused."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, str, str]] = []     # (dir fd, temp name, final name)
        self._targets: set[tuple[int, int, str]] = set()
        self._dirs: dict[str, int] = {}                    # one descriptor per output directory

    def _dir_fd(self, directory: Path, what: str) -> int:
        key = str(directory)
        if key not in self._dirs:
            try:
                self._dirs[key] = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
            except OSError as e:
                raise _os_error(e, f"directory for {what}", str(directory)) from None
        return self._dirs[key]

    def add(self, path: str | os.PathLike, data: bytes, *, mode: int = 0o644, what: str = "output") -> None:
        p = Path(path)
        directory = p.parent if str(p.parent) else Path(".")
        dfd = self._dir_fd(directory, what)
        try:
            dst = os.fstat(dfd)
            key = (dst.st_dev, dst.st_ino, p.name)
            if key in self._targets:
                raise InputFileError(f"two outputs would both be written to {quote(str(p))}",
                                     hint="item file names must not collide with each other's outputs")
            try:
                st = os.lstat(p.name, dir_fd=dfd)
                if not stat.S_ISREG(st.st_mode):
                    raise InputFileError(f"{what} {quote(str(p))} exists and is {_kind_of(st.st_mode)}; "
                                         "refusing to write through it", hint="remove it first")
            except FileNotFoundError:
                pass
            tmp = f".{p.name[:100]}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dfd)
        except OSError as e:
            raise _os_error(e, what, str(p)) from None
        self._pending.append((dfd, tmp, p.name))
        self._targets.add(key)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:
            raise _os_error(e, what, str(p)) from None
        finally:
            os.close(fd)

    def commit(self) -> None:
        try:
            while self._pending:
                dfd, tmp, name = self._pending[0]
                os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                self._pending.pop(0)
            for dfd in self._dirs.values():
                os.fsync(dfd)
        except OSError as e:
            raise InputFileError(f"cannot rename an output into place: {e.strerror}") from None
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove every temporary file not yet renamed, and close the directories."""
        for dfd, tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
        self._pending.clear()
        for dfd in self._dirs.values():
            with contextlib.suppress(OSError):
                os.close(dfd)
        self._dirs.clear()

    def __enter__(self) -> "OutputSet":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None:
            self.abort()


# --- the audit log --------------------------------------------------------------------------------

def default_audit_log() -> Path:
    """``$PCRTOOL_AUDIT_LOG``, else ``$XDG_STATE_HOME/pcrtool/signing-audit.jsonl`` (default state
    home ``~/.local/state``)."""
    if os.environ.get(AUDIT_LOG_ENV):
        return Path(os.environ[AUDIT_LOG_ENV])
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            state = str(Path.home() / ".local" / "state")
        except (RuntimeError, KeyError):
            raise InputFileError("no home directory for the default audit log",
                                 hint="pass --audit-log PATH or set PCRTOOL_AUDIT_LOG") from None
    return Path(state) / "pcrtool" / "signing-audit.jsonl"


def _open_audit(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as e:
        raise _os_error(e, "audit log", str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
        os.close(fd)
        problem = _kind_of(st.st_mode) if not stat.S_ISREG(st.st_mode) else \
            f"readable or writable by others (mode {stat.S_IMODE(st.st_mode):o})"
        raise InputFileError(f"audit log {quote(str(path))} is {problem}", hint="chmod 600 it, or choose another path")
    return fd


def append_audit(path: Path, records: Iterable[dict]) -> None:
    """Append one JSON line per record (O_APPEND, 0600, fsync'ed) in a single write."""
    data = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in records).encode()
    if path.parent and not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, mode=0o700)
        except OSError as e:
            raise _os_error(e, "audit log directory", str(path.parent)) from None
    fd = _open_audit(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise InputFileError(f"audit log {quote(str(path))}: short write")
        os.fsync(fd)
    except OSError as e:
        raise _os_error(e, "audit log", str(path)) from None
    finally:
        os.close(fd)


def audit_kinds(path: Path, fingerprint: str, *, tail: int = 64 << 20) -> set[str]:
    """The kinds a key signed according to the last ``tail`` bytes of the audit log (empty when
    there is no log yet)."""
    try:
        fd = _open_audit(path, os.O_RDONLY)
    except InputFileError:
        if not os.path.lexists(path):
            return set()
        raise
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - tail), os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    kinds = set()
    for line in b"".join(chunks).splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict) and rec.get("key") == fingerprint and isinstance(rec.get("kind"), str):
            kinds.add(rec["kind"])
    return kinds


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
