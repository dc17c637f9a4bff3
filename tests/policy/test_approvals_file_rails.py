"""Approvals files are release state: never replaced silently, never a mix of two keys, and
"nothing to approve" says why (issue 18)."""

import json

import pytest
from helpers_policy import pem_private, releases_doc, releases_json, rsa_key

from pcrtool.policy import approvals as A
from pcrtool.policy import digests as D

from tests.support.cli import run_pcrtool
KEY, OTHER = rsa_key(), rsa_key()


def run(*args):
    return run_pcrtool(*args)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "other.pem").write_bytes(pem_private(OTHER))
    (tmp_path / "rel.json").write_text(releases_json(svns=(1, 2)))
    (tmp_path / "rel2.json").write_text(releases_json(svns=(3,), tag="x", not_allowed=0))
    return tmp_path


def test_approve_refuses_to_replace_an_existing_file_without_force(files):
    out = files / "a.pcrsig"
    assert run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", out).returncode == 0
    before = out.read_bytes()
    p = run("policy", "approve", "-r", files / "rel2.json", "-k", files / "k.pem", "-o", out)
    assert p.returncode == 1 and "exists already" in p.stderr and "--append" in p.stderr and "--force" in p.stderr
    assert out.read_bytes() == before
    p = run("policy", "approve", "-r", files / "rel2.json", "-k", files / "k.pem", "-o", out, "--force")
    assert p.returncode == 0, p.stderr
    assert [e.svn for e in A.Approvals.parse(out.read_text()).entries] == [3]
    p = run("policy", "approve", "-r", files / "rel2.json", "-k", files / "k.pem", "-o", out, "--force", "--append")
    assert p.returncode == 2 and "contradict" in p.stderr


def test_prepare_refuses_to_replace_an_existing_file_without_force(files):
    (files / "pub.pem").write_text(run("key", "public", files / "k.pem").stdout)
    out = files / "u.pcrsig"
    out.write_text("{}")
    p = run("policy", "prepare", "-r", files / "rel.json", "-k", files / "pub.pem", "-o", out)
    assert p.returncode == 1 and "exists already" in p.stderr and out.read_text() == "{}"
    assert run("policy", "prepare", "-r", files / "rel.json", "-k", files / "pub.pem", "-o", out,
               "--force").returncode == 0


def test_append_refuses_entries_of_another_key_naming_both(files):
    out = files / "a.pcrsig"
    assert run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", out).returncode == 0
    before = out.read_bytes()
    p = run("policy", "approve", "-r", files / "rel2.json", "-k", files / "other.pem", "-o", out, "--append")
    assert p.returncode == 1 and "refusing to mix two keys" in p.stderr
    assert D.public_key_fingerprint(KEY.public_key()).hex()[:16] in p.stderr
    assert D.public_key_fingerprint(OTHER.public_key()).hex()[:16] in p.stderr
    assert out.read_bytes() == before
    # the same key appends
    assert run("policy", "approve", "-r", files / "rel2.json", "-k", files / "k.pem", "-o", out,
               "--append").returncode == 0
    assert sorted(e.svn for e in A.Approvals.parse(out.read_text()).entries) == [1, 2, 3]


def test_approve_to_stdout_with_dash(files):
    p = run("policy", "approve", "-r", files / "rel.json", "-k", files / "k.pem", "-o", "-")
    assert p.returncode == 0, p.stderr
    assert sorted(e.svn for e in A.Approvals.parse(p.stdout).entries) == [1, 2]


def test_nothing_to_approve_says_why_with_exit_1(files):
    doc = releases_doc(svns=(1,))
    for r in doc["releases"]:
        r["allowed"] = False
    (files / "none.json").write_text(json.dumps(doc))
    p = run("policy", "approve", "-r", files / "none.json", "-k", files / "k.pem", "-o", files / "a.pcrsig")
    assert p.returncode == 1
    assert "nothing to approve: all 2 release(s)" in p.stderr and "not allowed (os-1.1" in p.stderr
    assert not (files / "a.pcrsig").exists()
