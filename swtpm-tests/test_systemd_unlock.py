"""systemd's own unlock on swtpm (`pcrtool validate-systemd`, newest systemd from the sid chroot):
the bundled demo releases and the real OVMF captures, every scenario — signed policies with
pcrtool's approvals through systemd-cryptenroll and systemd-creds (plain and svn policyRef),
pcrlock with a pcrtool pcrlock.d tree made into a policy by systemd-pcrlock make-policy, and the
downgrade after a release's variants are removed. Every refusal is systemd's non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import need_tool
from tests.support.cli import run_pcrtool

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"signed", "signed-svn", "signed-creds", "pcrlock", "pcrlock-after-removal"}


def _run(sid, *args):
    need_tool("swtpm")
    return run_pcrtool("--json=short", "validate-systemd", "--systemd", f"bash {sid.script} run", *args, timeout=600)


def _check(proc, sid, n_boots: int, revoked: str, newest: str):
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    (matrix,) = doc["matrices"]
    print(f"systemd seen: {matrix['systemd']} (package {sid.version})")
    assert matrix["systemd"].startswith(f"systemd {sid.major}")
    cells = matrix["cells"]
    assert {c["scenario"] for c in cells} == SCENARIOS and len(cells) == len(SCENARIOS) * n_boots
    assert all(c["ok"] for c in cells)
    for c in cells:  # systemd decided: unlock = exit 0, refusal = its non-zero exit status
        assert c["detail"].startswith("exit 0" if c["actual"] == "unlock" else "exit "), c
        assert c["actual"] == "unlock" or not c["detail"].startswith("exit 0"), c
    by = {(c["scenario"], c["release"]): c["actual"] for c in cells}
    # both sides present in every scenario
    for s in SCENARIOS:
        assert {v for (sc, _), v in by.items() if sc == s} == {"unlock", "refuse"}, s
    # downgrades: a signed policy has no floor; svn policyRef and pcrlock after removal refuse
    assert by[("signed", revoked)] == "unlock" and by[("signed-creds", revoked)] == "unlock"
    assert by[("signed-svn", revoked)] == "refuse" and by[("signed-svn", newest)] == "unlock"
    assert by[("pcrlock", revoked)] == "unlock" and by[("pcrlock-after-removal", revoked)] == "refuse"
    assert by[("pcrlock-after-removal", newest)] == "unlock"
    # pcrtool reads systemd's pcrlock.json and agrees with systemd on every boot
    assert all(c["policy_reading"] == c["actual"] for c in cells if c["scenario"].startswith("pcrlock"))
    # and pcrtool's own floor (newest svn) refuses the old release that systemd's signed policy accepts
    assert next(c for c in cells if c["scenario"] == "signed" and c["release"] == revoked)["floor"] == "refuse"
    return doc


@pytest.mark.slow
def test_demo_releases(sid_systemd):
    _check(_run(sid_systemd, "--demo"), sid_systemd, 5, "demo-os 1.0", "demo-os 2.0")


@pytest.mark.slow
def test_ovmf_captures(sid_systemd):
    ev = ROOT / "eventlogs"
    proc = _run(sid_systemd, "--capture", ev / "ovmf-sb-off", "--capture", ev / "ovmf-ms-shim-grub-a",
                "--capture", ev / "ovmf-cmdline", "--capture", ev / "ovmf-sb-own",
                "--unknown", ev / "ovmf-loadopts", "--unknown", ev / "ovmf-ms-shim-grub-b")
    doc = _check(proc, sid_systemd, 7, "ovmf-sb-off", "ovmf-sb-own")
    # shim+GRUB b differs from a only outside PCRs 4, 7, 11: every policy over them lets it in, and
    # the matrix says so instead of calling it a refusal
    (matrix,) = doc["matrices"]
    assert any("ovmf-ms-shim-grub-b is not allowlisted but has the PCR 4+7+11 values of ovmf-ms-shim-grub-a" in n
               for n in matrix["notes"])
    assert {c["scenario"] for c in matrix["cells"] if c["release"] == "ovmf-ms-shim-grub-b"
            and c["actual"] == "unlock"} == SCENARIOS - {"signed-svn"}  # a's svn is not the enrolled one
    assert {c["actual"] for c in matrix["cells"] if c["release"] == "ovmf-loadopts"} == {"refuse"}


def test_usage_errors(sid_systemd):
    assert _run(sid_systemd).returncode == 2
    assert _run(sid_systemd, "--demo", "--scenario", "nope").returncode == 2
