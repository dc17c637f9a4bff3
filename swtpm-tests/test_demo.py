"""`pcrtool demo` (the README's first command): exit 0, every cell as expected, under a minute."""

import json
import subprocess
import sys
import time

from tests.policy.helpers_policy import need_module, need_tool  # noqa: E402


def test_demo_runs_under_a_minute(tmp_path):
    need_module("tpm2_pytss")
    need_tool("swtpm")
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pcrtool", "demo", "--json=short", "--keep", tmp_path / "out"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t < 60
    data = json.loads(p.stdout)
    assert data["ok"] and len(data["matrices"]) == 2
    assert (tmp_path / "out" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    assert "BEGIN" not in p.stdout + p.stderr  # the private key is never printed
    # the kept files validate again with the product command
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "pcrtool", "validate", "--allowlist", out / "releases.json",
                        "--approvals", out / "approvals.pcrsig", "--key", out / "signing-key.pem"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
