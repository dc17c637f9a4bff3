"""Names explain themselves (STYLE.md): no one- or two-letter uppercase import alias in
``pcrtool/`` (``from pcrtool.policy import digests as D``, ``import x as AL``). Import the module
under its own name, or the names it provides.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pcrtool"
_CRYPTIC = re.compile(r"[A-Z][A-Z0-9]?")


def cryptic_aliases(source: str, filename: str = "<source>") -> list[str]:
    """``line: import … as X`` for every import whose alias is one or two uppercase characters."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.asname and _CRYPTIC.fullmatch(alias.asname):
                    found.append(f"{node.lineno}: import {alias.name} as {alias.asname}")
    return sorted(found, key=lambda hit: int(hit.split(":")[0]))


def test_the_check_finds_short_uppercase_aliases():
    source = ("from pcrtool.policy import digests as D\n"
              "def f():\n    import pcrtool.tpm.enroll as E2\n"
              "from pcrtool.policy import allowlist as AL\n"
              "from pcrtool.policy import scope as policy_scope\n"
              "import numpy as np\nfrom typing import Optional as Opt\n")
    assert cryptic_aliases(source) == ["1: import digests as D", "3: import pcrtool.tpm.enroll as E2",
                                       "4: import allowlist as AL"]


def test_no_cryptic_module_aliases_in_the_package():
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{hit}"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for hit in cryptic_aliases(path.read_text(), str(path))]
    assert offenders == [], "name the module (or import the names it provides):\n" + "\n".join(offenders)
