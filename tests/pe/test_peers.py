"""Quirks of other tools' output (pesign's OID, osslsigncode -nest) and db/dbx signature lists."""

from __future__ import annotations

import subprocess

import pytest

from helpers_pe import pcrtool, sign_with_pcrtool, tool
from pcrtool.model import HashAlg
from pcrtool.pe import authenticode_digest
from pcrtool.pe.sigdb import load_sigdb, parse_esl
from pcrtool.pe.verify import verify_image

OWNER = "12345678-1234-1234-1234-123456789abc"


def test_pesign_output_verifies_despite_its_oid(stub, tmp_path, rsa2048):
    key, cert = rsa2048
    nss = tmp_path / "nss"
    nss.mkdir()
    tool("certutil", "-N", "-d", nss, "--empty-password")
    p12 = tmp_path / "k.p12"
    tool("openssl", "pkcs12", "-export", "-in", cert, "-inkey", key, "-out", p12, "-passout", "pass:",
         "-name", "pcrtool-test")
    tool("pk12util", "-i", p12, "-d", nss, "-W", "")
    out = tmp_path / "pesigned.efi"
    tool("pesign", "-s", "-n", nss, "-c", "pcrtool-test", "-i", stub, "-o", out)
    result = verify_image(out.read_bytes(), db=load_sigdb(cert.read_bytes()))
    assert result.accepted is True
    assert any("1.3.6.1.4.1.311.2.1.21" in p for p in result.signatures[0].problems)


def test_osslsigncode_nested_signature_is_invisible_to_firmware(stub, tmp_path, rsa2048, rsa2048b):
    (k1, c1), (k2, c2) = rsa2048, rsa2048b
    first, nested = tmp_path / "first.efi", tmp_path / "nested.efi"
    tool("osslsigncode", "sign", "-certs", c1, "-key", k1, "-in", stub, "-out", first)
    tool("osslsigncode", "sign", "-nest", "-certs", c2, "-key", k2, "-in", first, "-out", nested)
    result = verify_image(nested.read_bytes(), db=load_sigdb(c2.read_bytes()))
    assert len(result.signatures) == 1 and result.signatures[0].problems
    assert "nested" in " ".join(result.signatures[0].problems)
    assert result.accepted is False          # EDK2 never sees the db2 signature
    assert verify_image(nested.read_bytes(), db=load_sigdb(c1.read_bytes())).accepted is True


def _sigdb(tmp_path, name, *args):
    import sys
    from pathlib import Path
    cli = Path(sys.executable).with_name("virt-fw-sigdb")
    if not cli.exists():
        pytest.skip("virt-fw-sigdb (virt-firmware) missing")
    out = tmp_path / name
    subprocess.run([str(cli), "-o", str(out), *map(str, args)], check=True, capture_output=True)
    return out


def test_db_and_dbx_as_efi_signature_lists(stub, tmp_path, rsa2048, rsa2048b):
    key, cert = rsa2048
    signed = tmp_path / "signed.efi"
    signed.write_bytes(sign_with_pcrtool(stub.read_bytes(), key, cert))
    db = _sigdb(tmp_path, "db.esl", "--add-cert", OWNER, cert, "--add-cert", OWNER, rsa2048b[1])
    assert len(parse_esl(db.read_bytes()).certificates) == 2
    r = pcrtool("pe", "verify", signed, "--db", db)
    assert r.returncode == 0, r.stderr
    # efivarfs dump form: 4 attribute bytes in front
    var = tmp_path / "db-efivarfs"
    var.write_bytes(b"\x27\x00\x00\x00" + db.read_bytes())
    assert pcrtool("pe", "verify", signed, "--db", var).returncode == 0
    digest = authenticode_digest(signed.read_bytes()).hex()
    dbx = _sigdb(tmp_path, "dbx.esl", "--add-hash", OWNER, digest)
    assert parse_esl(dbx.read_bytes()).image_hashes == [(HashAlg.SHA256, bytes.fromhex(digest))]
    r = pcrtool("pe", "verify", signed, "--db", db, "--dbx", dbx)
    assert r.returncode == 3 and "dbx" in r.stderr
    other = _sigdb(tmp_path, "other.esl", "--add-cert", OWNER, rsa2048b[1])
    r = pcrtool("pe", "verify", signed, "--db", other)
    assert r.returncode == 3 and "refuse" in r.stderr


def test_unsigned_image_hash_enrolment(stub, tmp_path):
    """Firmware compares db hashes with the digest of the unsigned file as it is (no padding)."""
    import json
    as_loaded = json.loads(pcrtool("pe", "hash", stub, "--json=short", check=True).stdout)["as_loaded"]
    db = _sigdb(tmp_path, "db-hash.esl", "--add-hash", OWNER, as_loaded)
    assert pcrtool("pe", "verify", stub, "--db", db).returncode == 0


def test_bad_esl_is_one_line_error(stub, tmp_path):
    bad = tmp_path / "bad.esl"
    bad.write_bytes(bytes(16) + b"\xff\xff\xff\xff" + bytes(8))
    r = pcrtool("pe", "verify", stub, "--db", bad)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "EFI_SIGNATURE_LIST" in r.stderr
