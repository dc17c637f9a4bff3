"""Adapter: a real ``swtpm`` TPM 2.0 process on pre-bound unix sockets in a private temp dir.

pcrtool binds and listens on both sockets itself (``tpm.sock`` for TPM commands and
``tpm.sock.ctrl`` for the control channel, the name libtss2's swtpm TCTI derives from ``path=``)
and hands the listening descriptors to swtpm. So a client can connect the moment ``start``
returns, no ports are involved, and parallel harnesses cannot collide.

Power cycles use swtpm's control channel (``swtpm_ioctl -i`` = CMD_INIT, i.e. _TPM_Init) followed
by TPM2_Startup(CLEAR) sent as raw command bytes; this module never imports tpm2-pytss.

    with Swtpm.start() as sw:
        with open_tpm(sw.tcti) as tpm: ...
        sw.reboot()          # TPM2_Shutdown(CLEAR), _TPM_Init, TPM2_Startup(CLEAR): PCRs reset, NV kept
        sw.reset_unclean()   # _TPM_Init without Shutdown: a power loss
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pcrtool.errors import ToolError, UsageError
from pcrtool.tools import require_tool, run

TEMP_PREFIX = "pcrtool-swtpm-"

# Raw TPM 2.0 commands (TPM 2.0 Part 3 §9.3 Startup, §9.4 Shutdown): tag ST_NO_SESSIONS, size 12.
_TPM_ST_NO_SESSIONS = 0x8001
_TPM_CC_STARTUP = 0x0144
_TPM_CC_SHUTDOWN = 0x0145
TPM_SU_CLEAR = 0x0000
TPM_SU_STATE = 0x0001
_TPM_RC_SUCCESS = 0x000
_TPM_RC_INITIALIZE = 0x100  # Startup after Startup: already started (fine for us)

_PR_SET_PDEATHSIG = 1

# Every harness this process started (for the tests' no-leftover check and the atexit safety net).
_started: list["Swtpm"] = []


def started_instances() -> list["Swtpm"]:
    """All Swtpm instances started by this process (running or stopped), oldest first."""
    return list(_started)


@atexit.register
def _stop_all() -> None:
    for sw in _started:
        sw.stop()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM swtpm if the process that started it dies (no orphans after a crash)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort; stop() still cleans up normally
        pass


class SwtpmControl:
    """Power control of a swtpm by its sockets: ``Swtpm`` (which also owns the process) or one
    started elsewhere, e.g. by ``pcrtool swtpm run`` (``SwtpmControl.from_tcti``)."""

    log_path: Path | None = None

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = Path(socket_path)
        self.ctrl_path = Path(f"{socket_path}.ctrl")  # the name libtss2's swtpm TCTI derives

    @classmethod
    def from_tcti(cls, tcti: str) -> "SwtpmControl":
        """``swtpm:path=SOCK`` (unix sockets SOCK and SOCK.ctrl) → a controller."""
        kind, _, conf = tcti.partition(":")
        opts = dict(part.partition("=")[::2] for part in conf.split(",") if part)
        if kind != "swtpm" or "path" not in opts:
            raise UsageError(f"not a unix-socket swtpm TCTI: {tcti!r}",
                             hint="use the swtpm:path=… line `pcrtool swtpm run` prints")
        return cls(Path(opts["path"]))

    @property
    def tcti(self) -> str:
        """TCTI string for libtss2 / tpm2-tools (``TPM2TOOLS_TCTI``) / systemd (``SYSTEMD_TPM2_DEVICE``)."""
        return f"swtpm:path={self.socket_path}"

    # ------------------------------------------------------------------ power
    def reboot(self, *, startup_locality: int = 0) -> None:
        """A clean reboot: TPM2_Shutdown(CLEAR), _TPM_Init (``swtpm_ioctl -i``), TPM2_Startup(CLEAR).

        PCRs are reset, NV (and orderly NV state) survives. ``startup_locality=3`` issues Startup
        from locality 3, so PCR 0 starts at 0…03 like on platforms whose log has StartupLocality 3.
        """
        _check_startup_locality(startup_locality)
        self.shutdown(TPM_SU_CLEAR)
        self.power_cycle(startup_locality=startup_locality)

    def reset_unclean(self, *, startup_locality: int = 0) -> None:
        """A power loss: _TPM_Init and TPM2_Startup(CLEAR) without a preceding TPM2_Shutdown.

        Orderly state is lost: orderly NV counters jump forward, DA may count the failure.
        """
        self.power_cycle(startup_locality=startup_locality)

    def shutdown(self, su: int = TPM_SU_CLEAR) -> None:
        """TPM2_Shutdown (TPM 2.0 Part 3 §9.4)."""
        self._command(_TPM_CC_SHUTDOWN, struct.pack(">H", su), what="TPM2_Shutdown")

    def power_cycle(self, *, startup_locality: int = 0) -> None:
        """_TPM_Init via swtpm's control channel (CMD_INIT, ``swtpm_ioctl -i``), then TPM2_Startup(CLEAR)
        from ``startup_locality`` (CMD_SET_LOCALITY, ``swtpm_ioctl -l``; back to 0 afterwards)."""
        _check_startup_locality(startup_locality)
        ctrl = ["swtpm_ioctl", "--unix", str(self.ctrl_path)]
        run([*ctrl, "-i"], timeout=10)
        if not startup_locality:
            self._startup()
            return
        run([*ctrl, "-l", str(startup_locality)], timeout=10)
        try:
            self._startup()
        finally:
            run([*ctrl, "-l", "0"], timeout=10)

    def _startup(self, timeout: float = 10.0) -> None:
        """TPM2_Startup(CLEAR) (TPM 2.0 Part 3 §9.3); TPM_RC_INITIALIZE (already started) is fine."""
        rc = self._command(_TPM_CC_STARTUP, struct.pack(">H", TPM_SU_CLEAR), what="TPM2_Startup",
                           ok=(_TPM_RC_SUCCESS, _TPM_RC_INITIALIZE), timeout=timeout)
        del rc

    def _command(self, cc: int, params: bytes, *, what: str, ok=(_TPM_RC_SUCCESS,),
                 timeout: float = 10.0) -> int:
        cmd = struct.pack(">HII", _TPM_ST_NO_SESSIONS, 10 + len(params), cc) + params
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket_path))
            s.sendall(cmd)
            resp = b""
            while len(resp) < 10:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
        if len(resp) < 10:
            raise ToolError(f"{what}: swtpm closed the connection", hint=self._log_tail())
        _tag, _size, rc = struct.unpack(">HII", resp[:10])
        if rc not in ok:
            raise ToolError(f"{what} failed with TPM return code 0x{rc:03x}")
        return rc

    def _log_tail(self) -> str:
        if self.log_path is None:
            return "see the swtpm log"
        return _read_log_tail(self.log_path)


class Swtpm(SwtpmControl):
    """A running swtpm TPM 2.0 (use ``Swtpm.start()``; a context manager)."""

    def __init__(self, tmpdir: Path, state_dir: Path, process: subprocess.Popen, log_path: Path,
                 *, owns_state: bool) -> None:
        self.tmpdir = tmpdir
        self.state_dir = state_dir
        self.process = process
        self.log_path = log_path
        self.owns_state = owns_state
        super().__init__(tmpdir / "tpm.sock")

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def start(cls, state_dir: str | os.PathLike | None = None, *, timeout: float = 10.0) -> "Swtpm":
        """Start swtpm (``swtpm socket --tpm2``) with not-need-init + startup-clear.

        ``state_dir`` keeps NV/seeds across runs (created if missing, never deleted); without it
        the state lives in the private temp dir and is removed by ``stop()``.
        """
        exe = require_tool("swtpm")
        tmpdir = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        try:
            if state_dir is None:
                state = tmpdir / "state"
                state.mkdir(mode=0o700)
            else:
                state = Path(state_dir).resolve()
                state.mkdir(mode=0o700, parents=True, exist_ok=True)
            server = _listen(tmpdir / "tpm.sock")
            ctrl = _listen(tmpdir / "tpm.sock.ctrl")
            log_path = tmpdir / "swtpm.log"
            argv = [exe, "socket", "--tpm2",
                    "--server", f"type=unixio,fd={server.fileno()}",
                    "--ctrl", f"type=unixio,fd={ctrl.fileno()}",
                    "--tpmstate", f"dir={state},mode=0600",
                    "--flags", "not-need-init,startup-clear"]
            if os.environ.get("PCRTOOL_VERBOSE"):
                print("+ " + " ".join(argv), file=sys.stderr)
            with open(log_path, "wb") as log:
                process = subprocess.Popen(argv, pass_fds=(server.fileno(), ctrl.fileno()),
                                           stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           preexec_fn=_die_with_parent, close_fds=True,
                                           process_group=0)  # Ctrl-C goes to pcrtool, which stops it
            server.close()
            ctrl.close()
        except BaseException:
            shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        sw = cls(tmpdir, state, process, log_path, owns_state=state_dir is None)
        _started.append(sw)
        try:
            sw._wait_ready(timeout)
        except BaseException:
            sw.stop()
            raise
        return sw

    def _wait_ready(self, timeout: float) -> None:
        """The sockets are listening already; wait until swtpm answers a command (it may fail to start)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise ToolError(f"swtpm exited with code {self.process.returncode}: {self._log_tail()}",
                                hint="check that swtpm (TPM 2.0, libtpms) is installed and the state dir is writable")
            try:
                # TPM2_Startup(CLEAR) answers TPM_RC_INITIALIZE once swtpm's own startup-clear ran.
                self._startup(timeout=max(0.1, deadline - time.monotonic()))
                return
            except (OSError, ToolError):
                if time.monotonic() > deadline:
                    raise ToolError(f"swtpm did not answer within {timeout:g} s: {self._log_tail()}") from None
                time.sleep(0.01)

    def stop(self) -> None:
        """Terminate swtpm, wait for it, and remove the private temp dir (sockets, log, throwaway state)."""
        proc = self.process
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> "Swtpm":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def pid(self) -> int:
        return self.process.pid



def _read_log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no swtpm log"
    return lines[-1] if lines else "swtpm log is empty"


def _check_startup_locality(locality: int) -> None:
    if locality not in (0, 3):  # TPM2_Startup from 1, 2, 4: TPM_RC_LOCALITY (PC Client PTP)
        raise UsageError(f"TPM2_Startup locality must be 0 or 3, not {locality}")


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(16)
    except BaseException:
        sock.close()
        raise
    return sock
