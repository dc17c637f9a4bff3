"""`pcrtool policy …` through the real CLI: approve, show, digest, offline prepare/attach."""

import json
import subprocess

import pytest
from helpers_policy import need_tool, pem_private, pem_public, releases_json, rsa_key

from pcrtool.model import HashAlg
from pcrtool.policy import approvals as A
from pcrtool.policy import digests as D
from pcrtool.policy.releases_file import parse_releases

from tests.support.cli import run_pcrtool
KEY = rsa_key()


def run(*args, check=True):
    return run_pcrtool(*args, check=check)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "rel.json").write_text(releases_json(svns=(1, 2)))
    return tmp_path


def test_approve_signs_allowlisted_releases_with_their_svn(files):
    run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", files / "a.pcrsig")
    doc = A.Approvals.parse((files / "a.pcrsig").read_text())
    assert sorted(e.svn for e in doc.entries) == [1, 2]  # the not-allowed release is not approved
    releases, _ = parse_releases((files / "rel.json").read_text())
    want = {D.policy_pcr(r.selected(HashAlg.SHA256, [11])) for r in releases if r.allowed}
    assert {e.pol for e in doc.entries} == want
    for e in doc.entries:
        A.verify_entry(e, KEY.public_key())
    shown = json.loads(run("policy", "show", files / "a.pcrsig", "-k", files / "pub.pem", "--json=short").stdout)
    assert [e["signature"] for e in shown["entries"]] == ["valid", "valid"]


def test_show_with_wrong_key_fails_with_exit_3(files):
    run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", files / "a.pcrsig")
    other = rsa_key()
    (files / "other.pem").write_bytes(pem_public(other))
    p = run("policy", "show", files / "a.pcrsig", "-k", files / "other.pem", check=False)
    assert p.returncode == 3 and "Traceback" not in p.stderr


def test_append_merges(files):
    out = files / "a.pcrsig"
    run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", out)
    (files / "rel2.json").write_text(releases_json(svns=(3,), tag="x", not_allowed=0))
    run("policy", "approve", "-r", files / "rel2.json", "-k", files / "k.pem", "-o", out, "--append")
    assert sorted(e.svn for e in A.Approvals.parse(out.read_text()).entries) == [1, 2, 3]


def test_no_svn_gives_plain_systemd_entries_and_sha1_bank_is_sha256_signed(files):
    rel = {"releases": [{"name": "a", "version": "1", "svn": 1, "measurements": [
        {"pcr": 11, "sha256": "11" * 32, "sha1": "22" * 20}]}]}
    (files / "r.json").write_text(json.dumps(rel))
    p = run("policy", "approve", "-r", files / "r.json", "-k", files / "k.pem", "--no-svn", "--banks", "sha1,sha256")
    data = json.loads(p.stdout)
    assert set(data) == {"sha1", "sha256"}
    for bank in data.values():
        assert list(bank[0]) == ["pcrs", "pkfp", "pol", "sig"]
    for e in A.Approvals.parse(p.stdout).entries:
        A.verify_entry(e, KEY.public_key())


def test_offline_prepare_sign_with_openssl_attach(files):
    openssl = need_tool("openssl")
    run("policy", "prepare", "-r", files / "rel.json", "-k", files / "pub.pem", "-o", files / "u.pcrsig",
        "--request", files / "req.sign-request.json")
    req = json.loads((files / "req.sign-request.json").read_text())
    for item in req["tbs"]:
        tbs = files / item["file"]
        subprocess.run([openssl, "dgst", "-sha256", "-sign", str(files / "k.pem"), "-out", f"{tbs}.sig", str(tbs)],
                       check=True)
    run("policy", "attach", files / "u.pcrsig", "-k", files / "pub.pem", "--request",
        files / "req.sign-request.json", "-o", files / "s.pcrsig")
    doc = A.Approvals.parse((files / "s.pcrsig").read_text())
    assert len(doc.entries) == 2
    for e in doc.entries:
        A.verify_entry(e, KEY.public_key())


def test_attach_refuses_signature_by_another_key(files):
    run("policy", "prepare", "-r", files / "rel.json", "-k", files / "pub.pem", "-o", files / "u.pcrsig")
    other = rsa_key()
    doc = A.Approvals.parse((files / "u.pcrsig").read_text())
    import base64
    sigs = {e.tbs.hex(): base64.b64encode(other.sign(e.tbs, *_pkcs1())).decode() for e in doc.entries}
    (files / "sigs.json").write_text(json.dumps(sigs))
    p = run("policy", "attach", files / "u.pcrsig", "-k", files / "pub.pem", "--signatures", files / "sigs.json",
            "-o", files / "s.pcrsig", check=False)
    assert p.returncode == 3 and not (files / "s.pcrsig").exists()


def _pkcs1():
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    return padding.PKCS1v15(), hashes.SHA256()


def test_digest_command(files):
    out = json.loads(run("policy", "digest", "--pcr-values", "11:sha256=" + "00" * 32, "-k", files / "pub.pem",
                         "-r", files / "rel.json", "--json=short").stdout)
    zero = __import__("pcrtool.model", fromlist=["PcrValues"]).PcrValues()
    zero.set(HashAlg.SHA256, 11, bytes(32))
    assert out["policy_pcr"]["sha256"] == D.policy_pcr(zero).hex()
    assert out["policy_authorize"] == D.policy_authorize(D.public_key_name(KEY.public_key())).hex()
    assert out["allowlist"]["leaves"] == 2


@pytest.mark.parametrize("args", [["policy", "approve", "-r", "/nonexistent", "-k", "/nonexistent"],
                                  ["policy", "show", "/nonexistent"],
                                  ["policy", "digest"]])
def test_bad_input_is_one_line_error(args):
    p = run(*args, check=False)
    assert p.returncode in (1, 2) and "Traceback" not in p.stderr and p.stderr.count("\n") == 1
