"""Fixtures for the dm-verity tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make helpers_verity importable

from helpers_verity import Pki, need_tool, run  # noqa: E402


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    """A CA, an RSA-2048 leaf it issued, an ECDSA P-256 leaf and an unrelated self-signed RSA key,
    all made by the openssl command line (not by the code under test)."""
    openssl = need_tool("openssl")
    d = tmp_path_factory.mktemp("pki")
    ext = d / "leaf.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "ca.key",
        "-out", d / "ca.pem", "-subj", "/CN=pcrtool test CA", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for name, newkey, serial in (("leaf", "rsa:2048", "0x1234567890"), ("ec", "ec", "0x42")):
        extra = ["-pkeyopt", "ec_paramgen_curve:P-256"] if newkey == "ec" else []
        run(openssl, "req", "-newkey", newkey, *extra, "-nodes", "-keyout", d / f"{name}.key",
            "-out", d / f"{name}.csr", "-subj", f"/CN=verity {name}")
        run(openssl, "x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
            "-set_serial", serial, "-days", "30", "-out", d / f"{name}.pem", "-extfile", ext)
    run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "other.key",
        "-out", d / "other.pem", "-subj", "/CN=someone else", "-days", "30")
    return Pki(d, d / "ca.key", d / "ca.pem", d / "leaf.key", d / "leaf.pem", d / "ec.key", d / "ec.pem",
               d / "other.key", d / "other.pem")


