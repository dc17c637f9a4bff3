"""Fixtures for the key-backend tests: keys made by openssl (an independent tool) and one
SoftHSM2 token holding copies of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make helpers_sign importable

from helpers_sign import PIN, Keys, need_tool  # noqa: E402


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def hsm(keys):
    """One SoftHSM2 token with rsa (id 01, + certificate), ec256 (id 02, + certificate), ec384 (03),
    and rsa_nopub (id 04, private object only)."""
    need_tool("softhsm2-util")
    need_tool("pkcs11-tool")
    from tests.support.softhsm import SoftHsm

    with SoftHsm.start(label="pcrtool test", pin=PIN) as token:
        token.import_key(keys.rsa, label="rsa", key_id=b"\x01", certificate=keys.crt("rsa"))
        token.import_key(keys.ec256, label="ec256", key_id=b"\x02", certificate=keys.crt("ec256"))
        token.import_key(keys.ec384, label="ec384", key_id=b"\x03")
        token.import_key(keys.rsa_b, label="rsa_nopub", key_id=b"\x04", public=False)
        yield token


