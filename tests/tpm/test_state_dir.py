"""Where `tpm enroll` keeps its crash-resume record (no TPM needed)."""

from __future__ import annotations

import os

import pytest

from pcrtool.tpm.enrollment_file import PendingEnrolment, state_dir


def test_a_regular_output_keeps_its_record_next_to_it(tmp_path):
    assert PendingEnrolment.for_output(tmp_path / "e.json", b"s", 0x01805C00, streamed=False).path == \
        str(tmp_path / "e.json.pending")


@pytest.mark.parametrize("euid, env, expected", [
    (1000, {"PCRTOOL_STATE_DIR": "/srv/st"}, "/srv/st"),
    (0, {"PCRTOOL_STATE_DIR": "/srv/st"}, "/srv/st"),
    (0, {"XDG_STATE_HOME": "/x"}, "/var/lib/pcrtool"),
    (1000, {"XDG_STATE_HOME": "/x"}, "/x/pcrtool"),
    (1000, {"HOME": "/home/u"}, "/home/u/.local/state/pcrtool"),
])
def test_the_state_dir(monkeypatch, euid, env, expected):
    for name in ("PCRTOOL_STATE_DIR", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    assert state_dir() == expected


def test_a_streamed_output_keeps_its_record_in_the_state_dir_per_counter(tmp_path, monkeypatch):
    monkeypatch.setenv("PCRTOOL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir("/")
    a = PendingEnrolment.for_output("-", b"s", 0x01805C00, streamed=True)
    b = PendingEnrolment.for_output("/dev/null", b"s", 0x01805C01, streamed=True)
    assert a.path == str(tmp_path / "state" / "enroll-01805c00.pending")
    assert b.path == str(tmp_path / "state" / "enroll-01805c01.pending")
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    a.save(0x01805C00, 3, 7)
    assert a.load(0x01805C00, 3) == (7, 3) and PendingEnrolment(a.path, b"other").load(0x01805C00, 3) is None


def test_an_unusable_state_dir_is_a_one_line_error(tmp_path, monkeypatch):
    from pcrtool.errors import InputFileError

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("PCRTOOL_STATE_DIR", str(tmp_path / "file" / "state"))
    with pytest.raises(InputFileError, match="cannot create the state directory") as e:
        PendingEnrolment.for_output("-", b"s", 0x01805C00, streamed=True)
    assert "PCRTOOL_STATE_DIR" in e.value.hint
