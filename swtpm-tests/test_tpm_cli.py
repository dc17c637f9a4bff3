"""`pcrtool tpm pcrread | extend | caps | nv …` against a real swtpm (CLI conventions: data on
stdout, JSON with --json, one-line errors with hints and exit codes on stderr)."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import pytest


@pytest.fixture
def run(capsys, monkeypatch):
    """``run(*args)``: pcrtool.cli.main in-process (a subprocess per call costs ~1 s of imports)."""
    from pcrtool.cli import main

    def run(*args, tcti=None, env_tcti=None):
        monkeypatch.delenv("PCRTOOL_TCTI", raising=False)
        if env_tcti:
            monkeypatch.setenv("PCRTOOL_TCTI", env_tcti)
        capsys.readouterr()
        with pytest.raises(SystemExit) as e:
            main([*args] + (["--tcti", tcti] if tcti else []))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=e.value.code, stdout=out.out, stderr=out.err)

    return run


def test_pcrread_text_and_json(swtpm, run):
    out = run("tpm", "pcrread", "sha256:0,23+sha1:17", env_tcti=swtpm.tcti)  # $PCRTOOL_TCTI
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["0:sha256=" + "00" * 32, "23:sha256=" + "00" * 32,
                                       "17:sha1=" + "ff" * 20]
    out = run("--json=short", "tpm", "pcrread", "sha256:7", tcti=swtpm.tcti)
    assert json.loads(out.stdout) == {"sha256": {"7": "00" * 32}}


def test_extend_digest_and_data(swtpm, run):
    digest = hashlib.sha256(b"x").hexdigest()
    out = run("tpm", "extend", "16", "--digest", f"sha256={digest}", tcti=swtpm.tcti)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "16:sha256=" + hashlib.sha256(bytes(32) + bytes.fromhex(digest)).hexdigest()
    out = run("-j", "tpm", "extend", "15", "--data", "hello", tcti=swtpm.tcti)
    data = json.loads(out.stdout)
    assert set(data) == {"sha1", "sha256", "sha384", "sha512"}
    assert data["sha1"]["15"] == hashlib.sha1(bytes(20) + hashlib.sha1(b"hello").digest()).hexdigest()


def test_extend_usage_errors(swtpm, run):
    out = run("tpm", "extend", "16", tcti=swtpm.tcti)
    assert out.returncode == 2 and "either --digest" in out.stderr
    out = run("tpm", "extend", "16", "--digest", "sha256=abcd", tcti=swtpm.tcti)
    assert out.returncode == 2 and "expected 32" in out.stderr
    out = run("tpm", "extend", "24", "--data", "x", tcti=swtpm.tcti)
    assert out.returncode == 2


def test_caps_json(swtpm, run):
    out = run("--json=short", "tpm", "caps", tcti=swtpm.tcti)
    data = json.loads(out.stdout)
    assert data["banks"] == ["sha1", "sha256", "sha384", "sha512"]
    assert data["commands"]["PolicyAuthorizeNV"] is True and data["manufacturer"] == "IBM"


def test_nv_counter_lifecycle(swtpm, run):
    idx = "0x01800500"
    out = run("tpm", "nv", "define", idx, "--attributes", "ownerread|ownerwrite|authread|authwrite|no_da|nt=counter",
              tcti=swtpm.tcti)
    assert out.returncode == 0, out.stderr
    assert "(counter, 8 bytes)" in out.stdout
    assert run("tpm", "nv", "increment", idx, tcti=swtpm.tcti).stdout.strip() == "1"
    assert run("tpm", "nv", "increment", idx, "--owner", tcti=swtpm.tcti).stdout.strip() == "2"
    data = json.loads(run("-j", "tpm", "nv", "read", idx, tcti=swtpm.tcti).stdout)
    assert data == {"index": idx, "type": "counter", "data": "0000000000000002", "value": 2}
    out = run("tpm", "nv", "write", idx, "00", tcti=swtpm.tcti)
    assert out.returncode == 1 and "TPM_RC_ATTRIBUTES" in out.stderr and "hint:" in out.stderr
    rows = json.loads(run("-j", "tpm", "nv", "list", tcti=swtpm.tcti).stdout)
    assert [r["index"] for r in rows] == [idx] and rows[0]["written"] is True
    assert run("tpm", "nv", "undefine", idx, tcti=swtpm.tcti).returncode == 0
    out = run("tpm", "nv", "read", idx, tcti=swtpm.tcti)
    assert out.returncode == 1 and "TPM_RC_HANDLE" in out.stderr


def test_nv_ordinary_and_bits(swtpm, run):
    out = run("tpm", "nv", "define", "0x01800600", "--size", "4", tcti=swtpm.tcti)
    assert out.returncode == 0, out.stderr
    assert run("tpm", "nv", "write", "0x01800600", "deadbeef", tcti=swtpm.tcti).returncode == 0
    assert run("tpm", "nv", "read", "0x01800600", tcti=swtpm.tcti).stdout.strip() == "deadbeef"
    out = run("tpm", "nv", "define", "0x01800700", "--attributes", "ownerread|ownerwrite|authread|authwrite|nt=bits",
              tcti=swtpm.tcti)
    assert out.returncode == 0, out.stderr
    assert run("tpm", "nv", "setbits", "0x01800700", "0x5", tcti=swtpm.tcti).stdout.strip() == "0x5"
    assert run("tpm", "nv", "setbits", "0x01800700", "0xa", tcti=swtpm.tcti).stdout.strip() == "0xf"
    out = run("tpm", "nv", "define", "0x01800800", "--attributes", "bogus", tcti=swtpm.tcti)
    assert out.returncode == 2 and "unknown NV attribute" in out.stderr
    out = run("tpm", "nv", "define", "0x02000000", tcti=swtpm.tcti)
    assert out.returncode == 2 and "outside" in out.stderr
