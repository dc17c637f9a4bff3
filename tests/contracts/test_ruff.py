"""Style contract: ruff with the explicit rule set of pyproject.toml ([tool.ruff.lint]) finds
nothing in the package, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import need_module

ROOT = Path(__file__).resolve().parents[2]


def ruff_command() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if exe:
        return [exe]
    need_module("ruff")
    return [sys.executable, "-m", "ruff"]


def test_ruff_finds_nothing():
    proc = subprocess.run([*ruff_command(), "check", "--no-cache", "--output-format", "concise",
                           "pcrtool", "tests", "swtpm-tests", "bench", "conftest.py"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_reports_an_unused_import(tmp_path):
    """The check can fail: an unused import in a file is reported with its rule."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n")
    proc = subprocess.run([*ruff_command(), "check", "--no-cache", "--output-format", "concise",
                           "--config", str(ROOT / "pyproject.toml"), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "F401" in proc.stdout
