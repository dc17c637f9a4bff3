"""Helpers for pcrtool's own test suites (and users' CI): tools and modules a test needs.

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


def corpus_root():
    """The shared public event-log corpus: ``$PCRTOOL_CORPUS`` or ``../shared/eventlogs-corpus``
    beside the source tree (tests read it by path; it is never copied into the project)."""
    from pathlib import Path

    env = os.environ.get("PCRTOOL_CORPUS")
    if env:
        return Path(env).resolve()
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "eventlogs-corpus").resolve()


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
