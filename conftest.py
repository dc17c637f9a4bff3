"""Fixtures shared by tests/ and swtpm-tests/.

Under CI=true a missing external tool or a missing shared corpus fails the test instead of
skipping it (the standard: real parts, not mocks; nothing silently skipped in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcrtool.tools import find_tool

ROOT = Path(__file__).resolve().parent
CORPUS = (ROOT / ".." / "shared" / "eventlogs-corpus").resolve()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

os.environ.setdefault("TSS2_LOG", "all+none")  # libtss2 logs expected TPM failures on stderr


def need_tool(name: str) -> str:
    """Path of an external tool; skip without it (fail under CI=true)."""
    path = find_tool(name)
    if path is None:
        msg = f"{name} is not installed (run .ci/install-system-deps)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def need_module(name: str):
    """Import an optional Python module; skip without it (fail under CI=true)."""
    try:
        return __import__(name)
    except ImportError as e:
        if IN_CI:
            pytest.fail(f"python module {name} missing: {e}")
        pytest.skip(f"python module {name} missing")


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared event-log corpus (../shared/eventlogs-corpus)."""
    if not (CORPUS / "expected.tsv").is_file():
        if IN_CI:
            pytest.fail(f"event-log corpus missing at {CORPUS}")
        pytest.skip("event-log corpus missing")
    return CORPUS


@pytest.fixture
def tool():
    return need_tool
