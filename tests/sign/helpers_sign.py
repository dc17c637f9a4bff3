"""Helpers for the key-backend tests (importable: conftest puts this directory on sys.path)."""

from __future__ import annotations

from tests.support import in_ci, need_tool  # noqa: F401

IN_CI = in_ci()

import hashlib
import subprocess
from pathlib import Path


PIN = "468135"


def openssl(*args, input: bytes | None = None) -> bytes:
    proc = subprocess.run([need_tool("openssl"), *args], input=input, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


class Keys:
    """Key files in one directory: rsa (+ .crt), rsa_b, ec256 (+ .crt), ec384, and public halves."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.rsa = d / "rsa.pem"
        self.rsa_b = d / "rsa_b.pem"
        self.rsa3072 = d / "rsa3072.pem"
        self.ec256 = d / "ec256.pem"
        self.ec384 = d / "ec384.pem"
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.rsa))
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(self.rsa_b))
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", str(self.rsa3072))
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(self.ec256))
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", str(self.ec384))
        for name in ("rsa", "rsa_b", "rsa3072", "ec256", "ec384"):
            openssl("pkey", "-in", str(d / f"{name}.pem"), "-pubout", "-out", str(d / f"{name}.pub.pem"))
        for name in ("rsa", "ec256"):
            openssl("req", "-new", "-x509", "-key", str(d / f"{name}.pem"), "-subj", f"/CN=pcrtool test {name}",
                    "-days", "30", "-out", str(d / f"{name}.crt"))

    def pub(self, name: str) -> Path:
        return self.dir / f"{name}.pub.pem"

    def crt(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def fingerprint(self, name: str) -> str:
        """The oracle: sha256 over `openssl pkey -pubout -outform DER`."""
        der = openssl("pkey", "-in", str(self.dir / f"{name}.pem"), "-pubout", "-outform", "DER")
        return hashlib.sha256(der).hexdigest()


def run_cli(*args: str, env: dict | None = None, cwd=None,
            fresh_process: bool = False) -> subprocess.CompletedProcess:
    """Run ``pcrtool ARGS``: in this process (fast), or with ``fresh_process`` in a new
    interpreter (needed where PKCS#11 login state must not be shared)."""
    from tests.support.cli import run_pcrtool, run_pcrtool_in_process
    if fresh_process:
        return run_pcrtool(*args, env=env, cwd=cwd, timeout=60)
    return run_pcrtool_in_process(*args, env=env, cwd=cwd)


def summary_digest(request, key: str | None = None, *args: str, env: dict | None = None) -> str:
    """The digest `sign-request show` prints for REQUEST (signed by KEY): what `sign --expect` needs."""
    import json as _json
    proc = run_cli("sign-request", "show", str(request), *(["--key", key] if key else []), *args,
                   "--json=short", env=env)
    assert proc.returncode == 0, proc.stderr
    return _json.loads(proc.stdout)["digest"]


def sign_cli(request, key: str, *args: str, env: dict | None = None, expect_key: str | None = None,
             show_args: tuple = (), fresh_process: bool = False) -> subprocess.CompletedProcess:
    """`sign-request sign REQUEST --key KEY --expect <show's digest>` with the audit log next to the request."""
    env = {"PCRTOOL_AUDIT_LOG": str(Path(request).parent / "audit.jsonl"), **(env or {})}
    digest = summary_digest(request, expect_key or key, *map(str, show_args), env=env)
    return run_cli("sign-request", "sign", str(request), "--key", key, "--expect", digest, *args, env=env,
                   fresh_process=fresh_process)
