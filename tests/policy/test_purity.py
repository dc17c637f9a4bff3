"""The pure core stays pure: importing and using pcrtool.policy pulls in no subprocess, typer,
rich, tpm2_pytss or pkcs11 (STYLE/ARCHITECTURE rule)."""

from tests.support import modules_imported

CODE = """
import pcrtool.policy.digests, pcrtool.policy.approvals, pcrtool.policy.allowlist
import pcrtool.policy.releases_file, pcrtool.policy.downgrade
from pcrtool.policy.releases_file import parse_releases
from pcrtool.policy.allowlist import build_allowlist_policy
rels, _ = parse_releases('{"releases": [{"svn": 1, "measurements": [{"pcr": 11, "sha256": "%s"}]}]}')
build_allowlist_policy([(r.label, r.predicted) for r in rels])
""" % ("00" * 32)


def test_policy_core_imports_nothing_impure():
    assert modules_imported(CODE, ("subprocess", "typer", "rich", "tpm2_pytss", "pkcs11")) == []
