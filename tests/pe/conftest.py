"""Fixtures for the PE tests (session-scoped: the inputs are built once)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make helpers_pe importable

from helpers_pe import BOOT, STUB, kernel_image, make_cert, make_uki

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(path: Path) -> Path:
    if not path.is_file():
        msg = f"{path} missing (apt-get install systemd-boot-efi)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def stub() -> Path:
    return _need(STUB)


@pytest.fixture(scope="session")
def boot() -> Path:
    return _need(BOOT)


@pytest.fixture(scope="session")
def kernel() -> Path:
    k = kernel_image()
    if k is None:
        if IN_CI:
            pytest.fail("could not apt-get download a kernel image")
        pytest.skip("no kernel image")
    return k


@pytest.fixture(scope="session")
def pe_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pe")


@pytest.fixture(scope="session")
def uki(pe_tmp, stub) -> Path:
    return make_uki(pe_tmp, 8 << 20)


@pytest.fixture(scope="session")
def rsa2048(pe_tmp) -> tuple[Path, Path]:
    return make_cert(pe_tmp, 2048, "pcrtool test 2048")


@pytest.fixture(scope="session")
def rsa2048b(pe_tmp) -> tuple[Path, Path]:
    return make_cert(pe_tmp, 2048, "pcrtool second signer")
