"""Fixtures for the interop tests against the newest systemd (the ``sid_systemd`` fixture of the
root conftest runs its tools inside .ci/sid-chroot)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make helpers importable

from helpers_interop import make_keypair  # noqa: E402


@pytest.fixture(scope="session")
def interop_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def keypair(interop_tmp):
    return make_keypair(interop_tmp, "pcrtool-interop")


@pytest.fixture(scope="session")
def keypair2(interop_tmp):
    return make_keypair(interop_tmp, "pcrtool-interop-2")
