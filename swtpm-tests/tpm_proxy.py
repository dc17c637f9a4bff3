"""A logging proxy on the TPM bus between pcrtool (or any libtss2 client) and swtpm.

swtpm's server socket carries raw TPM 2.0 command and response buffers (no framing of its own:
every buffer starts with the 10-byte header tag, size, commandCode / responseCode; TPM 2.0 Part 1
§18, Part 3 headers). The control channel (``SOCK.ctrl``: _TPM_Init, locality, …) is separate;
the proxy does not touch it and only links its own ``proxy.sock.ctrl`` to swtpm's, so libtss2's
swtpm TCTI (``swtpm:path=…``, which derives ``path + ".ctrl"``) and ``SwtpmControl`` work through it.

    with TpmProxy(sw) as proxy:
        run(pcrtool ..., --tcti proxy.tcti)
        proxy.exchanges        # every command/response with bytes, timestamps, code, rc
        proxy.kill_after(n, popen.pid)   # the crash harness

Every client connection gets its own upstream connection (swtpm serves one connection at a time,
exactly as without the proxy). ``kill_after(n, pid)`` sends SIGKILL to ``pid`` as soon as the TPM
has answered the n-th command (counted from the call); that response is never delivered and
nothing the client sends afterwards reaches the TPM: the TPM's state is exactly "n commands ran",
and the client did nothing after the (n-1)-th response. Optional ``tamper_command`` /
``tamper_response`` callbacks rewrite buffers in flight (an active interposer).

This module is test infrastructure: it does not import pcrtool.tpm or tpm2-pytss.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ST_NO_SESSIONS = 0x8001
ST_SESSIONS = 0x8002
TPM_RS_PW = 0x40000009
MAX_BUFFER = 1 << 20   # swtpm's own limit is far lower; anything larger is a broken stream

# TPM 2.0 Part 2 §6.5.2 TPM_CC: name and number of handles in the command's handle area.
COMMANDS: dict[int, tuple[str, int]] = {
    0x11F: ("NV_UndefineSpaceSpecial", 2), 0x120: ("EvictControl", 2), 0x121: ("HierarchyControl", 1),
    0x122: ("NV_UndefineSpace", 2), 0x124: ("ChangeEPS", 1), 0x125: ("ChangePPS", 1), 0x126: ("Clear", 1),
    0x127: ("ClearControl", 1), 0x128: ("ClockSet", 1), 0x129: ("HierarchyChangeAuth", 1),
    0x12A: ("NV_DefineSpace", 1), 0x12B: ("PCR_Allocate", 1), 0x12C: ("PCR_SetAuthPolicy", 1),
    0x12D: ("PP_Commands", 1), 0x12E: ("SetPrimaryPolicy", 1), 0x12F: ("FieldUpgradeStart", 2),
    0x130: ("ClockRateAdjust", 1), 0x131: ("CreatePrimary", 1), 0x132: ("NV_GlobalWriteLock", 1),
    0x133: ("GetCommandAuditDigest", 2), 0x134: ("NV_Increment", 2), 0x135: ("NV_SetBits", 2),
    0x136: ("NV_Extend", 2), 0x137: ("NV_Write", 2), 0x138: ("NV_WriteLock", 2),
    0x139: ("DictionaryAttackLockReset", 1), 0x13A: ("DictionaryAttackParameters", 1),
    0x13B: ("NV_ChangeAuth", 1), 0x13C: ("PCR_Event", 1), 0x13D: ("PCR_Reset", 1),
    0x13E: ("SequenceComplete", 1), 0x13F: ("SetAlgorithmSet", 1), 0x140: ("SetCommandCodeAuditStatus", 1),
    0x141: ("FieldUpgradeData", 0), 0x142: ("IncrementalSelfTest", 0), 0x143: ("SelfTest", 0),
    0x144: ("Startup", 0), 0x145: ("Shutdown", 0), 0x146: ("StirRandom", 0), 0x147: ("ActivateCredential", 2),
    0x148: ("Certify", 2), 0x149: ("PolicyNV", 3), 0x14A: ("CertifyCreation", 2), 0x14B: ("Duplicate", 2),
    0x14C: ("GetTime", 2), 0x14D: ("GetSessionAuditDigest", 3), 0x14E: ("NV_Read", 2),
    0x14F: ("NV_ReadLock", 2), 0x150: ("ObjectChangeAuth", 2), 0x151: ("PolicySecret", 2),
    0x152: ("Rewrap", 2), 0x153: ("Create", 1), 0x154: ("ECDH_ZGen", 1), 0x155: ("HMAC", 1),
    0x156: ("Import", 1), 0x157: ("Load", 1), 0x158: ("Quote", 1), 0x159: ("RSA_Decrypt", 1),
    0x15B: ("HMAC_Start", 1), 0x15C: ("SequenceUpdate", 1), 0x15D: ("Sign", 1), 0x15E: ("Unseal", 1),
    0x160: ("PolicySigned", 2), 0x161: ("ContextLoad", 0), 0x162: ("ContextSave", 1),
    0x163: ("ECDH_KeyGen", 1), 0x164: ("EncryptDecrypt", 1), 0x165: ("FlushContext", 0),
    0x167: ("LoadExternal", 0), 0x168: ("MakeCredential", 1), 0x169: ("NV_ReadPublic", 1),
    0x16A: ("PolicyAuthorize", 1), 0x16B: ("PolicyAuthValue", 1), 0x16C: ("PolicyCommandCode", 1),
    0x16D: ("PolicyCounterTimer", 1), 0x16E: ("PolicyCpHash", 1), 0x16F: ("PolicyLocality", 1),
    0x170: ("PolicyNameHash", 1), 0x171: ("PolicyOR", 1), 0x172: ("PolicyTicket", 1),
    0x173: ("ReadPublic", 1), 0x174: ("RSA_Encrypt", 1), 0x176: ("StartAuthSession", 2),
    0x177: ("VerifySignature", 1), 0x178: ("ECC_Parameters", 0), 0x179: ("FirmwareRead", 0),
    0x17A: ("GetCapability", 0), 0x17B: ("GetRandom", 0), 0x17C: ("GetTestResult", 0), 0x17D: ("Hash", 0),
    0x17E: ("PCR_Read", 0), 0x17F: ("PolicyPCR", 1), 0x180: ("PolicyRestart", 1), 0x181: ("ReadClock", 0),
    0x182: ("PCR_Extend", 1), 0x183: ("PCR_SetAuthValue", 1), 0x184: ("NV_Certify", 3),
    0x185: ("EventSequenceComplete", 2), 0x186: ("HashSequenceStart", 0), 0x187: ("PolicyPhysicalPresence", 1),
    0x188: ("PolicyDuplicationSelect", 1), 0x189: ("PolicyGetDigest", 1), 0x18A: ("TestParms", 0),
    0x18B: ("Commit", 1), 0x18C: ("PolicyPassword", 1), 0x18D: ("ZGen_2Phase", 1), 0x18E: ("EC_Ephemeral", 0),
    0x18F: ("PolicyNvWritten", 1), 0x190: ("PolicyTemplate", 1), 0x191: ("CreateLoaded", 1),
    0x192: ("PolicyAuthorizeNV", 3), 0x193: ("EncryptDecrypt2", 1), 0x194: ("AC_GetCapability", 1),
    0x195: ("AC_Send", 3), 0x196: ("Policy_AC_SendSelect", 1),
}
CC = {name: code for code, (name, _) in COMMANDS.items()}


def command_name(cc: int) -> str:
    return COMMANDS.get(cc, (f"CC_{cc:#x}", 0))[0]


@dataclass
class Session:
    """One entry of a command's authorization area (TPM 2.0 Part 1 §18.7)."""
    handle: int
    nonce: bytes
    attributes: int
    hmac: bytes      # for TPM_RS_PW: the password itself, in clear


@dataclass
class Exchange:
    """One command and its response on the bus."""
    seq: int                 # 1-based, in the order the TPM executed them (all connections)
    conn: int                # client connection number
    command: bytes
    response: bytes
    t_command: float         # time.monotonic() when the command was complete at the proxy
    t_response: float
    delivered: bool = True   # False: the client was killed instead (kill_after)
    injected: bool = False   # sent by a tamper hook, not by the client

    @property
    def tag(self) -> int:
        return struct.unpack(">H", self.command[:2])[0]

    @property
    def cc(self) -> int:
        return struct.unpack(">I", self.command[6:10])[0]

    @property
    def name(self) -> str:
        return command_name(self.cc)

    @property
    def rc(self) -> int:
        return struct.unpack(">I", self.response[6:10])[0] if len(self.response) >= 10 else -1

    @property
    def handles(self) -> list[int]:
        n = COMMANDS.get(self.cc, ("", 0))[1]
        return [struct.unpack(">I", self.command[10 + 4 * i: 14 + 4 * i])[0] for i in range(n)]

    def sessions(self) -> list[Session]:
        """The authorization area (empty for ST_NO_SESSIONS or an unknown command code)."""
        if self.tag != ST_SESSIONS or self.cc not in COMMANDS:
            return []
        off = 10 + 4 * COMMANDS[self.cc][1]
        (size,) = struct.unpack(">I", self.command[off:off + 4])
        buf, out, i = self.command[off + 4: off + 4 + size], [], 0
        while i < len(buf):
            handle, nlen = struct.unpack(">IH", buf[i:i + 6])
            nonce = buf[i + 6: i + 6 + nlen]
            i += 6 + nlen
            attrs, hlen = struct.unpack(">BH", buf[i:i + 3])
            hmac = buf[i + 3: i + 3 + hlen]
            i += 3 + hlen
            out.append(Session(handle, nonce, attrs, hmac))
        return out

    def parameters(self) -> bytes:
        """The command's parameter area (after handles and authorization area)."""
        if self.cc not in COMMANDS:
            return b""
        off = 10 + 4 * COMMANDS[self.cc][1]
        if self.tag == ST_SESSIONS:
            (size,) = struct.unpack(">I", self.command[off:off + 4])
            off += 4 + size
        return self.command[off:]

    def __str__(self) -> str:
        return f"#{self.seq} conn {self.conn} {self.name} rc={self.rc:#x}"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return buf
        buf += chunk
    return buf


def _read_buffer(sock: socket.socket) -> bytes | None:
    """One TPM command or response buffer; None on a clean end of stream."""
    head = _recv_exact(sock, 10)
    if not head:
        return None
    if len(head) < 10:
        raise ConnectionError("stream ended inside a TPM header")
    (size,) = struct.unpack(">I", head[2:6])
    if not 10 <= size <= MAX_BUFFER:
        raise ConnectionError(f"implausible TPM buffer size {size}")
    body = _recv_exact(sock, size - 10)
    if len(body) < size - 10:
        raise ConnectionError("stream ended inside a TPM buffer")
    return head + body


class TpmProxy:
    """Listen on ``<dir>/proxy.sock``, forward to swtpm's server socket, record everything."""

    def __init__(self, upstream, directory: str | os.PathLike | None = None) -> None:
        """``upstream``: a ``pcrtool.swtpm.SwtpmControl`` / ``Swtpm`` or the path of swtpm's socket."""
        self.upstream = Path(getattr(upstream, "socket_path", upstream))
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="pcrtool-proxy-")) if directory is None else Path(directory)
        self.socket_path = self.dir / "proxy.sock"
        self.exchanges: list[Exchange] = []
        # tamper_command(cmd, send) -> cmd: rewrite a command in flight; send(raw) -> response
        # issues a command of its own on the same TPM connection first (recorded as injected)
        self.tamper_command: Callable[[bytes, Callable[[bytes], bytes]], bytes] | None = None
        self.tamper_response: Callable[[bytes, bytes], bytes] | None = None
        self.killed: list[tuple[int, int]] = []        # (pid, after command seq)
        self._lock = threading.Lock()
        self._kill: tuple[int, int] | None = None      # (absolute seq, pid)
        self._dead = False                             # a kill fired: forward nothing more
        self._conns = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._sockets: set[socket.socket] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def tcti(self) -> str:
        return f"swtpm:path={self.socket_path}"

    def start(self) -> "TpmProxy":
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(str(self.socket_path))
        ls.listen(16)
        ls.settimeout(0.2)
        self._listener = ls
        ctrl = Path(f"{self.socket_path}.ctrl")
        ctrl.symlink_to(Path(f"{self.upstream}.ctrl"))
        t = threading.Thread(target=self._accept_loop, name="tpm-proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for s in list(self._sockets):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self._threads:
            t.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        for p in (self.socket_path, Path(f"{self.socket_path}.ctrl")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        if self._own_dir:
            try:
                self.dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "TpmProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ recording and the harness
    @property
    def count(self) -> int:
        return len(self.exchanges)

    def reset(self) -> None:
        """Forget the recording, disarm a pending kill and forward again after one fired."""
        with self._lock:
            self.exchanges.clear()
            self._kill = None
            self._dead = False

    def kill_after(self, n: int, pid: int) -> None:
        """SIGKILL ``pid`` as soon as the TPM answered the n-th command from now (n ≥ 1)."""
        if n < 1:
            raise ValueError("n counts commands from 1")
        with self._lock:
            self._kill = (len(self.exchanges) + n, pid)
            self._dead = False

    def names(self) -> list[str]:
        return [x.name for x in self.exchanges]

    def bus_bytes(self) -> bytes:
        """Every byte that crossed the bus, commands and responses, in order."""
        return b"".join(x.command + x.response for x in self.exchanges)

    def wait_idle(self, quiet: float = 0.05, timeout: float = 5.0) -> None:
        """Wait until no command was forwarded for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            n = self.count
            if n == last:
                return
            last = n
            time.sleep(quiet)

    # ------------------------------------------------------------------ threads
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._conns += 1
                conn = self._conns
                self._sockets.add(client)
            t = threading.Thread(target=self._serve, args=(client, conn), name=f"tpm-proxy-{conn}", daemon=True)
            t.start()
            self._threads.append(t)

    def _inject(self, upstream: socket.socket, conn: int, raw: bytes) -> bytes:
        t = time.monotonic()
        upstream.sendall(raw)
        resp = _read_buffer(upstream) or b""
        with self._lock:
            self.exchanges.append(Exchange(len(self.exchanges) + 1, conn, raw, resp, t, time.monotonic(),
                                           delivered=False, injected=True))
        return resp

    def _serve(self, client: socket.socket, conn: int) -> None:
        upstream = None
        try:
            while not self._stop.is_set():
                try:
                    cmd = _read_buffer(client)
                except (ConnectionError, OSError):
                    return
                if cmd is None or self._dead:
                    return
                if upstream is None:
                    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    with self._lock:
                        self._sockets.add(upstream)
                    upstream.connect(str(self.upstream))
                t_cmd = time.monotonic()
                if self.tamper_command is not None:
                    cmd = self.tamper_command(cmd, lambda raw, up=upstream, c=conn: self._inject(up, c, raw))
                upstream.sendall(cmd)
                resp = _read_buffer(upstream)
                if resp is None:
                    return
                if self.tamper_response is not None:
                    resp = self.tamper_response(cmd, resp)
                with self._lock:
                    if self._dead:   # killed meanwhile: the TPM ran it, nobody hears about it
                        self.exchanges.append(Exchange(len(self.exchanges) + 1, conn, cmd, resp, t_cmd,
                                                       time.monotonic(), delivered=False))
                        return
                    x = Exchange(len(self.exchanges) + 1, conn, cmd, resp, t_cmd, time.monotonic())
                    self.exchanges.append(x)
                    if self._kill is not None and x.seq >= self._kill[0]:
                        pid = self._kill[1]
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                        self.killed.append((pid, x.seq))
                        x.delivered = False
                        self._kill, self._dead = None, True
                        return
                client.sendall(resp)
        except OSError:
            return
        finally:
            for s in (client, upstream):
                if s is not None:
                    with self._lock:
                        self._sockets.discard(s)
                    s.close()


# --- raw commands the tests send themselves (no tpm2-pytss, no pcrtool.tpm) -----------------------

TPM_CAP_TPM_PROPERTIES = 6
TPM_PT_LOCKOUT_COUNTER = 0x20E   # PT_VAR + 14 (Part 2 §6.13)


def raw_command(socket_path: str | os.PathLike, cc: int, params: bytes, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send one ST_NO_SESSIONS command to a TPM socket; returns (rc, response parameters)."""
    cmd = struct.pack(">HII", ST_NO_SESSIONS, 10 + len(params), cc) + params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(cmd)
        resp = _read_buffer(s)
    if resp is None:
        raise ConnectionError("the TPM closed the connection")
    return struct.unpack(">I", resp[6:10])[0], resp[10:]


def lockout_counter(socket_path: str | os.PathLike) -> int:
    """TPM_PT_LOCKOUT_COUNTER by TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES) (Part 3 §30.2)."""
    return lockout_counter_timeout(socket_path, 10.0)


# --- the lockout-counter check every swtpm test module gets (swtpm-tests/conftest.py) -------------

_excused: set[int] = set()


def excuse_lockout(sw) -> None:
    """Exempt ``sw`` from the module's lockout-counter check (a test that trips dictionary-attack
    protection on purpose, or one that asserts on the counter itself)."""
    _excused.add(id(sw))


def is_excused(sw) -> bool:
    return id(sw) in _excused


def try_lockout_counter(sw) -> int | None:
    """The lockout counter of a running swtpm, or None if it cannot be read right now (stopped,
    not started up, busy)."""
    try:
        if not sw.running:
            return None
        return lockout_counter_timeout(sw.socket_path, 2.0)
    except (OSError, RuntimeError, ConnectionError, ValueError):
        return None


def lockout_counter_timeout(socket_path, timeout: float) -> int:
    rc, out = raw_command(socket_path, CC["GetCapability"],
                          struct.pack(">III", TPM_CAP_TPM_PROPERTIES, TPM_PT_LOCKOUT_COUNTER, 1), timeout=timeout)
    if rc:
        raise RuntimeError(f"TPM2_GetCapability failed with {rc:#x}")
    _more, _cap, count = struct.unpack(">BII", out[:9])
    for i in range(count):
        prop, value = struct.unpack(">II", out[9 + 8 * i: 17 + 8 * i])
        if prop == TPM_PT_LOCKOUT_COUNTER:
            return value
    raise RuntimeError("the TPM did not report TPM_PT_LOCKOUT_COUNTER")


# --- driving a device through the CLI only (keeps working across redesigns of pcrtool.tpm) ------

def pcrtool(*args, check: int | None = None, timeout: float = 120, cwd=None):
    """``python -m pcrtool ARGS`` (tests.support.cli.run_pcrtool: a subprocess that inherits
    PYTHONPATH; a traceback fails the test); ``check``: the exit code it must end with."""
    from tests.support.cli import run_pcrtool

    p = run_pcrtool(*args, timeout=timeout, cwd=cwd)
    if check is not None:
        assert p.returncode == check, f"pcrtool {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}"
    return p


def pcrtool_popen(*args, env: dict | None = None):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "pcrtool", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def tpm2_tools(sw_or_tcti, *argv, check: bool = True, timeout: float = 60):
    """A tpm2-tools command on a TPM (``TPM2TOOLS_TCTI``)."""
    import subprocess

    tcti = sw_or_tcti if isinstance(sw_or_tcti, str) else sw_or_tcti.tcti
    p = subprocess.run(list(map(str, argv)), env={**os.environ, "TPM2TOOLS_TCTI": tcti}, capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert p.returncode == 0, f"{' '.join(map(str, argv))}: {p.stderr}"
    return p


def approved_releases(d: Path, *, secret: bytes | None = None, revoke_first: bool = False, **releases) -> dict:
    """What a signed-policy device test starts from, written into ``d``: a fresh RSA-2048 signing
    key (k.pem, pub.pem), the releases of ``tests.policy.helpers_policy.releases_doc(**releases)``
    (rel.json) and their approvals by that key (a.pcrsig, from `pcrtool policy approve`); with
    ``secret`` the secret to seal (secret.bin); with ``revoke_first`` rel2.json, the same releases
    with the first one marked not allowed. Needs tpm2-pytss and tpm2_pcrextend (``boot``), as every
    device test does; returns the releases document."""
    import json

    from tests.policy.helpers_policy import need_module, need_tool, pem_private, pem_public, releases_doc, rsa_key

    need_module("tpm2_pytss")
    need_tool("tpm2_pcrextend")
    doc = releases_doc(**releases)
    key = rsa_key()
    (d / "k.pem").write_bytes(pem_private(key))
    (d / "pub.pem").write_bytes(pem_public(key))
    (d / "rel.json").write_text(json.dumps(doc))
    if revoke_first:
        revoked = json.loads(json.dumps(doc))
        revoked["releases"][0]["allowed"] = False
        (d / "rel2.json").write_text(json.dumps(revoked))
    if secret is not None:
        (d / "secret.bin").write_bytes(secret)
    pcrtool("policy", "approve", "-r", d / "rel.json", "-k", d / "k.pem", "-o", d / "a.pcrsig", check=0)
    return doc


def boot(sw, doc: dict, index: int, *, unclean: bool = False) -> None:
    """Reboot swtpm and measure release ``index`` of a releases document (``pcrs`` + ``releases``
    with ``measurements``: pcr and per-bank digests, extended in order) with tpm2_pcrextend."""
    sw.reset_unclean() if unclean else sw.reboot()
    args = []
    for m in doc["releases"][index]["measurements"]:
        banks = ",".join(f"{b}={m[b]}" for b in ("sha1", "sha256", "sha384", "sha512") if b in m)
        args.append(f"{m['pcr']}:{banks}")
    for a in args:   # one call per measurement keeps the order explicit
        tpm2_tools(sw, "tpm2_pcrextend", a)


# --- an active interposer (issue 13 finding 10) ---------------------------------------------------

TPM_RH_NULL = 0x40000007
TPM_SE_POLICY = 0x01


class UnsaltingInterposer:
    """A device on the bus that rewrites pcrtool's salted policy-session StartAuthSession into an
    unsalted, unbound one (its session key is then empty: known to everybody), lets pcrtool satisfy
    the policy, and before pcrtool's TPM2_Unseal sends its own TPM2_Unseal on that session, without
    parameter encryption and with an empty HMAC. ``stolen`` collects what the TPM gave it."""

    def __init__(self) -> None:
        self.rewritten = 0
        self.hijacked: set[int] = set()
        self.stolen: list[bytes] = []
        self.answers: list[int] = []    # return codes of the injected Unseals
        self._pending = False

    def install(self, proxy: TpmProxy) -> "UnsaltingInterposer":
        proxy.tamper_command, proxy.tamper_response = self.on_command, self.on_response
        return self

    def on_command(self, cmd: bytes, send) -> bytes:
        x = Exchange(0, 0, cmd, b"", 0.0, 0.0)
        if x.cc == CC["StartAuthSession"]:
            params = x.parameters()
            (nlen,) = struct.unpack(">H", params[:2])
            salt_at = 2 + nlen
            (slen,) = struct.unpack(">H", params[salt_at:salt_at + 2])
            rest = params[salt_at + 2 + slen:]
            tpm_key, bind = x.handles
            if rest[0] == TPM_SE_POLICY and tpm_key != TPM_RH_NULL:
                auth_area = cmd[18:len(cmd) - len(params)]
                body = struct.pack(">II", TPM_RH_NULL, bind) + auth_area + params[:salt_at] + b"\0\0" + rest
                self._pending = True
                self.rewritten += 1
                return struct.pack(">HII", x.tag, 10 + len(body), x.cc) + body
        elif x.cc == CC["Unseal"]:
            for sess in x.sessions():
                if sess.handle in self.hijacked:
                    self._steal(x.handles[0], sess.handle, send)
        return cmd

    def on_response(self, cmd: bytes, resp: bytes) -> bytes:
        if self._pending and struct.unpack(">I", cmd[6:10])[0] == CC["StartAuthSession"]:
            self._pending = False
            if struct.unpack(">I", resp[6:10])[0] == 0:
                self.hijacked.add(struct.unpack(">I", resp[10:14])[0])
        return resp

    def _steal(self, item: int, session: int, send) -> None:
        nonce = os.urandom(16)
        auth = struct.pack(">IH", session, len(nonce)) + nonce + struct.pack(">BH", 0x01, 0)  # continueSession
        body = struct.pack(">II", item, len(auth)) + auth
        resp = send(struct.pack(">HII", ST_SESSIONS, 10 + len(body), CC["Unseal"]) + body)
        rc = struct.unpack(">I", resp[6:10])[0] if len(resp) >= 10 else -1
        self.answers.append(rc)
        if rc == 0:   # parameterSize(4), outData TPM2B
            (dlen,) = struct.unpack(">H", resp[14:16])
            self.stolen.append(resp[16:16 + dlen])
