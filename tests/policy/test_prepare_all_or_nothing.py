"""`policy prepare` and `pe prepare` write several files (approvals, request manifest, one tbs
file per entry); a failure at any of them leaves none of the new files behind (exit 1)."""

import os
import subprocess

import pytest
from helpers_policy import pem_public, releases_json, rsa_key

from tests.support.cli import run_pcrtool as run

KEY = rsa_key()


@pytest.fixture
def files(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "in" / "rel.json").write_text(releases_json(svns=(1, 2)))
    (tmp_path / "out").mkdir()
    return tmp_path


def _prepare(files, output, request):
    return run("policy", "prepare", "-r", files / "in" / "rel.json", "-k", files / "in" / "pub.pem", "-o", output,
               "--request", request)


def _left(files):
    return sorted(p.name for p in (files / "out").iterdir())


def test_request_in_missing_directory_leaves_no_approvals(files):
    out = files / "out" / "u.pcrsig"
    r = _prepare(files, out, files / "out" / "missing-dir" / "r.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _left(files) == []


def test_request_manifest_that_cannot_be_written_removes_the_tbs_files(files):
    (files / "out" / "r.sign-request.json").mkdir()  # the manifest write fails after the tbs files
    r = _prepare(files, files / "out" / "u.pcrsig", files / "out" / "r.sign-request.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _left(files) == ["r.sign-request.json"]  # only the directory that was there before


def test_approvals_that_cannot_be_written_remove_the_request(files):
    r = _prepare(files, files / "out" / "missing-dir" / "u.pcrsig", files / "out" / "r.sign-request.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _left(files) == []


def test_success_writes_every_file(files):
    r = _prepare(files, files / "out" / "u.pcrsig", files / "out" / "r.sign-request.json")
    assert r.returncode == 0, r.stderr
    assert _left(files) == ["r.0.tbs", "r.1.tbs", "r.sign-request.json", "u.pcrsig"]


def test_existing_request_files_are_kept_on_failure(files):
    (files / "out" / "r.0.tbs").write_bytes(b"older")
    r = _prepare(files, files / "out" / "missing-dir" / "u.pcrsig", files / "out" / "r.sign-request.json")
    assert r.returncode == 1
    assert _left(files) == ["r.0.tbs"]  # replaced atomically, never deleted (it was not ours)


def test_pe_prepare_removes_the_sattrs_file_when_the_manifest_fails(files):
    from pathlib import Path
    stub = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
    if not stub.is_file():
        from tests.support import need_tool
        need_tool(str(stub))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", files / "in" / "k.pem",
                    "-out", files / "in" / "c.pem", "-subj", "/CN=t", "-days", "30"], check=True, capture_output=True)
    (files / "out" / "img.sign-request.json").mkdir()
    r = run("pe", "prepare", stub, "--cert", files / "in" / "c.pem", "--request", files / "out" / "img.sign-request.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _left(files) == ["img.sign-request.json"]
    assert not os.path.exists(files / "out" / "img.sattrs.der")


def test_verity_prepare_removes_the_roothash_file_when_the_manifest_fails(files):
    (files / "out" / "r.sign-request.json").mkdir()
    r = run("verity", "prepare", "ab" * 32, "-o", files / "out" / "r.sign-request.json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert _left(files) == ["r.sign-request.json"]
