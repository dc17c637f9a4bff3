"""The swtpm harness: start, TCTI, power cycles, stop without leftovers (real swtpm processes)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time

import pytest



@pytest.fixture(autouse=True)
def _tools(tool):
    tool("swtpm")
    tool("swtpm_ioctl")


def _pcr_extend_and_read(sw, pcr: int) -> bytes:
    """TPM2_PCR_Extend + TPM2_PCR_Read as raw bytes over the socket (independent of pcrtool.tpm)."""
    def cmd(tag, cc, body):
        data = struct.pack(">HII", tag, 10 + len(body), cc) + body
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sw.socket_path))
            s.sendall(data)
            resp = s.recv(4096)
        rc = struct.unpack(">I", resp[6:10])[0]
        assert rc == 0, hex(rc)
        return resp

    # PCR_Extend(pcr, password session, sha256 digest 0x01*32) — Part 3 §22.2
    auth = struct.pack(">IHBH", 0x40000009, 0, 0, 0)  # TPM_RS_PW, empty nonce/attrs/hmac
    body = struct.pack(">II", pcr, len(auth)) + auth + struct.pack(">IH", 1, 0x000B) + b"\x01" * 32
    cmd(0x8002, 0x182, body)
    # PCR_Read(sha256: pcr) — Part 3 §22.4
    select = bytearray(3)
    select[pcr // 8] |= 1 << (pcr % 8)
    resp = cmd(0x8001, 0x17E, struct.pack(">IHB", 1, 0x000B, 3) + bytes(select))
    return resp[-32:]


def test_start_gives_unix_socket_tcti_and_stop_removes_everything():
    from pcrtool.swtpm import Swtpm

    sw = Swtpm.start()
    try:
        assert sw.tcti == f"swtpm:path={sw.tmpdir}/tpm.sock"
        assert (sw.tmpdir / "tpm.sock.ctrl").exists()  # libtss2 derives <path>.ctrl
        assert sw.running
        assert os.stat(sw.tmpdir).st_mode & 0o077 == 0
    finally:
        sw.stop()
    assert not sw.running
    assert not sw.tmpdir.exists()
    sw.stop()  # idempotent


def test_context_manager_cleans_up_after_an_exception():
    from pcrtool.swtpm import Swtpm

    with pytest.raises(RuntimeError):
        with Swtpm.start() as sw:
            raise RuntimeError("boom")
    assert not sw.running and not sw.tmpdir.exists()


def test_reboot_resets_pcrs(swtpm):
    expected = __import__("hashlib").sha256(bytes(32) + b"\x01" * 32).digest()
    assert _pcr_extend_and_read(swtpm, 16) == expected
    swtpm.reboot()
    assert _pcr_extend_and_read(swtpm, 16) == expected  # reset to zero, then extended once
    swtpm.reset_unclean()
    assert _pcr_extend_and_read(swtpm, 16) == expected


def test_parallel_instances_do_not_collide():
    from pcrtool.swtpm import Swtpm

    with Swtpm.start() as a, Swtpm.start() as b:
        assert a.tcti != b.tcti
        _pcr_extend_and_read(a, 16)
        second = _pcr_extend_and_read(a, 16)
        assert _pcr_extend_and_read(b, 16) != second  # b saw one extend, a two


def test_persistent_state_dir_survives_and_is_kept(tmp_path):
    from pcrtool.swtpm import Swtpm

    state = tmp_path / "state"
    with Swtpm.start(state) as sw:
        pass
    assert (state / "tpm2-00.permall").is_file()
    assert not sw.tmpdir.exists()


def test_tpm2_tools_reach_the_socket(swtpm, tool):
    tool("tpm2_getcap")
    out = subprocess.run(["tpm2_getcap", "properties-fixed"], capture_output=True, text=True,
                         env={**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti}, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "TPM2_PT_FAMILY_INDICATOR" in out.stdout


def test_cli_swtpm_run_prints_tcti_and_cleans_up_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "pcrtool", "swtpm", "run"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("swtpm:path=") and line.endswith("/tpm.sock")
        sock = line.split("=", 1)[1]
        assert os.path.exists(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()
    deadline = time.monotonic() + 2
    while os.path.exists(os.path.dirname(sock)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(os.path.dirname(sock))


def test_swtpm_dies_with_a_killed_parent(tmp_path):
    """PR_SET_PDEATHSIG: a test process killed with SIGKILL (no cleanup code runs) takes its
    swtpm with it, so crashed runs leave no process behind."""
    import shutil
    import signal

    code = ("import sys, time\nfrom pcrtool.swtpm import Swtpm\nsw = Swtpm.start()\n"
            "print(sw.pid, sw.tmpdir, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid_text, tmpdir = proc.stdout.readline().split()
    pid = int(pid_text)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = _is_alive(pid)
    shutil.rmtree(tmpdir, ignore_errors=True)  # SIGKILL leaves the temp dir: nothing can run
    assert not alive, "swtpm outlived its killed parent"


def _is_alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_cli_swtpm_run_with_state_dir_keeps_it(tmp_path):
    import json

    state = tmp_path / "tpmstate"
    proc = subprocess.Popen([sys.executable, "-m", "pcrtool", "--json=short", "swtpm", "run", "--state",
                             str(state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        data = json.loads(proc.stdout.readline())
        assert data["persistent"] is True and data["state"] == str(state)
        assert data["tcti"].startswith("swtpm:path=")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0
    assert (state / "tpm2-00.permall").is_file()  # the user's state dir is never removed


def test_startup_locality_3_sets_pcr0_and_other_localities_are_refused(swtpm):
    from pcrtool.errors import UsageError

    swtpm.reboot(startup_locality=3)
    select = struct.pack(">IHB", 1, 0x000B, 3) + b"\x01\x00\x00"
    with socket.socket(socket.AF_UNIX) as s:  # TPM2_PCR_Read(sha256:0), raw
        s.connect(str(swtpm.socket_path))
        s.sendall(struct.pack(">HII", 0x8001, 10 + len(select), 0x17E) + select)
        resp = s.recv(4096)
    assert resp[-32:] == bytes(31) + b"\x03"  # PC Client PTP: PCR 0 starts at the Startup locality
    with pytest.raises(UsageError):
        swtpm.reboot(startup_locality=4)
    swtpm.reboot()
    assert _pcr_extend_and_read(swtpm, 0) == __import__("hashlib").sha256(bytes(32) + b"\x01" * 32).digest()


def test_cli_swtpm_reboot_by_tcti(swtpm):
    from pcrtool.cli import main
    from pcrtool.swtpm import SwtpmControl

    _pcr_extend_and_read(swtpm, 0)
    with pytest.raises(SystemExit) as e:
        main(["swtpm", "reboot", "--tcti", swtpm.tcti, "--startup-locality", "3"])
    assert e.value.code == 0
    first = _pcr_extend_and_read(swtpm, 0)  # from 0…03, not from the old value
    assert first == __import__("hashlib").sha256(bytes(31) + b"\x03" + b"\x01" * 32).digest()
    with pytest.raises(SystemExit) as e:
        main(["swtpm", "reboot", "--tcti", swtpm.tcti, "--unclean"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["swtpm", "reboot", "--tcti", "device:/dev/tpmrm0"])
    assert e.value.code == 2
    assert SwtpmControl.from_tcti(f"swtpm:path={swtpm.socket_path}").ctrl_path == swtpm.ctrl_path
