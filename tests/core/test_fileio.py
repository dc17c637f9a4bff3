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


# -- where `-o` writes: streams, devices, FIFOs in place; symlinks refused (issue 18) ---------------

import subprocess
import sys
import threading

PCRTOOL = [sys.executable, "-m", "pcrtool"]


def _null_device(tmp_path):
    """A private null-like character device (major 1, minor 3 is /dev/null's) made with mknod."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root") if not os.environ.get("CI") else pytest.fail("CI runs as root")
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return node


def test_output_onto_a_character_device_writes_in_place_and_keeps_the_node(tmp_path):
    node = _null_device(tmp_path)
    write_atomic(node, b"x" * 100)
    st = os.lstat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temp file, no replacement


def test_dev_null_itself_stays_a_character_device_through_the_cli(tmp_path):
    before = os.stat("/dev/null")
    proc = subprocess.run([*PCRTOOL, "key", "generate", str(tmp_path / "k.pem"), "--type", "rsa2048",
                           "--public-output", "/dev/null"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    after = os.lstat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_output_onto_a_symlink_is_refused_naming_the_target(tmp_path):
    real = tmp_path / "real.json"
    real.write_bytes(b"keep")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with pytest.raises(InputFileError, match=r"is a symlink \(to .*real.json'\); refusing to follow") as ei:
        write_atomic(link, b"new")
    assert str(real) in ei.value.hint
    assert link.is_symlink() and real.read_bytes() == b"keep"
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(InputFileError, match="symlink"):
        write_private(dangling, b"secret")
    assert not (tmp_path / "nowhere").exists()


def test_output_onto_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_atomic(fifo, b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dash_writes_to_stdout_and_nothing_on_failure(capfd):
    write_atomic("-", b"hello\n")
    assert capfd.readouterr().out == "hello\n"
    with pytest.raises(RuntimeError):
        with atomic_writer("-") as f:
            f.write(b"partial")
            raise RuntimeError("boom")
    assert capfd.readouterr().out == ""


def test_directory_and_socket_outputs_are_refused(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        write_atomic(tmp_path, b"x")
    import socket
    sock_path = tmp_path / "s"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    try:
        with pytest.raises(InputFileError, match="is a socket"):
            write_atomic(sock_path, b"x")
    finally:
        s.close()


def test_cli_dash_output_goes_to_stdout(tmp_path):
    key = tmp_path / "k.pem"
    subprocess.run([*PCRTOOL, "key", "generate", str(key), "--type", "rsa2048"], check=True,
                   capture_output=True)
    proc = subprocess.run([*PCRTOOL, "key", "public", str(key), "-o", "-"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert not (tmp_path / "-").exists() and not os.path.exists("-")


def test_private_material_never_goes_to_a_terminal_public_output_does(tmp_path):
    import pty
    master, slave = pty.openpty()
    try:
        tty_path = os.ttyname(slave)
        with pytest.raises(InputFileError, match="refusing to write secret to a terminal"):
            write_private(tty_path, b"secret bytes", what="secret")
        write_atomic(tty_path, b"public\n")
        assert os.read(master, 100).replace(b"\r", b"") == b"public\n"
        assert stat.S_ISCHR(os.lstat(tty_path).st_mode)
    finally:
        os.close(master)
        os.close(slave)
