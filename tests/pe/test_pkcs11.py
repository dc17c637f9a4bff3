"""Authenticode signing with a key on a real SoftHSM2 token (through the common Signer)."""

from __future__ import annotations

import pytest

from helpers_pe import need_tool, pcrtool, sign_with_pcrtool, tool


@pytest.fixture(scope="module")
def token(rsa2048):
    need_tool("softhsm2-util")
    need_tool("pkcs11-tool")
    from tests.support.softhsm import SoftHsm
    key, cert = rsa2048
    with SoftHsm.start(label="pcrtool pe") as hsm:
        hsm.import_key(key, label="pe", key_id=b"\x07", certificate=cert)
        yield hsm


@pytest.mark.parametrize("prehashed", [False, True], ids=["SHA256_RSA_PKCS", "RSA_PKCS+DigestInfo"])
def test_pkcs11_signature_equals_file_key_signature(token, prehashed, stub, tmp_path, rsa2048):
    key, cert = rsa2048
    out = tmp_path / "hsm.efi"
    r = pcrtool("pe", "sign", stub, "--key", token.uri("pe", prehashed=prehashed), "-o", out,
                env={**token.env, "SOURCE_DATE_EPOCH": "1700000000"})
    assert r.returncode == 0, r.stderr
    # certificate read from the token; PKCS#1 v1.5 is deterministic: same bytes as the file key
    assert out.read_bytes() == sign_with_pcrtool(stub.read_bytes(), key, cert, epoch=1700000000)
    tool("sbverify", "--cert", cert, out)
