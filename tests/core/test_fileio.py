"""Atomic writes, private files and read errors."""

import os
import stat

import pytest

from pcrtool.errors import InputFileError
from pcrtool.fileio import atomic_writer, read_bytes, write_atomic, write_private


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_failed_write_leaves_target_untouched(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_write_private_is_0600_and_never_overwrites(tmp_path):
    key = tmp_path / "key.pem"
    write_private(key, b"secret")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    with pytest.raises(InputFileError, match="refusing to overwrite"):
        write_private(key, b"other")
    assert key.read_bytes() == b"secret"


def test_read_errors_are_one_line(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_bytes(tmp_path / "missing")
    with pytest.raises(InputFileError, match="is a directory"):
        read_bytes(tmp_path)
