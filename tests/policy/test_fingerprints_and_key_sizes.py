"""One pkfp (systemd's), both hashes explained by `key fingerprint`, and approval keys checked at
approve time against what TPM 2.0 devices load (issue 18)."""

import hashlib
import json
import subprocess

from helpers_policy import releases_json

from pcrtool.policy import digests as D
from pcrtool.sign.keyfile import load_public_key_file
from tests.support.cli import run_pcrtool as run

def openssl(*args) -> bytes:
    return subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True).stdout


def test_pkfp_is_what_systemd_measure_sign_writes(tmp_path, sid_systemd):
    """Known answer from systemd 262's systemd-measure sign with an openssl-made key."""
    key, pub, linux = tmp_path / "k.pem", tmp_path / "pub.pem", tmp_path / "linux"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    linux.write_bytes(b"not a kernel, just measured bytes")
    proc = sid_systemd.run("systemd-measure", "sign", f"--linux={linux}", f"--private-key={key}",
                           f"--public-key={pub}", "--bank=sha256", "--phase=enter-initrd")
    systemd_pkfp = json.loads(proc.stdout)["sha256"][0]["pkfp"]
    spki = hashlib.sha256(openssl("pkey", "-pubin", "-in", pub, "-outform", "DER")).hexdigest()
    pkcs1 = hashlib.sha256(openssl("rsa", "-pubin", "-in", pub, "-RSAPublicKey_out", "-outform", "DER")).hexdigest()
    assert systemd_pkfp == pkcs1 != spki
    assert D.public_key_fingerprint(load_public_key_file(str(pub))).hex() == systemd_pkfp
    shown = json.loads(run("key", "fingerprint", key, "--json=short").stdout)
    assert shown == {"fingerprint": spki, "pkfp": systemd_pkfp, "type": "rsa2048"}
    text = run("key", "fingerprint", pub).stdout
    assert f"fingerprint {spki}" in text and f"pkfp        {systemd_pkfp}" in text and ".pcrsig" in text
    # policy show on systemd's own file names the pkfp
    (tmp_path / "s.pcrsig").write_text(proc.stdout)
    rows = json.loads(run("policy", "show", tmp_path / "s.pcrsig", "-k", pub, "--json=short").stdout)["entries"]
    assert [(r["pkfp"], r["signature"]) for r in rows] == [(systemd_pkfp, "valid")]
    assert systemd_pkfp in run("policy", "show", tmp_path / "s.pcrsig").stdout


def test_policy_show_with_another_key_names_both_fingerprints(tmp_path):
    (tmp_path / "rel.json").write_text(releases_json(svns=(1,)))
    for name in ("a", "b"):
        assert run("key", "generate", f"{name}.pem", "--public-output", f"{name}.pub", cwd=tmp_path).returncode == 0
    assert run("policy", "approve", "-r", "rel.json", "-k", "a.pem", "-o", "a.pcrsig", cwd=tmp_path).returncode == 0
    fa = D.public_key_fingerprint(load_public_key_file(str(tmp_path / "a.pub"))).hex()
    fb = D.public_key_fingerprint(load_public_key_file(str(tmp_path / "b.pub"))).hex()
    p = run("policy", "show", "a.pcrsig", "-k", "b.pub", cwd=tmp_path)
    assert p.returncode == 3 and f"signed by key pkfp {fa}" in p.stderr and f"has pkfp {fb}" in p.stderr


def _approve(tmp_path, key_type, *extra):
    (tmp_path / "rel.json").write_text(releases_json(svns=(1,)))
    assert run("key", "generate", f"{key_type}.pem", "--type", key_type, cwd=tmp_path).returncode == 0
    return run("policy", "approve", "-r", "rel.json", "-k", f"{key_type}.pem", "-o", "a.pcrsig", *extra,
               cwd=tmp_path)


def test_rsa4096_is_refused_at_approve_time_with_the_tpm_profile_reason(tmp_path):
    p = _approve(tmp_path, "rsa4096")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert "RSA-4096 approval key cannot be loaded by TPM 2.0 devices" in p.stderr
    assert "RSA-2048" in p.stderr and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert not (tmp_path / "a.pcrsig").exists()


def test_rsa3072_is_signed_with_a_warning_to_check_the_devices(tmp_path):
    p = _approve(tmp_path, "rsa3072")
    assert p.returncode == 0, p.stderr
    assert "RSA-3072 is optional in the TCG PC Client TPM profile" in p.stderr and "tpm caps" in p.stderr


def test_ecdsa_opt_in_warns_that_systemd_verifies_rsa_only(tmp_path):
    p = _approve(tmp_path, "ec256", "--ecdsa")
    assert p.returncode == 0, p.stderr
    assert "verified by pcrtool's unlock only" in p.stderr
    p = _approve(tmp_path / ".." / tmp_path.name, "rsa2048", "--force")
    assert p.returncode == 0 and p.stderr.strip() == "pcrtool: wrote a.pcrsig"
