"""Password and PIN files of `tpm enroll` are checked before any TPM is opened: a one-line usage
error (exit 2) naming the file's bounds, never a TPM error or a traceback."""

from __future__ import annotations

import pytest

from tests.support.cli import run_pcrtool


@pytest.mark.parametrize("option, content, message", [
    ("--pin-file", b"", "the PIN file must hold 1…256 bytes"),
    ("--pin-file", b"\n", "the PIN file must hold 1…256 bytes"),
    ("--pin-file", b"p" * 257, "the PIN file must hold 1…256 bytes"),
    ("--owner-auth-file", b"o" * 65, "the owner password file must hold 0…64 bytes"),
])
def test_bad_secret_file_is_a_usage_error_before_the_tpm(tmp_path, option, content, message):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pub = tmp_path / "k.pub"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    secret = tmp_path / "secret"
    secret.write_bytes(content)
    proc = run_pcrtool("tpm", "enroll", "-k", pub, "-o", tmp_path / "e.json", option, secret,
                       env={"PCRTOOL_TCTI": f"swtpm:path={tmp_path / 'no-tpm.sock'}"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"pcrtool: error: {message}"]
    assert not (tmp_path / "e.json").exists()
