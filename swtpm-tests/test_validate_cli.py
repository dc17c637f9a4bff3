"""`pcrtool validate` as users run it in CI: exit 0 when every cell matches, JSON matrix, and
exit 3 when the approvals would let a non-allowlisted release unlock (a real misconfiguration)."""

import json

from tests.policy.helpers_policy import need_module, need_tool, pem_private, pem_public, releases_json, rsa_key  # noqa: E402
from tests.support.cli import run_pcrtool

KEY = rsa_key()


def _pcrtool(*args):
    return run_pcrtool(*args, timeout=300)


def _files(tmp_path, approve_all=False):
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "rel.json").write_text(releases_json(svns=(1, 2)))
    args = ["policy", "approve", "-r", tmp_path / "rel.json", "-k", tmp_path / "k.pem", "-o", tmp_path / "a.pcrsig"]
    p = _pcrtool(*args, *(["--all"] if approve_all else []))
    assert p.returncode == 0, p.stderr


def test_validate_passes_and_prints_json_matrix(tmp_path):
    need_module("tpm2_pytss")
    need_tool("swtpm")
    _files(tmp_path)
    p = _pcrtool("validate", "--allowlist", tmp_path / "rel.json", "--approvals", tmp_path / "a.pcrsig",
                 "--key", tmp_path / "k.pem", "--json=short")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["ok"] and [m["mode"] for m in data["matrices"]] == ["signed", "allowlist"]
    cells = [c for m in data["matrices"] for c in m["cells"]]
    assert len(cells) > 30 and all(c["ok"] for c in cells)
    assert any(c["expected"] == "deny" and c["tpm_rc"] for c in cells)


def test_validate_with_public_key_only_marks_beyond_window_not_applicable(tmp_path):
    need_module("tpm2_pytss")
    _files(tmp_path)
    p = _pcrtool("validate", "--allowlist", tmp_path / "rel.json", "--approvals", tmp_path / "a.pcrsig",
                 "--key", tmp_path / "pub.pem", "--mode", "signed", "--json=short")
    assert p.returncode == 0, p.stderr
    cells = json.loads(p.stdout)["matrices"][0]["cells"]
    assert [c["expected"] for c in cells if c["scenario"] == "svn beyond the enrolled window"] == ["n/a"]


def test_validate_fails_when_a_non_allowlisted_release_is_approved(tmp_path):
    need_module("tpm2_pytss")
    _files(tmp_path, approve_all=True)  # the dev build got signed too: it would unlock
    p = _pcrtool("validate", "--allowlist", tmp_path / "rel.json", "--approvals", tmp_path / "a.pcrsig",
                 "--key", tmp_path / "k.pem", "--mode", "signed", "--json=short")
    assert p.returncode == 3, p.stderr
    data = json.loads(p.stdout)
    bad = [c for c in data["matrices"][0]["cells"] if not c["ok"]]
    assert bad and bad[0]["scenario"] == "release not on the allowlist" and bad[0]["actual"] == "allow"


def test_validate_usage_errors(tmp_path):
    (tmp_path / "rel.json").write_text(releases_json(svns=(1,)))
    p = _pcrtool("validate", "--allowlist", tmp_path / "rel.json", "--mode", "signed")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = _pcrtool("validate", "--allowlist", tmp_path / "missing.json")
    assert p.returncode == 1 and "Traceback" not in p.stderr
