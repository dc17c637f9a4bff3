"""File adapter: every read and write of user files goes through here.

Writes are atomic (temporary file in the same directory, fsync, rename), so a failed command
never leaves a partial output file. Private material is written 0600 and never overwritten.
"""

from __future__ import annotations

import contextlib
import os
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
    """Yield a binary file object; on success it replaces ``path`` atomically.

    With ``overwrite=False`` an existing file is an error (private keys are never overwritten).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    p = Path(path)
    if not overwrite and (p.exists() or p.is_symlink()):
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


def write_atomic(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o644,
                 overwrite: bool = True, what: str = "output") -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, mode=mode, overwrite=overwrite, what=what) as f:
        f.write(data)


def write_private(path: str | os.PathLike, data: bytes | str, *, what: str = "private key") -> None:
    """Private keys and secrets: mode 0600, never overwriting an existing file."""
    write_atomic(path, data, mode=0o600, overwrite=False, what=what)
