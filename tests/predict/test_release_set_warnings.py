"""Loud release-set mistakes: `predict release` warns naming the entry, --strict fails (issue 18)."""

import json

import pytest

from pcrtool.predict.manifest import check_release_set, parse_allowlist
from tests.support.cli import run_pcrtool as run

def manifest(d, version, svn, name="fooos"):
    p = d / f"{name}-{version}.toml"
    p.write_text(f'name = "{name}"\nversion = "{version}"\nsvn = {svn}\n'
                 f'[values]\n"11" = {{sha256 = "{svn:064x}"}}\n')
    return p


def allowlist(d, *entries):
    p = d / "allow.toml"
    p.write_text("".join("[[allow]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in e.items())
                         for e in entries))
    return p


def warnings(stderr):
    return [line for line in stderr.splitlines() if "warning:" in line and "no event list" not in line]


@pytest.fixture
def rel(tmp_path):
    return [manifest(tmp_path, "2.0", 1), manifest(tmp_path, "2.1", 2)]


def test_allowlist_svn_differing_from_the_manifest_is_named_and_strict_fails(tmp_path, rel):
    allow = allowlist(tmp_path, {"name": "fooos", "version": "2.1", "svn": 1},
                      {"name": "fooos", "version": "2.0"})
    p = run("predict", "release", *rel, "--allowlist", allow, "-o", tmp_path / "p.json")
    assert p.returncode == 0, p.stderr
    assert warnings(p.stderr) == [
        f"pcrtool: warning: {allow} allow[0] (name='fooos', version='2.1', svn=1) does not allow the release "
        "it names: its manifest says otherwise (fooos 2.1 has svn=2), so that release is NOT allowed"]
    assert "wrote 2 release(s)" in p.stderr and "(1 allowed)" in p.stderr
    allowed = {r["version"]: r["allowed"] for r in json.loads((tmp_path / "p.json").read_text())["releases"]}
    assert allowed == {"2.0": True, "2.1": False}
    p = run("predict", "release", *rel, "--allowlist", allow, "-o", tmp_path / "q.json", "--strict")
    assert p.returncode == 1 and "1 release-set warning(s) with --strict" in p.stderr
    assert not (tmp_path / "q.json").exists()


def test_entry_matching_nothing_and_nothing_allowed(tmp_path, rel):
    allow = allowlist(tmp_path, {"name": "baros", "version": "*"})
    p = run("predict", "release", *rel, "--allowlist", allow, "--strict")
    assert p.returncode == 1 and p.stdout == ""
    assert warnings(p.stderr) == [
        f"pcrtool: warning: {allow} allow[0] (name='baros', version='*') matches no release given",
        f"pcrtool: warning: {allow} allows none of the 2 release(s): `policy approve` will have nothing to approve"]


def test_svn_not_rising_and_shared_svn(tmp_path):
    rels = [manifest(tmp_path, "2.0", 3), manifest(tmp_path, "2.1~rc1", 2), manifest(tmp_path, "2.10", 3)]
    p = run("predict", "release", *rels)
    assert p.returncode == 0
    # UAPI order: 2.0 < 2.1~rc1 < 2.10 (the ~ sorts before the release, 10 > 1 numerically)
    assert warnings(p.stderr) == [
        "pcrtool: warning: svn does not rise with the version: fooos 2.0 has svn=3 but the later fooos 2.1~rc1 has svn=2",
        "pcrtool: warning: fooos 2.0 and fooos 2.10 share svn=3: advance-floor cannot revoke one without the other",
        "pcrtool: warning: no --allowlist: every release is marked allowed"]
    assert run("predict", "release", *rels, "--strict").returncode == 1


def test_a_clean_release_set_gives_no_finding():
    allow = parse_allowlist(b'[[allow]]\nname = "fooos"\nversion = "*"\n')
    # a release the allowlist does not name is excluded on purpose: not a finding
    assert check_release_set([("fooos", "2.0", 1), ("fooos", "2.1", 2), ("baros", "1", 1)], allow) == []
    assert check_release_set([("fooos", "2.0", 1), ("fooos", "2.1", 2)], allow) == []
