"""Test support for pcrtool's suites (tests/, swtpm-tests/): tools and modules a test needs,
the shared corpus, a throw-away SoftHSM2 token (``tests.support.softhsm``) and one way to run the
CLI (``tests.support.cli``). Not part of the installed package.

Under ``CI=true`` a missing external tool or module fails the test instead of skipping it, so a
CI machine that lacks a package can never pass silently.
"""

from __future__ import annotations

import os

from pcrtool.tools import find_tool


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tool(name: str) -> str:
    """Path of an external tool; skip without it (fail under CI=true)."""
    import pytest

    path = find_tool(name)
    if path is None:
        msg = f"{name} is not installed (run .ci/install-system-deps)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def need_module(name: str):
    """Import an optional Python module; skip without it (fail under CI=true)."""
    import importlib

    import pytest

    try:
        return importlib.import_module(name)
    except ImportError as e:
        if in_ci():
            pytest.fail(f"python module {name} missing: {e}")
        pytest.skip(f"python module {name} missing")


def modules_imported(code: str, names) -> list[str]:
    """Run ``code`` in a new interpreter (it inherits PYTHONPATH) and return which of ``names`` it
    left in ``sys.modules``, sorted: the check that a pure or fast path loads no impure or heavy
    module. A failing ``code`` fails the test."""
    import subprocess
    import sys

    probe = f"{code}\nimport sys as _sys\nprint(','.join(sorted(m for m in {list(names)!r} if m in _sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    return last.split(",") if last else []


def corpus_root():
    """The shared public event-log corpus: ``$PCRTOOL_CORPUS`` or ``../shared/eventlogs-corpus``
    beside the source tree (tests read it by path; it is never copied into the project)."""
    from pathlib import Path

    env = os.environ.get("PCRTOOL_CORPUS")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "eventlogs-corpus").resolve()


def corpus_log_names(root=None) -> list[str]:
    """Every file PROVENANCE.tsv marks as a log (role ``log``), sorted; [] without the corpus."""
    path = (root or corpus_root()) / "PROVENANCE.tsv"
    if not path.is_file():
        return []
    names = []
    for line in path.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) > 7 and cols[7] == "log":
            names.append(cols[0])
    return sorted(names)


class SidSystemd:
    """The newest systemd's tools, run inside the Debian sid chroot that ``.ci/sid-chroot`` builds.

    /tmp and the source tree are bound at the same paths inside, so pytest's ``tmp_path`` files and
    swtpm sockets pass through unchanged. The chroot starts with an empty environment: pass
    variables (``SYSTEMD_MEASURE_LOG_FIRMWARE``, ``SOURCE_DATE_EPOCH``, ...) with ``env=``.
    Tools are found by name (``systemd-pcrlock``, ``systemd-sbsign`` ...: /usr/lib/systemd is on
    PATH inside).
    """

    def __init__(self, script: str, version: str) -> None:
        self.script = script
        self.version = version  # the Debian package version, e.g. "262.1-1"
        self.major = int(version.split(".")[0].split("~")[0])

    def argv(self, *args: str, env: dict | None = None) -> list[str]:
        envs = [f"{k}={v}" for k, v in (env or {}).items()]
        return ["bash", self.script, "run", "env", *envs, *map(str, args)]

    def run(self, *args, env: dict | None = None, check: bool = True, timeout: float = 300, **kw):
        """Run one tool in the chroot (``capture_output=True, text=True`` unless overridden);
        with ``check`` a non-zero exit fails the test with the tool's stderr."""
        import subprocess

        kw.setdefault("capture_output", True)
        kw.setdefault("text", "input" not in kw or isinstance(kw["input"], str))
        proc = subprocess.run(self.argv(*args, env=env), timeout=timeout, **kw)
        if check and proc.returncode != 0:
            import pytest

            err = proc.stderr if isinstance(proc.stderr, str) else (proc.stderr or b"").decode(errors="replace")
            pytest.fail(f"systemd {self.version}: {' '.join(map(str, args))} exited {proc.returncode}: {err[-2000:]}")
        return proc


_SID: list = []


def sid_systemd_version() -> str | None:
    """systemd's package version inside the sid chroot, or None when the chroot is not built."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / ".ci" / "sid-chroot"
    if not script.is_file():
        return None
    try:
        proc = subprocess.run(["bash", str(script), "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def need_sid_systemd(min_major: int = 258) -> SidSystemd:
    """The sid chroot's systemd (>= ``min_major``); skip without it (fail under CI=true).

    Build it with ``bash .ci/sid-chroot build`` (.ci/setup does). The version is printed in
    pytest's header and recorded on every test that uses the ``sid_systemd`` fixture.
    """
    import pytest
    from pathlib import Path

    if not _SID:
        version = sid_systemd_version()
        script = str(Path(__file__).resolve().parents[2] / ".ci" / "sid-chroot")
        _SID.append(SidSystemd(script, version) if version else None)
    sid = _SID[0]
    msg = None
    if sid is None:
        msg = "the sid chroot with the newest systemd is not built (run: bash .ci/sid-chroot build)"
    elif sid.major < min_major:
        msg = f"the sid chroot has systemd {sid.version}, need >= {min_major}"
    if msg:
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return sid
