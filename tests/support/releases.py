"""Two small predicted UKI releases (fooos 1 and 2, svn 1 and 2; PCR 7 Secure Boot on, PCR 11
from section files) for the device tests that boot them into swtpm (`tpm boot-release`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def two_uki_releases(d: Path) -> dict[str, dict[str, str]]:
    """Write the manifests and ``d/p.json``; returns {version: {pcr: sha256 hex}}."""
    (d / "os-release").write_text("ID=fooos\n")
    for v in (1, 2):
        (d / f"vmlinuz-{v}").write_text(f"kernel {v}\n")
        (d / f"m{v}.toml").write_text(f'name = "fooos"\nversion = "{v}"\nsvn = {v}\npcrs = [7, 11]\n'
                                      f'[uki.sections]\nlinux = "vmlinuz-{v}"\nosrel = "os-release"\n'
                                      '[secureboot]\nSecureBoot = 1\n')
    p = subprocess.run([sys.executable, "-m", "pcrtool", "predict", "release", d / "m1.toml", d / "m2.toml",
                        "-o", d / "p.json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return {r["version"]: r["phases"][0]["values"]["sha256"]
            for r in json.loads((d / "p.json").read_text())["releases"]}
