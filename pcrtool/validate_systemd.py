"""systemd's own unlock, validated on swtpm: emulate each release's boot into a software TPM and
let the real systemd tools decide (an adapter: runs systemd-cryptenroll, systemd-creds and
systemd-pcrlock through a command prefix, e.g. the sid chroot, and swtpm through pcrtool.swtpm).

Scenarios (each cell: expected vs actual, actual = systemd's exit status):

* ``signed`` — a LUKS2 image file enrolled with ``systemd-cryptenroll --tpm2-public-key=…
  --tpm2-public-key-pcrs=…`` and unlocked (``--unlock-tpm2-device``) with pcrtool's plain
  approvals (``policy approve --no-svn``): every approved release unlocks, including older ones —
  a signed policy has no floor. The ``pcrtool floor`` column says what pcrtool's own unlock does
  with its floor at the newest release's svn.
* ``signed-creds`` — the same with ``systemd-creds encrypt/decrypt --tpm2-public-key``.
* ``signed-svn`` — enrolled with ``--tpm2-public-key-policyref=pcrtool-svn=<newest svn>,bank=sha256,
  pcrs=<PCRs>`` (pcrtool's scoped ref) and
  pcrtool's svn approvals: systemd matches the policyRef exactly, so only releases of that very
  svn unlock (older are refused; so would be newer ones, until re-enrolled).
* ``pcrlock`` — pcrtool's pcrlock.d tree (one variant per allowlisted release), ``systemd-pcrlock
  make-policy`` on a boot of the newest release, ``systemd-cryptenroll --tpm2-pcrlock``; then the
  oldest release's variants are removed and make-policy is run again: that release is refused
  from then on (``pcrlock-after-removal``), the others still unlock.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from pcrtool.errors import ToolError
from pcrtool.model import HashAlg


@dataclass
class Boot:
    """One boot to emulate: its events, its logs, its pcrlock variant."""

    id: str
    svn: int
    kind: str                                  # "allowlisted", "unknown" (not allowlisted), "tampered"
    events: list                               # [(pcr, {HashAlg: digest})] in order
    firmware_log: bytes
    userspace_log: bytes = b""
    variant: dict = field(default_factory=dict)  # component id -> PcrlockFile

    @property
    def allowed(self) -> bool:
        return self.kind == "allowlisted"

    def pcr_values(self, pcrs: Sequence[int], bank: HashAlg = HashAlg.SHA256) -> dict[int, bytes]:
        from pcrtool.eventlog.replay import Replayer, initial_pcr_value
        replayer = Replayer([bank])
        for i, (pcr, digests) in enumerate(self.events):
            if pcr in pcrs and bank in digests:
                replayer.extend(i, pcr, digests)
        return {p: replayer.values[bank].get(p) or initial_pcr_value(bank, p) for p in pcrs}


@dataclass
class Cell:
    scenario: str
    release: str
    expected: str
    actual: str
    detail: str = ""
    floor: str = ""
    policy_reading: str = ""   # pcrlock cells: what pcrtool reads from systemd's pcrlock.json

    @property
    def ok(self) -> bool:
        return self.expected == self.actual and self.policy_reading in ("", self.expected)


@dataclass
class MatrixSet:
    name: str
    pcrs: tuple[int, ...]
    cells: list[Cell] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    systemd_version: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)

    def to_json(self) -> dict:
        return {"name": self.name, "pcrs": list(self.pcrs), "ok": self.ok, "systemd": self.systemd_version,
                "cells": [c.__dict__ | {"ok": c.ok} for c in self.cells], "notes": self.notes}


# --- boots ---------------------------------------------------------------------------------------

def _userspace_record(pcr: int, digests: dict, text: str) -> bytes:
    rec = {"pcr": pcr, "digests": [{"hashAlg": a.bank_name, "digest": d.hex()} for a, d in digests.items()],
           "content_type": "systemd", "content": {"string": text, "eventType": "phase"}}
    return b"\x1e" + json.dumps(rec).encode() + b"\n"


def demo_boots(spec: dict, banks: Sequence[HashAlg], phase: str = "enter-initrd") -> list[Boot]:
    """The demo releases (UKI sections inline): PCR 11 from the stub (firmware log) and the phase
    (userspace log); plus a tampered boot (an allowlisted release with its .cmdline changed)."""
    from pcrtool.pcrlock import PcrlockFile, Record
    from pcrtool.predict.emulate import event_log_bytes
    from pcrtool.predict.uki import phase_measurements, section_measurements

    def boot(rid, svn, kind, sections):
        stub = section_measurements(sections, banks)
        ph = phase_measurements(phase, banks)
        events = [(m.pcr, dict(m.digests)) for m in stub + ph]
        us = b"".join(_userspace_record(m.pcr, dict(m.digests), m.data.decode()) for m in ph)
        allb = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
        variant = PcrlockFile(tuple(Record.of_measurement(m, allb)
                                    for m in section_measurements(sections, allb)))
        return Boot(rid, svn, kind, events, event_log_bytes(stub, banks), us, {"650-uki": variant})

    out = []
    for r in spec["releases"]:
        sections = {k: v.encode() for k, v in r["sections"].items()}
        out.append(boot(f"{r['name']} {r['version']}", int(r["svn"]),
                        "allowlisted" if r.get("allowed", True) else "unknown", sections))
    first = next(r for r in spec["releases"] if r.get("allowed", True))
    tampered = {k: v.encode() for k, v in first["sections"].items()}
    tampered[".cmdline"] = tampered.get(".cmdline", b"") + b" init=/bin/sh"
    out.append(boot(f"{first['name']} {first['version']} (tampered .cmdline)", int(first["svn"]), "tampered", tampered))
    return out


def capture_boots(captures: Sequence[tuple[str, bytes, int, bool]], pcrs: Sequence[int]) -> list[Boot]:
    """Real firmware logs (``(id, log bytes, svn, allowlisted)``): a boot replays every extended
    event of its log; its pcrlock variant ("600-boot") is every record of the log on ``pcrs``
    (digests in systemd's order). Plus a tampered boot: the first allowlisted log with its last
    PCR 4 event's digests changed."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.pcrlock import PcrlockFile, Record

    out = []
    for cid, data, svn, allowed in captures:
        log = parse_event_log(data, source=cid)
        events = [(e.pcr, dict(e.digests)) for e in log.events if e.is_extended and e.digests]
        variant = PcrlockFile(tuple(Record(e.pcr, tuple(reversed(list(e.digests.items()))))
                                    for e in log.events if e.is_extended and e.pcr in pcrs))
        out.append(Boot(cid, svn, "allowlisted" if allowed else "unknown", events, data, b"", {"600-boot": variant}))
    base = next(b for b in out if b.allowed)
    events = list(base.events)
    idx = max(i for i, (p, _) in enumerate(events) if p == 4)
    events[idx] = (4, {a: a.digest(b"tampered " + d) for a, d in events[idx][1].items()})
    out.append(Boot(f"{base.id} (tampered PCR 4 image)", base.svn, "tampered", events, _relog(base.firmware_log, idx), b"",
                    base.variant))
    return out


def _relog(data: bytes, index: int) -> bytes:
    """``data`` with the digests of its ``index``-th extended event replaced as capture_boots does."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.predict.emulate import event_log_bytes
    from pcrtool.predict.events import Measurement

    log = parse_event_log(data)
    evs = [e for e in log.events if e.is_extended and e.digests]
    banks = list(evs[0].digests)
    ms = []
    for i, e in enumerate(evs):
        d = dict(e.digests)
        if i == index:
            d = {a: a.digest(b"tampered " + v) for a, v in d.items()}
        ms.append(Measurement(e.pcr, d, e.event_type, "", e.data))
    return event_log_bytes(ms, banks)


# --- running systemd ------------------------------------------------------------------------------

class Systemd:
    """systemd's tools behind a command prefix (``[]`` = this machine; e.g. the sid chroot's
    ``bash .ci/sid-chroot run``); paths are passed unchanged, so work under /tmp."""

    def __init__(self, prefix: Sequence[str]) -> None:
        self.prefix = list(prefix)
        self.log: list[str] = []

    def run(self, *args, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        argv = [*self.prefix, "env", *[f"{k}={v}" for k, v in (env or {}).items()], *map(str, args)]
        self.log.append(" ".join(shlex.quote(a) for a in argv[len(self.prefix):]))
        try:
            return subprocess.run(argv, capture_output=True, text=True, input=input, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ToolError(f"cannot run {args[0]}: {e}") from None

    def must(self, *args, **kw) -> subprocess.CompletedProcess:
        p = self.run(*args, **kw)
        if p.returncode != 0:
            raise ToolError(f"{args[0]} {args[1] if len(args) > 1 else ''} failed ({p.returncode}): "
                            f"{p.stderr.strip()[-400:]}", hint="see the command in --debug output")
        return p

    def version(self) -> str:
        p = self.run("systemctl", "--version")
        return p.stdout.split("\n", 1)[0].strip() if p.returncode == 0 else "unknown"


class Machine:
    """A swtpm plus the boot currently emulated into it."""

    def __init__(self, work: Path) -> None:
        from pcrtool.swtpm import Swtpm
        from pcrtool.tpm import open_tpm

        self.work = work
        self.sw = Swtpm.start()
        with open_tpm(self.sw.tcti) as tpm:
            self.banks = list(tpm.banks())
        self.device = f"swtpm:path={self.sw.tmpdir / 'tpm.sock'}"

    def boot(self, b: Boot) -> dict:
        from pcrtool.tpm import open_tpm

        self.sw.reboot()
        with open_tpm(self.sw.tcti) as tpm:
            for pcr, digests in b.events:
                tpm.extend(pcr, {a: d for a, d in digests.items() if a in self.banks})
        (self.work / "firmware.log").write_bytes(b.firmware_log)
        (self.work / "userspace.log").write_bytes(b.userspace_log)
        return {"SYSTEMD_MEASURE_LOG_FIRMWARE": self.work / "firmware.log",
                "SYSTEMD_MEASURE_LOG_USERSPACE": self.work / "userspace.log",
                "SYSTEMD_TPM2_DEVICE": self.device, "SYSTEMD_LOG_LEVEL": "info"}

    def stop(self) -> None:
        self.sw.stop()


def _luks(sd: Systemd, work: Path, name: str) -> tuple[Path, Path]:
    img, key = work / f"{name}.luks", work / f"{name}.key"
    key.write_text("pcrtool validate-systemd\n")
    key.chmod(0o600)
    img.unlink(missing_ok=True)
    with open(img, "wb") as f:
        f.truncate(20 << 20)
    sd.must("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
            "--pbkdf-force-iterations", "1000", img, key)
    return img, key


def _unlock_luks(sd: Systemd, m: Machine, env: dict, img: Path, *, signature: Path | None = None,
                 pcrlock: Path | None = None) -> tuple[str, str]:
    """systemd-cryptenroll unlocks the volume with its TPM2 token (then adds a recovery key: cheap
    PBKDF). Unlocking reads the signature and the pcrlock policy from their default places
    (/run/systemd/tpm2-pcr-signature.json, /run/systemd/pcrlock.json), which a private mount
    namespace provides here."""
    setup = ["mkdir -p /run/systemd", "mount -t tmpfs pcrtool /run/systemd"]
    if signature is not None:
        setup.append(f"cp {shlex.quote(str(signature))} /run/systemd/tpm2-pcr-signature.json")
    if pcrlock is not None:
        setup.append(f"cp {shlex.quote(str(pcrlock))} /run/systemd/pcrlock.json")
    script = " && ".join(setup) + ' && exec "$@"'
    # inside a chroot the root is no mount point: keep the (already private) propagation there
    prop = ["--propagation", "unchanged"] if sd.prefix else []
    p = sd.run("unshare", "-m", *prop, "sh", "-c", script, "sh", "systemd-cryptenroll", f"--unlock-tpm2-device={m.device}",
               "--recovery-key", img, env=env)
    last = (p.stderr.strip().splitlines() or [""])[-1]
    return ("unlock" if p.returncode == 0 else "refuse"), (f"exit {p.returncode}" + (f": {last[:120]}" if p.returncode else ""))


# --- the matrix ----------------------------------------------------------------------------------

def run_matrix(name: str, boots: list[Boot], sd: Systemd, work: Path, *, pcrs: Sequence[int],
               components: Sequence[str], location: str | None, scenarios: Sequence[str],
               sign_key, approve: Callable[[list[Boot], bool, Path], Path]) -> MatrixSet:
    """Every scenario for ``boots`` on one swtpm. ``approve(boots, svn, out)`` writes approvals
    (pcrtool policy approve) for the allowlisted boots; ``sign_key`` is (private PEM, public PEM)."""
    from pcrtool.pcrlock.tree import tree_files

    res = MatrixSet(name, tuple(pcrs), systemd_version=sd.version())
    allowed = [b for b in boots if b.allowed]
    newest = max(allowed, key=lambda b: b.svn)
    oldest = min(allowed, key=lambda b: b.svn)
    pcr_arg = "+".join(map(str, pcrs))
    # What a policy over ``pcrs`` can tell apart: expectations follow the values, and a boot that
    # is not allowlisted but has an allowlisted boot's values is named (no policy could refuse it).
    vals = {id(b): tuple(b.pcr_values(pcrs)[p] for p in pcrs) for b in boots}
    for b in boots:
        twin = next((a for a in allowed if a is not b and vals[id(a)] == vals[id(b)]), None)
        if twin is not None and not b.allowed:
            res.notes.append(f"{b.id} is not allowlisted but has the PCR {pcr_arg} values of {twin.id}: "
                             f"no policy over these PCRs can refuse it")

    def signed_expect(b: Boot, among: list[Boot]) -> str:
        return "unlock" if vals[id(b)] in {vals[id(a)] for a in among} else "refuse"

    def pcrlock_expect(b: Boot, among: list[Boot]) -> str:  # AND over PCRs of OR over values
        return "unlock" if all(vals[id(b)][i] in {vals[id(a)][i] for a in among} for i in range(len(pcrs))) \
            else "refuse"

    m = Machine(work)
    try:
        priv, pub = sign_key
        if "signed" in scenarios or "signed-svn" in scenarios:
            for svn_mode in [s for s in ("signed", "signed-svn") if s in scenarios]:
                approvals = approve(boots, svn_mode == "signed-svn", work / f"{svn_mode}.pcrsig")
                img, key = _luks(sd, work, svn_mode)
                env = m.boot(newest)
                # pcrtool's ref (pcrtool.policy.scope): svn, bank and PCR selection of the sha256 entries
                ref = f"pcrtool-svn={newest.svn},bank=sha256,pcrs={pcr_arg}"
                extra = [f"--tpm2-public-key-policyref={ref}"] if svn_mode == "signed-svn" else []
                sd.must("systemd-cryptenroll", f"--unlock-key-file={key}", f"--tpm2-device={m.device}",
                        f"--tpm2-public-key={pub}", f"--tpm2-public-key-pcrs={pcr_arg}", "--tpm2-pcrs=",
                        f"--tpm2-signature={approvals}", *extra, img, env=env)
                for b in boots:
                    env = m.boot(b)
                    actual, detail = _unlock_luks(sd, m, env, img, signature=approvals)
                    if svn_mode == "signed":
                        expected = signed_expect(b, allowed)
                    else:
                        expected = signed_expect(b, [a for a in allowed if a.svn == newest.svn])
                    floor = (signed_expect(b, [a for a in allowed if a.svn >= newest.svn]))
                    res.cells.append(Cell(svn_mode, b.id, expected, actual, detail, floor))
        if "signed-creds" in scenarios:
            approvals = approve(boots, False, work / "creds.pcrsig")
            env = m.boot(newest)
            cred = work / "secret.cred"
            # --with-key=tpm2 would silently ignore --tpm2-public-key (no PCR binding at all)
            sd.must("systemd-creds", "encrypt", "--with-key=tpm2-with-public-key", f"--tpm2-device={m.device}",
                    f"--tpm2-public-key={pub}", f"--tpm2-public-key-pcrs={pcr_arg}", f"--tpm2-signature={approvals}",
                    "--name=pcrtool", "-", cred, env=env, input="pcrtool secret\n")
            for b in boots:
                env = m.boot(b)
                p = sd.run("systemd-creds", "decrypt", f"--tpm2-signature={approvals}", "--name=pcrtool",
                           cred, "-", env=env)
                actual = "unlock" if p.returncode == 0 and p.stdout == "pcrtool secret\n" else "refuse"
                expected = signed_expect(b, allowed)
                last = (p.stderr.strip().splitlines() or [""])[-1]
                res.cells.append(Cell("signed-creds", b.id, expected, actual,
                                      f"exit {p.returncode}" + (f": {last[:120]}" if p.returncode else ""),
                                      signed_expect(b, [a for a in allowed if a.svn >= newest.svn])))
        if "pcrlock" in scenarios:
            tree = work / "pcrlock.d"
            shutil.rmtree(tree, ignore_errors=True)
            files = tree_files([_components(b) for b in allowed])
            for rel, data in files.items():
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                (tree / rel).write_bytes(data)
            policy = work / "pcrlock.json"
            policy.unlink(missing_ok=True)
            make = ["systemd-pcrlock", "make-policy", f"--pcr={pcr_arg}", f"--policy={policy}",
                    *[f"--components={c}" for c in [*components, tree]],
                    *([f"--location={location}"] if location else [])]
            env = m.boot(newest)
            sd.must(*make, env=env)
            img, key = _luks(sd, work, "pcrlock")
            sd.must("systemd-cryptenroll", f"--unlock-key-file={key}", f"--tpm2-device={m.device}",
                    f"--tpm2-pcrlock={policy}", "--tpm2-pcrs=", img, env=env)
            for phase in ("pcrlock", "pcrlock-after-removal"):
                if phase == "pcrlock-after-removal":
                    for rel in files:
                        if rel.endswith(f"/{_components(oldest).variant}.pcrlock"):
                            (tree / rel).unlink()
                    env = m.boot(newest)
                    sd.must(*make, env=env)
                from pcrtool.model import PcrValues
                from pcrtool.pcrlock import PcrlockPolicy
                read = PcrlockPolicy.parse(policy.read_bytes(), source=str(policy))
                for b in boots:
                    values = PcrValues()
                    for pcr, v in b.pcr_values(pcrs, read.bank).items():
                        values.set(read.bank, pcr, v)
                    reading = "unlock" if read.accepts(values)[0] else "refuse"
                    env = m.boot(b)
                    actual, detail = _unlock_luks(sd, m, env, img, pcrlock=policy)
                    among = [a for a in allowed if not (phase == "pcrlock-after-removal" and a is oldest)]
                    expected = pcrlock_expect(b, among)
                    res.cells.append(Cell(phase, b.id, expected, actual, detail,
                                          signed_expect(b, [a for a in allowed if a.svn >= newest.svn]), reading))
            res.notes.append(f"pcrlock: removed {_components(oldest).variant}.pcrlock from every component, "
                             f"make-policy again: {oldest.id} is refused from then on")
    finally:
        m.stop()
    return res


def _components(b: Boot):
    from pcrtool.pcrlock.tree import ReleaseComponents
    return ReleaseComponents(b.id.replace(" ", "_"), f"svn{b.svn}", b.variant)


def approve_with_pcrtool(private_key, pcrs: Sequence[int]) -> Callable[[list[Boot], bool, Path], Path]:
    """``approve(boots, svn, out)``: pcrtool's approvals (sha256 bank) for the allowlisted boots."""
    from pcrtool.model import PcrValues
    from pcrtool.policy.approvals import Approvals, ApprovalTarget, build_entries, sign_entries

    def approve(boots: list[Boot], svn: bool, out: Path) -> Path:
        targets = []
        for b in boots:
            if not b.allowed:
                continue
            v = PcrValues()
            for pcr, value in b.pcr_values(pcrs).items():
                v.set(HashAlg.SHA256, pcr, value)
            targets.append(ApprovalTarget(v, b.svn if svn else None))
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding
        entries = sign_entries(build_entries(targets, private_key.public_key(), [HashAlg.SHA256]),
                               lambda tbs: private_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256()))
        out.write_text(Approvals(tuple(entries)).dumps())
        return out
    return approve


def sid_chroot_prefix(root: Path) -> list[str] | None:
    """``bash <repo>/.ci/sid-chroot run`` when that script exists and the chroot is built."""
    script = root / ".ci" / "sid-chroot"
    if not script.is_file():
        return None
    p = subprocess.run(["bash", str(script), "version"], capture_output=True, text=True)
    return ["bash", str(script), "run"] if p.returncode == 0 else None


def work_dir() -> Path:
    """A private directory under /tmp (bound into the sid chroot at the same path)."""
    return Path(tempfile.mkdtemp(prefix="pcrtool-systemd-", dir="/tmp" if os.path.isdir("/tmp") else None))


__all__ = ["Boot", "Cell", "MatrixSet", "Systemd", "capture_boots", "demo_boots", "run_matrix"]
