"""Shared swtpm fixtures for every swtpm test (owned by the TPM layer).

- ``swtpm``: a fresh, started :class:`pcrtool.swtpm.Swtpm` per test (about 0.05 s).
- ``swtpm_module``: one swtpm shared by a test module (for read-only or self-cleaning tests).
- ``tpm``: an open :class:`pcrtool.tpm.Tpm` on the ``swtpm`` fixture.
- ``open_tpm_on``: open a Tpm on any Swtpm, closed after the test.

A session-wide check fails the run if any swtpm started by this process is still running or left
its temp dir behind.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The suite's own helper modules (tpm_proxy, e2e_helpers, signed_policy, clevis_setup) import by
# name: this folder is on sys.path before pytest collects a test module here.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

# Offered under the same names as the root conftest, for tests that import them from "conftest".
from tests.support import need_module, need_tool  # noqa: E402,F401


def _need_swtpm() -> None:
    need_tool("swtpm")
    need_tool("swtpm_ioctl")


@pytest.fixture
def swtpm():
    _need_swtpm()
    from pcrtool.swtpm import Swtpm

    with Swtpm.start() as sw:
        yield sw


@pytest.fixture(scope="module")
def swtpm_module():
    _need_swtpm()
    from pcrtool.swtpm import Swtpm

    with Swtpm.start() as sw:
        yield sw


def _open(sw):
    need_module("tpm2_pytss")
    from pcrtool.tpm import open_tpm

    return open_tpm(sw.tcti)


@pytest.fixture
def tpm(swtpm):
    with _open(swtpm) as t:
        yield t


@pytest.fixture
def open_tpm_on():
    opened = []

    def opener(sw):
        t = _open(sw)
        opened.append(t)
        return t

    yield opener
    for t in opened:
        t.close()


def swtpm_children() -> list[int]:
    """PIDs of swtpm processes whose parent is this test process."""
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...
        comm = stat[stat.index("(") + 1: stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if comm == "swtpm" and ppid == me:
            pids.append(int(entry.name))
    return pids


def leftovers() -> list[str]:
    """Every swtpm this process started that still runs or still has its temp dir."""
    from pcrtool.swtpm import started_instances

    problems = []
    for sw in started_instances():
        if sw.running:
            problems.append(f"swtpm pid {sw.pid} still running")
        if sw.tmpdir.exists():
            problems.append(f"temp dir {sw.tmpdir} left behind")
    problems += [f"orphan swtpm child pid {pid}" for pid in swtpm_children()
                 if pid not in {sw.pid for sw in started_instances() if sw.running}]
    return problems


@pytest.fixture(scope="session", autouse=True)
def _no_swtpm_leftovers():
    yield
    problems = leftovers()
    assert not problems, "swtpm leftovers: " + "; ".join(problems)


@pytest.fixture(scope="module", autouse=True)
def _lockout_counter_unchanged():
    """TPM_PT_LOCKOUT_COUNTER (raw TPM2_GetCapability, about 1 ms) of every swtpm a test module
    starts in this process: read after start and before stop, it must not have moved. Tests that
    trip dictionary-attack protection on purpose call ``tpm_proxy.excuse_lockout(sw)``."""
    import tpm_proxy
    from pcrtool.swtpm import Swtpm

    seen: dict[int, list] = {}
    start, stop = Swtpm.__dict__["start"], Swtpm.stop

    def counted_start(cls, *a, **kw):
        sw = start.__func__(cls, *a, **kw)
        seen[id(sw)] = [sw, tpm_proxy.try_lockout_counter(sw), None]
        return sw

    def counted_stop(self):
        rec = seen.get(id(self))
        if rec is not None and rec[2] is None:
            rec[2] = tpm_proxy.try_lockout_counter(self)
        stop(self)

    Swtpm.start, Swtpm.stop = classmethod(counted_start), counted_stop
    try:
        yield
    finally:
        Swtpm.start, Swtpm.stop = start, stop
    moved = []
    for sw, before, after in seen.values():
        if after is None:
            after = tpm_proxy.try_lockout_counter(sw)
        if before is not None and after is not None and after != before and not tpm_proxy.is_excused(sw):
            moved.append(f"{sw.tmpdir.name}: {before} → {after}")
    assert not moved, "TPM_PT_LOCKOUT_COUNTER moved (dictionary-attack side effect): " + "; ".join(moved)
