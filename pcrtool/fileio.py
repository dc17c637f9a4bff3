"""File adapter: every read and write of user files goes through here.

Writes are atomic (temporary file in the same directory, fsync, rename), so a failed command
never leaves a partial output file. Private material is written 0600 and never overwritten.
``-`` means standard output; character devices and FIFOs are written in place, symlinks refused
(``atomic_writer`` has the one rule every ``-o`` follows).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from pcrtool.errors import InputFileError


def read_bytes(path: str | os.PathLike, *, what: str = "file", limit: int | None = None) -> bytes:
    """Read a whole file, turning OS errors into one-line pcrtool errors."""
    p = Path(path)
    try:
        if str(p) == "-":
            import sys
            return sys.stdin.buffer.read()
        with open(p, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    except FileNotFoundError:
        raise InputFileError(f"{what} {str(p)!r} does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise InputFileError(f"{what} {str(p)!r} is a directory", hint="give a file") from None
    except PermissionError:
        raise InputFileError(f"cannot read {what} {str(p)!r}: permission denied",
                             hint="run as root or copy the file") from None
    except OSError as e:
        raise InputFileError(f"cannot read {what} {str(p)!r}: {e.strerror}") from None


def read_text(path: str | os.PathLike, *, what: str = "file") -> str:
    data = read_bytes(path, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputFileError(f"{what} {str(path)!r} is not UTF-8 text (byte {e.start})",
                             hint="is this a binary file?") from None


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, *, mode: int = 0o644, overwrite: bool = True,
                  what: str = "output") -> Iterator:
    """Yield a binary file object; on success the bytes land at ``path``, all or nothing.

    Where the bytes go (one rule for every ``-o`` of every command, see README "Output files"):

    * ``-`` or ``/dev/stdout``: standard output; ``/dev/stderr``, ``/dev/fd/N``: that descriptor.
    * an existing character device or FIFO (``/dev/null``, ``>(cmd)``): written in place, never
      replaced (replacing ``/dev/null`` as root would break the machine).
    * a symlink: refused, naming its target (a link may point somewhere the user did not mean).
    * a block device, socket or directory: refused with a hint.
    * otherwise a regular file: temporary file in the same directory, fsync, rename.

    The output is buffered until the body succeeds, so a failing command writes nothing anywhere.
    With ``overwrite=False`` an existing regular file is an error (private keys are never
    overwritten); streams and devices are not "overwritten" and are allowed.
    """
    p = Path(path)
    stream_fd = _stream_fd(p)
    if stream_fd is None:
        kind = _existing_kind(p, what)
        if kind == "in-place":
            stream_fd = -1
    if stream_fd is not None:
        buf = tempfile.SpooledTemporaryFile(max_size=64 << 20)
        try:
            yield buf
            buf.seek(0)
            _copy_to_stream(buf, p, stream_fd, what, private=not mode & 0o077)
        finally:
            buf.close()
        return
    if not overwrite and p.exists():
        raise InputFileError(f"{what} {str(p)!r} exists already; refusing to overwrite it",
                             hint="remove it first or choose another path")
    directory = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError:
        raise InputFileError(f"directory {str(directory)!r} for {what} does not exist",
                             hint="create it first") from None
    except PermissionError:
        raise InputFileError(f"cannot write {what} in {str(directory)!r}: permission denied") from None
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if not overwrite:
            # link() fails if the target appeared meanwhile: no silent overwrite, even racing.
            try:
                os.link(tmp, p)
            except FileExistsError:
                raise InputFileError(f"{what} {str(p)!r} exists already; refusing to overwrite it",
                                     hint="remove it first or choose another path") from None
            os.unlink(tmp)
        else:
            os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_STD_STREAMS = {"-": 1, "/dev/stdout": 1, "/dev/stderr": 2}


def is_stdout(path: str | os.PathLike | None) -> bool:
    """True when an ``-o`` value means standard output (``-`` or ``/dev/stdout``)."""
    return path is not None and str(path) in ("-", "/dev/stdout")


def _stream_fd(p: Path) -> int | None:
    """The descriptor a stream-like path names (``-``, /dev/stdout, /dev/fd/N), else None."""
    s = str(p)
    if s in _STD_STREAMS:
        return _STD_STREAMS[s]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if s.startswith(prefix) and s[len(prefix):].isdigit():
            return int(s[len(prefix):])
    return None


def _existing_kind(p: Path, what: str) -> str:
    """'new' / 'regular' / 'in-place' for an output path, or raise for what pcrtool refuses."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return "new"
    except OSError as e:
        raise InputFileError(f"cannot inspect {what} {str(p)!r}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(p)
        raise InputFileError(f"{what} {str(p)!r} is a symlink (to {target!r}); refusing to follow it",
                             hint=f"give the target path itself ({os.path.realpath(p)}) or remove the link")
    if stat.S_ISREG(st.st_mode):
        return "regular"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return "in-place"
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{what} {str(p)!r} is a directory", hint="give a file name inside it")
    kind = "block device" if stat.S_ISBLK(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) \
        else "special file"
    raise InputFileError(f"{what} {str(p)!r} is a {kind}; pcrtool writes regular files, character "
                         "devices and FIFOs only", hint="write to a file and copy it (e.g. with dd)")


def _copy_to_stream(buf, p: Path, fd: int, what: str, *, private: bool = False) -> None:
    """Write the buffered output to a stream (fd >= 0) or a char device/FIFO opened in place.
    Private material (mode 0600 outputs: keys, secrets) never goes to a terminal."""
    own = fd < 0
    if own:
        try:
            # No O_CREAT/O_TRUNC: the node stays what it is; O_NOFOLLOW closes the lstat race.
            fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        except PermissionError:
            raise InputFileError(f"cannot write {what} {str(p)!r}: permission denied") from None
        except OSError as e:
            raise InputFileError(f"cannot write {what} {str(p)!r}: {e.strerror}") from None
    elif fd == 1:
        import sys
        with contextlib.suppress(AttributeError, ValueError):
            sys.stdout.flush()
    try:
        if private and os.isatty(fd):
            raise InputFileError(f"refusing to write {what} to a terminal ({str(p)!r})",
                                 hint="redirect it to a file or a pipe, or give a file path")
        while chunk := buf.read(1 << 20):
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except BrokenPipeError:
        raise
    except OSError as e:
        raise InputFileError(f"cannot write {what} {str(p)!r}: {e.strerror}") from None
    finally:
        if own:
            os.close(fd)


def check_new_output(path: str | os.PathLike, *, what: str = "output") -> None:
    """Refuse before any work if ``path`` is an existing regular file or a symlink (no partial
    set of outputs); streams, character devices and FIFOs pass (they are written in place)."""
    p = Path(path)
    if _stream_fd(p) is None and _existing_kind(p, what) == "regular":
        raise InputFileError(f"{what} {str(p)!r} exists already; refusing to overwrite it",
                             hint="remove it first or choose another path")


def is_stream_output(path: str | os.PathLike, *, what: str = "output") -> bool:
    """True when ``path`` is written in place (``-``, /dev/fd/N, an existing character device or
    FIFO), False for a regular file (new or existing); symlinks, directories, block devices and
    sockets are refused as ``atomic_writer`` refuses them."""
    p = Path(path)
    return _stream_fd(p) is not None or _existing_kind(p, what) == "in-place"


def require_file_output(path: str | os.PathLike, *, what: str = "output", why: str = "") -> None:
    """Refuse ``-``, streams and devices for an output that must be a real file (e.g. read back)."""
    p = Path(path)
    if _stream_fd(p) is not None or _existing_kind(p, what) == "in-place":
        raise InputFileError(f"{what} {str(p)!r} must be a regular file" + (f" ({why})" if why else ""),
                             hint="write to a file and copy it from there")


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644,
                 overwrite: bool = True, what: str = "output") -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, mode=mode, overwrite=overwrite, what=what) as f:
        f.write(data)


def write_private(path: str | os.PathLike, data: bytes | str, *, what: str = "private key") -> None:
    """Private keys and secrets: mode 0600, never overwriting an existing file."""
    write_atomic(path, data, mode=0o600, overwrite=False, what=what)
