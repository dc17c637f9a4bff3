"""Fixtures shared by tests/ and swtpm-tests/.

Under CI=true a missing external tool or a missing shared corpus fails the test instead of
skipping it (the standard: real parts, not mocks; nothing silently skipped in CI).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))   # tests.support (the suites' helpers) beside the package

from tests.support import (  # noqa: E402,F401 - re-exported for tests
    corpus_root, in_ci, need_module, need_sid_systemd, need_tool, sid_systemd_version,
)
CORPUS = corpus_root()
IN_CI = in_ci()

os.environ.setdefault("TSS2_LOG", "all+none")  # libtss2 logs expected TPM failures on stderr


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


def pytest_report_header(config):
    return f"systemd (sid chroot, .ci/sid-chroot): {sid_systemd_version() or 'not built'}"


@pytest.fixture(scope="session")
def sid_systemd():
    """The newest systemd (sid chroot): ``sid_systemd.run("systemd-pcrlock", "cel", env={...})``.
    Skips without the chroot, fails under CI=true; see tests.support.SidSystemd."""
    return need_sid_systemd()

