"""`policy approve` refuses keys systemd cannot verify unless the user opts in (issue 6/8)."""

import json

from helpers_policy import releases_json

from tests.support.cli import run_pcrtool


def run(*args, cwd):
    return run_pcrtool(*args, cwd=cwd)


def test_ecdsa_key_is_refused_with_the_reason_and_no_output(tmp_path):
    (tmp_path / "releases.json").write_text(releases_json())
    assert run("key", "generate", "ec.pem", "--type", "ec256", cwd=tmp_path).returncode == 0
    proc = run("policy", "approve", "-r", "releases.json", "-k", "ec.pem", "-o", "a.pcrsig", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "accepts only RSA keys" in proc.stderr
    assert not (tmp_path / "a.pcrsig").exists()


def test_ecdsa_opt_in_signs_ecdsa_entries(tmp_path):
    (tmp_path / "releases.json").write_text(releases_json())
    assert run("key", "generate", "ec.pem", "--type", "ec256", cwd=tmp_path).returncode == 0
    proc = run("policy", "approve", "-r", "releases.json", "-k", "ec.pem", "-o", "a.pcrsig", "--ecdsa", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "a.pcrsig").read_text())
    sig = doc["sha256"][0]["sig"]
    # A DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs), not a 256-byte RSA signature.
    import base64
    raw = base64.b64decode(sig)
    assert raw[0] == 0x30 and len(raw) < 80
