"""`pcrtool key`: generation (0600, never overwritten, usable certificates), show, fingerprint."""

from __future__ import annotations

import hashlib
import json
import stat

import pytest

from helpers_sign import openssl, run_cli


@pytest.mark.parametrize("key_type,openssl_text", [("rsa2048", "2048 bit"), ("ec384", "NIST CURVE: P-384")])
def test_generate_writes_0600_key_and_a_certificate_openssl_accepts(tmp_path, key_type, openssl_text):
    key = tmp_path / "k.pem"
    proc = run_cli("key", "generate", str(key), "--type", key_type, "--cert", "pcrtool demo",
                   "--public-output", str(tmp_path / "k.pub"), "--json=short")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    out = json.loads(proc.stdout)
    assert "PRIVATE" not in proc.stdout + proc.stderr
    assert openssl_text in openssl("pkey", "-in", str(key), "-noout", "-text").decode()
    der = openssl("pkey", "-in", str(key), "-pubout", "-outform", "DER")
    assert out["fingerprint"] == hashlib.sha256(der).hexdigest()
    crt = tmp_path / "k.crt"
    # self-signed, matches the key, digitalSignature + codeSigning
    assert b"OK" in openssl("verify", "-CAfile", str(crt), "-purpose", "any", str(crt))
    text = openssl("x509", "-in", str(crt), "-noout", "-text", "-subject").decode()
    assert "Code Signing" in text and "Digital Signature" in text and "CN = pcrtool demo" in text
    assert openssl("x509", "-in", str(crt), "-pubkey", "-noout") == (tmp_path / "k.pub").read_bytes()


def test_generate_refuses_to_overwrite_anything(tmp_path):
    key = tmp_path / "k.pem"
    assert run_cli("key", "generate", str(key)).returncode == 0
    before = key.read_bytes()
    proc = run_cli("key", "generate", str(key))
    assert proc.returncode == 1 and "refusing to overwrite" in proc.stderr
    assert key.read_bytes() == before
    (tmp_path / "n.crt").write_text("existing")
    proc = run_cli("key", "generate", str(tmp_path / "n.pem"), "--cert", "x")
    assert proc.returncode == 1 and not (tmp_path / "n.pem").exists()
    proc = run_cli("key", "generate", str(tmp_path / "z.pem"), "--type", "dsa1024")
    assert proc.returncode == 2 and not (tmp_path / "z.pem").exists()


def test_show_and_fingerprint_for_key_public_key_and_certificate(keys):
    fp = keys.fingerprint("rsa")
    for ref in (str(keys.rsa), f"file:{keys.rsa}", str(keys.pub("rsa")), str(keys.crt("rsa"))):
        proc = run_cli("key", "fingerprint", ref)
        assert proc.returncode == 0 and proc.stdout.split()[:2] == ["fingerprint", fp], (ref, proc.stderr)
    proc = run_cli("key", "show", str(keys.rsa), "--certificate", str(keys.crt("rsa")), "--json=short")
    info = json.loads(proc.stdout)
    assert info["type"] == "rsa2048" and info["private"] is True
    assert info["certificate"]["subject"] == "CN=pcrtool test rsa"
    assert "BEGIN" not in proc.stdout
    proc = run_cli("key", "public", str(keys.ec256))
    assert proc.stdout.encode() == keys.pub("ec256").read_bytes()


def test_generate_encrypted_key_takes_the_passphrase_from_the_environment_only(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text("s3cret passphrase\n")
    key = tmp_path / "enc.pem"
    proc = run_cli("key", "generate", str(key), "--encrypt", env={"PCRTOOL_KEY_PASSPHRASE_FILE": str(passfile)})
    assert proc.returncode == 0, proc.stderr
    assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    openssl("pkey", "-in", str(key), "-passin", f"file:{passfile}", "-noout")  # openssl can decrypt it
    proc = run_cli("key", "fingerprint", str(key), env={"PCRTOOL_KEY_PASSPHRASE_FILE": "",
                                                        "PCRTOOL_KEY_PASSPHRASE": ""})
    assert proc.returncode == 1 and "encrypted and no passphrase" in proc.stderr
    proc = run_cli("key", "fingerprint", f"file:{key}?passphrase-file={passfile}")
    assert proc.returncode == 0 and "s3cret" not in proc.stdout + proc.stderr
    proc = run_cli("key", "generate", str(tmp_path / "x.pem"), "--encrypt",
                   env={"PCRTOOL_KEY_PASSPHRASE_FILE": "", "PCRTOOL_KEY_PASSPHRASE": ""})
    assert proc.returncode == 2 and not (tmp_path / "x.pem").exists()
