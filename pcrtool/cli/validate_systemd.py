"""`pcrtool validate-systemd`: systemd's own unlock (systemd-cryptenroll, systemd-creds,
systemd-pcrlock) on swtpm for pcrtool's releases, approvals and pcrlock.d trees."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Validate systemd's own unlock (cryptenroll, creds, pcrlock) of pcrtool's artefacts on swtpm.")

SCENARIOS = ("signed", "signed-creds", "signed-svn", "pcrlock")


@app.callback(invoke_without_command=True)
def validate_systemd(
    demo: bool = typer.Option(False, "--demo", help="The bundled demo releases (PCR 11: UKI sections + phase)."),
    captures: List[Path] = typer.Option([], "--capture", metavar="DIR",
                                        help="A captured boot (DIR/eventlog.bin), allowlisted with svn 1, 2, … "
                                             "in the order given (PCRs 4, 7, 11). Repeatable."),
    unknown: List[Path] = typer.Option([], "--unknown", metavar="DIR",
                                       help="A captured boot that is not allowlisted. Repeatable."),
    scenario: List[str] = typer.Option([], "--scenario", help=f"Run only these: {', '.join(SCENARIOS)}."),
    systemd: Optional[str] = typer.Option(None, "--systemd",
                                          help="Command prefix that runs systemd's tools, e.g. "
                                               "'bash .ci/sid-chroot run' (default: the sid chroot when built, "
                                               "else this machine's tools)."),
    keep: bool = typer.Option(False, "--keep", help="Keep the work directory (LUKS images, approvals, trees)."),
) -> None:
    """Emulate each release's boot into swtpm and let systemd decide; print expected/actual per cell.

    Exit 3 if a cell did not behave as expected. systemd's refusals are its exit status."""
    import shlex
    import shutil

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pcrtool import render
    from pcrtool.errors import MismatchError, UsageError
    from pcrtool.fileio import read_bytes
    from pcrtool.validate_systemd import (Systemd, approve_with_pcrtool, capture_boots, demo_boots, run_matrix,
                                          sid_chroot_prefix, work_dir)

    bad = [s for s in scenario if s not in SCENARIOS]
    if bad:
        raise UsageError(f"unknown scenario {bad[0]!r}", hint=f"one of {', '.join(SCENARIOS)}")
    if not demo and not captures:
        raise UsageError("give --demo and/or --capture DIR (at least one allowlisted release)")
    root = Path(__file__).resolve().parents[2]
    prefix = shlex.split(systemd) if systemd is not None else (sid_chroot_prefix(root) or [])
    sd = Systemd(prefix)
    work = work_dir()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = work / "approvals-key.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    chosen = tuple(scenario) or SCENARIOS
    results = []
    try:
        if demo:
            import json
            from pcrtool.cli.demo import DEMO_DIR
            spec = json.loads((DEMO_DIR / "releases.json").read_text())
            boots = demo_boots(spec, _banks())
            results.append(run_matrix("demo releases", boots, sd, work, pcrs=(11,), components=["/usr/lib/pcrlock.d"],
                                      location="770", scenarios=chosen, sign_key=(key, pub),
                                      approve=approve_with_pcrtool(key, (11,))))
        if captures:
            pcrs = (4, 7, 11)
            items = [(d.name, read_bytes(d / "eventlog.bin", what="event log"), i + 1, True)
                     for i, d in enumerate(captures)]
            items += [(d.name, read_bytes(d / "eventlog.bin", what="event log"), 0, False) for d in unknown]
            boots = capture_boots(items, pcrs)
            results.append(run_matrix("captured boots", boots, sd, work, pcrs=pcrs, components=[], location=None,
                                      scenarios=chosen, sign_key=(key, pub), approve=approve_with_pcrtool(key, pcrs)))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if render.json_mode():
        render.emit_json({"ok": all(r.ok for r in results), "matrices": [r.to_json() for r in results],
                          "commands": sd.log, **({"workdir": str(work)} if keep else {})})
    else:
        for r in results:
            t = render.Table(["ok", "scenario", "release", "expected", "actual (systemd)", "pcrlock.json read by pcrtool",
                              "pcrtool floor", "detail"],
                             title=f"systemd unlock matrix: {r.name}, PCRs {'+'.join(map(str, r.pcrs))}, "
                                   f"{r.systemd_version}")
            for c in r.cells:
                t.add("✓" if c.ok else "✗", c.scenario, c.release, c.expected, c.actual, c.policy_reading or "-",
                      c.floor, c.detail[:80])
            render.emit_table(t)
            for n in r.notes:
                render.info(n)
        if keep:
            render.info(f"work directory kept: {work}")
    bad_cells = sum(1 for r in results for c in r.cells if not c.ok)
    if bad_cells:
        raise MismatchError(f"{bad_cells} cell(s) did not behave as expected",
                            hint="an unlock where a refusal was expected is a security bug")


def _banks():
    from pcrtool.swtpm import Swtpm
    from pcrtool.tpm import open_tpm
    with Swtpm.start() as sw, open_tpm(sw.tcti) as tpm:
        return list(tpm.banks())
