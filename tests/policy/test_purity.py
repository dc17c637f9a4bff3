"""The pure core stays pure: importing and using pcrtool.policy pulls in no subprocess, typer,
rich, tpm2_pytss or pkcs11 (STYLE/ARCHITECTURE rule)."""

import subprocess
import sys

CODE = """
import sys
import pcrtool.policy.digests, pcrtool.policy.approvals, pcrtool.policy.allowlist
import pcrtool.policy.releases_file, pcrtool.policy.downgrade
from pcrtool.policy.releases_file import parse_releases
from pcrtool.policy.allowlist import build_allowlist_policy
rels, _ = parse_releases('{"releases": [{"svn": 1, "measurements": [{"pcr": 11, "sha256": "%s"}]}]}')
build_allowlist_policy([(r.label, r.predicted) for r in rels])
bad = sorted(m for m in ("subprocess", "typer", "rich", "tpm2_pytss", "pkcs11") if m in sys.modules)
print(",".join(bad))
""" % ("00" * 32)


def test_policy_core_imports_nothing_impure():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
