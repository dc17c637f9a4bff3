"""Test infrastructure stays out of the package and the suites import their helpers as modules:
no test extends ``sys.path`` into another suite's folder (use ``tests.support`` or
``tests.<area>.helpers_*``), and nothing in ``pcrtool/`` imports a test helper."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REACH = re.compile(r"sys\.path\.(append|insert)\(.*\"tests\"")


def test_no_suite_reaches_into_another_with_sys_path():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("tests", "swtpm-tests")
                 for p in sorted((ROOT / folder).rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if REACH.search(line)]
    assert offenders == []


def test_package_ships_no_test_helpers():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "pcrtool").rglob("*.py")
                 if "tests.support" in p.read_text() or "import pytest" in p.read_text()]
    assert offenders == []
    assert not (ROOT / "pcrtool" / "testing.py").exists() and not (ROOT / "pcrtool" / "sign" / "softhsm.py").exists()
