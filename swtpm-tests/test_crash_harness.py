"""Crash harness: SIGKILL pcrtool after the N-th TPM command of enrol, allowlist update and
advance-floor, for every N (counted at a logging proxy on the TPM bus), then reboot swtpm cleanly
(TPM2_Shutdown, _TPM_Init, Startup) and uncleanly (a power loss), and check what the device is
left with: the newest approved release still unlocks (right after the crash, and after re-running
the interrupted command), and no revoked release unlocks once the command completed.

Every N is run. The checks after a crash are run once per distinct post-crash state: the TPM's
persistent state after a prefix of commands only changes at commands that write NV, hierarchies
or persistent objects, or that fail (dictionary-attack state), and pcrtool's files are compared by
content; two kill points with the same state-changing prefix and the same files leave the device
in the same state after the reboot, so their verdict is the same. Only the CLI is used.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from tpm_proxy import TpmProxy, approved_releases, boot, pcrtool, pcrtool_popen  # noqa: E402

SECRET = bytes(range(0x90, 0xB0))
# TPM 2.0 Part 3 commands whose effect survives a reboot
PERSISTENT = {"NV_DefineSpace", "NV_UndefineSpace", "NV_UndefineSpaceSpecial", "NV_Increment", "NV_Write",
              "NV_Extend", "NV_SetBits", "NV_WriteLock", "NV_GlobalWriteLock", "NV_ChangeAuth", "EvictControl",
              "HierarchyChangeAuth", "HierarchyControl", "Clear", "ClearControl", "ChangeEPS", "ChangePPS",
              "SetPrimaryPolicy", "DictionaryAttackLockReset", "DictionaryAttackParameters", "ClockSet",
              "PCR_Allocate", "PP_Commands", "SetCommandCodeAuditStatus", "FieldUpgradeStart"}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Key, releases (svn 1, 2, 3; a revoking allowlist without svn 1), approvals, secret."""
    d = tmp_path_factory.mktemp("crash-base")
    doc = approved_releases(d, svns=(1, 2, 3), secret=SECRET, revoke_first=True)
    return d, doc


def _files(work: Path) -> tuple:
    return tuple(sorted((p.name, hashlib.sha256(p.read_bytes()).hexdigest()) for p in work.iterdir() if p.is_file()))


def _state_key(exchanges, work: Path) -> tuple:
    changed = tuple((x.name, x.rc) for x in exchanges if x.name in PERSISTENT or x.rc != 0)
    return changed, _files(work)


def _unlocks(tcti, work: Path, enrollment: str, signed: bool) -> bool:
    args = ("-a", work / "a.pcrsig") if signed else ()
    p = pcrtool("tpm", "unlock", "--tcti", tcti, "-e", work / enrollment, *args, "-o", work / "unlocked.bin")
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    if p.returncode == 0:
        ok = (work / "unlocked.bin").read_bytes() == SECRET
        (work / "unlocked.bin").unlink()
        assert ok, "unlock returned another secret"
        return True
    assert p.returncode in (1, 4), p.stderr
    return False


def _cell(sw, tcti, work: Path, doc: dict, index: int, *, unlocks: bool, problem: str) -> list[str]:
    """Boot release ``index`` and unlock e.json with the approvals: ``[problem]`` unless the outcome
    is ``unlocks``."""
    boot(sw, doc, index)
    return [] if _unlocks(tcti, work, "e.json", True) == unlocks else [problem]


class Harness:
    """One operation: its pre-state (swtpm state dir + files), the command, and the checks."""

    def __init__(self, tmp: Path, base_dir: Path, doc: dict) -> None:
        self.tmp, self.base_dir, self.doc = tmp, base_dir, doc
        self.state0 = tmp / "state0"
        self.work0 = tmp / "work0"
        shutil.copytree(base_dir, self.work0)
        self.runs = 0

    def prepare(self, setup) -> None:
        """Run ``setup(sw, work)`` on a fresh swtpm whose state is kept as the pre-state."""
        from pcrtool.swtpm import Swtpm
        with Swtpm.start(state_dir=self.state0) as sw:
            setup(sw, self.work0)

    def copy(self, name: str) -> tuple[Path, Path]:
        state, work = self.tmp / f"state-{name}", self.tmp / f"work-{name}"
        shutil.copytree(self.state0, state)
        shutil.copytree(self.work0, work)
        return state, work

    def sweep(self, argv, before, verify) -> dict:
        """Count the commands of one undisturbed run, then kill after every N; returns a summary.

        ``argv(tcti, work)``: the pcrtool arguments; ``before(sw)``: what happens before the command
        (e.g. booting a release); ``verify(tcti, sw, work, rebooted)``: problems (strings) found on
        the rebooted device."""
        from pcrtool.swtpm import Swtpm

        total, names = self._run(argv, before, verify, "complete")
        verdicts: dict[tuple, list[str]] = {}
        problems: list[str] = []
        for n in range(1, total + 1):
            state, work = self.copy(f"n{n}")
            with Swtpm.start(state_dir=state) as sw:
                before(sw)
                with TpmProxy(sw) as proxy:
                    proc = pcrtool_popen(*argv(proxy.tcti, work))
                    proxy.kill_after(n, proc.pid)
                    proc.communicate(timeout=120)
                    proxy.wait_idle()
                    exchanges = list(proxy.exchanges)
                key = _state_key(exchanges, work)
                if key not in verdicts:
                    verdicts[key] = self._both_reboots(sw, state, work, verify, f"n{n}")
                for p in verdicts[key]:
                    problems.append(f"killed after #{n} ({names[n - 1]}): {p}")
            shutil.rmtree(state, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
        return {"commands": total, "names": names, "distinct_states": len(verdicts), "problems": problems}

    def assert_sweep(self, argv, before, verify) -> None:
        """``sweep`` and print its report; no kill point may leave a problem."""
        summary = self.sweep(argv, before, verify)
        print(_report(summary))
        assert not summary["problems"], _report(summary)

    def _run(self, argv, before, verify, name):
        from pcrtool.swtpm import Swtpm
        state, work = self.copy(name)
        with Swtpm.start(state_dir=state) as sw:
            before(sw)
            with TpmProxy(sw) as proxy:
                pcrtool(*argv(proxy.tcti, work), check=0)
                proxy.wait_idle()
                names = proxy.names()
            bad = verify(sw.tcti, sw, work, "clean")
            assert not bad, f"the undisturbed run already fails: {bad}"
        return len(names), names

    def _both_reboots(self, sw, state: Path, work: Path, verify, name: str) -> list[str]:
        """Clean reboot of this swtpm; a power loss of a copy of it (state and files copied now)."""
        from pcrtool.swtpm import Swtpm
        lost_state, lost_work = self.tmp / f"lost-{name}", self.tmp / f"lostw-{name}"
        shutil.copytree(state, lost_state)
        shutil.copytree(work, lost_work)
        sw.reboot()
        out = [f"clean reboot: {p}" for p in verify(sw.tcti, sw, work, "clean")]
        with Swtpm.start(state_dir=lost_state) as lost:
            lost.reset_unclean()
            out += [f"power loss: {p}" for p in verify(lost.tcti, lost, lost_work, "unclean")]
        shutil.rmtree(lost_state, ignore_errors=True)
        shutil.rmtree(lost_work, ignore_errors=True)
        return out


def _report(summary: dict) -> str:
    return (f"{summary['commands']} commands ({' '.join(summary['names'])}), {summary['distinct_states']} "
            f"distinct post-crash states:\n" + "\n".join(summary["problems"]))


@pytest.mark.slow
def test_kill_during_signed_enrol(base, tmp_path):
    """Enrol with --floor 2 is killed; enrolling again (with the override the error names, if the
    design asks for one: the first enrolment never finished) accepts svn 3 and refuses svn 1."""
    base_dir, doc = base
    h = Harness(tmp_path, base_dir, doc)
    h.prepare(lambda sw, work: None)

    def argv(tcti, work):
        out = "e.json" if not (work / "e.json").exists() else "e-again.json"
        return ("tpm", "enroll", "--tcti", tcti, "-k", work / "pub.pem", "--floor", 2, "--window", 4,
                "--secret", work / "secret.bin", "-o", work / out)

    def verify(tcti, sw, work, how):
        if not (work / "e.json").exists():   # the interrupted enrolment left no file: enrol again
            p = pcrtool(*argv(tcti, work))
            override = re.search(r"--floor (\d+) --revive (\S+?)\)?(?:\s|$)", p.stderr)
            if p.returncode and override:
                # the counter exists and no enrollment says what its floor is: the design asks the
                # operator to name the svns that unlock again; the floor of the first try is named
                if int(override.group(1)) != 2:
                    return [f"the suggested override lowers the floor: {p.stderr.strip()}"]
                p = pcrtool(*argv(tcti, work), "--revive", override.group(2))
            if p.returncode:
                return [f"enrolling again fails: {p.stderr.strip()}"]
        return (_cell(sw, tcti, work, doc, 2, unlocks=True, problem="svn 3 does not unlock")
                + _cell(sw, tcti, work, doc, 0, unlocks=False, problem="svn 1 (below the floor 2) unlocks"))

    h.assert_sweep(argv, lambda sw: None, verify)


@pytest.mark.slow
def test_kill_during_advance_floor(base, tmp_path):
    """advance-floor 1 → 3 is killed; svn 3 keeps unlocking, the floor is between 1 and 3, and the
    re-run ends at 3 with svn 2 refused."""
    base_dir, doc = base
    h = Harness(tmp_path, base_dir, doc)
    h.prepare(lambda sw, work: pcrtool("tpm", "enroll", "--tcti", sw.tcti, "-k", work / "pub.pem", "--floor", 1,
                                       "--window", 4, "--secret", work / "secret.bin", "-o", work / "e.json",
                                       check=0))

    def argv(tcti, work):
        return ("tpm", "advance-floor", "--tcti", tcti, "-e", work / "e.json", "--to", 3, "-a", work / "a.pcrsig",
                "--json=short")

    def verify(tcti, sw, work, how):
        problems = _cell(sw, tcti, work, doc, 2, unlocks=True, problem="svn 3 does not unlock after the crash")
        p = pcrtool(*argv(tcti, work))
        if p.returncode:
            return problems + [f"re-running advance-floor fails: {p.stderr.strip()}"]
        out = json.loads(p.stdout)
        if not 1 <= out["old_floor"] <= 3 or out["floor"] != 3:
            problems.append(f"floor after the crash {out['old_floor']}, after the re-run {out['floor']}")
        if not _unlocks(tcti, work, "e.json", True):
            problems.append("svn 3 does not unlock after the re-run")
        return problems + _cell(sw, tcti, work, doc, 1, unlocks=False, problem="svn 2 (revoked) unlocks")

    h.assert_sweep(argv, lambda sw: boot(sw, doc, 2), verify)


@pytest.mark.slow
def test_kill_during_allowlist_update(base, tmp_path):
    """`enroll --update` (allowlist direct, revoking svn 1) is killed; some enrollment file still
    unlocks the newest release, and once the update is run again svn 1 unlocks with no file."""
    base_dir, doc = base
    h = Harness(tmp_path, base_dir, doc)
    h.prepare(lambda sw, work: pcrtool("tpm", "enroll", "--tcti", sw.tcti, "--allowlist", work / "rel.json",
                                       "--secret", work / "secret.bin", "-o", work / "e.json", check=0))

    def argv(tcti, work):
        return ("tpm", "enroll", "--tcti", tcti, "--allowlist", work / "rel2.json", "--update", work / "e.json",
                "-o", work / "e2.json")

    def verify(tcti, sw, work, how):
        boot(sw, doc, 2)
        usable = [f for f in ("e2.json", "e.json") if (work / f).exists() and _unlocks(tcti, work, f, False)]
        if not usable:
            return ["no enrollment file unlocks the newest release (locked out: recovery key only)"]
        problems = []
        # the operator runs the interrupted update again, from the newest file that unlocks
        p = pcrtool("tpm", "enroll", "--tcti", tcti, "--allowlist", work / "rel2.json", "--update", work / usable[0],
                    "-o", work / "e3.json")
        if p.returncode:
            return [f"re-running the update from {usable[0]} fails: {p.stderr.strip()}"]
        if not _unlocks(tcti, work, "e3.json", False):
            problems.append("the updated enrollment does not unlock the newest release")
        boot(sw, doc, 0)
        for f in ("e.json", "e2.json", "e3.json"):
            if (work / f).exists() and _unlocks(tcti, work, f, False):
                problems.append(f"svn 1 (revoked by the update) unlocks with {f}")
        return problems

    h.assert_sweep(argv, lambda sw: boot(sw, doc, 2), verify)
