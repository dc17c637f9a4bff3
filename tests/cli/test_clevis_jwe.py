"""The clevis pin's JWE against `jose` (latchset/jose, what clevis itself uses) both ways, and the
pin's protocol edges (issue 18). The TPM side is in swtpm-tests/test_clevis_pin.py."""

import base64
import json
import os
import subprocess
import sys

import pytest

from pcrtool.clevis.pin import PinError, decrypt, jwe_decrypt, jwe_encrypt, jwe_header
from tests.support import need_tool


def jwk(key: bytes) -> str:
    return json.dumps({"kty": "oct", "k": base64.urlsafe_b64encode(key).rstrip(b"=").decode()})


def test_our_jwe_decrypts_with_jose_and_jose_jwe_decrypts_with_ours(tmp_path):
    jose = need_tool("jose")
    key = os.urandom(32)
    header = {"clevis": {"pin": "pcrtool", "pcrtool": {"approvals": "/x"}}}
    ours = jwe_encrypt(header, key, b"luks passphrase \x00\xff")
    p = subprocess.run([jose, "jwe", "dec", "-k-", "-i-"], input=(jwk(key) + ours).encode(), capture_output=True)
    assert p.returncode == 0 and p.stdout == b"luks passphrase \x00\xff", p.stderr
    assert jwe_header(ours)["clevis"]["pin"] == "pcrtool"
    template = json.dumps({"protected": {"alg": "dir", "enc": "A256GCM", **header}})
    p = subprocess.run([jose, "jwe", "enc", "-i-", "-k-", "-I-", "-c"],
                       input=(template + jwk(key)).encode() + b"from jose", capture_output=True)
    assert p.returncode == 0, p.stderr
    assert jwe_decrypt(p.stdout.decode(), key) == b"from jose"
    with pytest.raises(PinError, match="does not decrypt"):
        jwe_decrypt(p.stdout.decode(), os.urandom(32))


def test_decrypt_refuses_another_pin_and_garbage():
    other = jwe_encrypt({"clevis": {"pin": "tpm2", "tpm2": {}}}, os.urandom(32), b"x")
    with pytest.raises(PinError, match="pin mismatch"):
        decrypt(other)
    with pytest.raises(PinError, match="not a compact JWE"):
        decrypt("a.b.c")


def test_pin_executables_speak_the_clevis_protocol(tmp_path):
    env = {**os.environ}
    p = subprocess.run([sys.executable, "-m", "pcrtool", "clevis", "install", "--dir", tmp_path], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr
    enc, dec = tmp_path / "clevis-encrypt-pcrtool", tmp_path / "clevis-decrypt-pcrtool"
    assert os.access(enc, os.X_OK) and os.access(dec, os.X_OK)
    assert subprocess.run([enc, "--summary"], capture_output=True, text=True).stdout.startswith("Encrypts using")
    p = subprocess.run([enc, '{"floor": 1}'], input=b"x", capture_output=True, text=False)
    assert p.returncode == 1 and b"needs \"public_key\"" in p.stderr and p.stdout == b""
    p = subprocess.run([enc, '{"public_key": "k", "flor": 1}'], input=b"x", capture_output=True)
    assert p.returncode == 1 and b"unknown configuration key 'flor'" in p.stderr
    p = subprocess.run([dec], input=b"not a jwe", capture_output=True)
    assert p.returncode == 1 and b"not a compact JWE" in p.stderr
    p = subprocess.run([sys.executable, "-m", "pcrtool", "clevis", "install", "--dir", tmp_path],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "exists already" in p.stderr  # never replaced without --force
