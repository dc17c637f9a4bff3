"""pcrtool.pcrlock without systemd: parsing refuses bad files with one-line errors, the tree
writer refuses release sets systemd could never match, the CLI's exit codes."""

from __future__ import annotations

import hashlib
import json

import pytest

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.pcrlock import PcrlockFile, PcrlockPolicy, Record, lock_kernel_initrd, lock_secureboot_policy
from pcrtool.pcrlock.tree import ReleaseComponents, predict_tree, read_tree, tree_files
from tests.support.cli import run_pcrtool as run


@pytest.mark.parametrize("text", ["", "[]", '{"records": 5}', '{"records": [5]}', '{"records": [{"pcr": 24}]}',
                                  '{"records": [{"pcr": 1, "digests": [{"hashAlg": "sha256", "digest": "zz"}]}]}',
                                  '{"records": [{"pcr": 1, "digests": [{"hashAlg": "sha256", "digest": "00"}]}]}'])
def test_bad_pcrlock_files(text):
    with pytest.raises(FormatError):
        PcrlockFile.parse(text)


def test_round_trip_and_unknown_banks_skipped():
    f = lock_kernel_initrd(b"initrd")
    assert PcrlockFile.parse(f.dumps()) == f
    doc = json.loads(f.dumps())
    doc["records"][0]["digests"].append({"hashAlg": "whirlpool", "digest": "00" * 64})
    assert PcrlockFile.parse(json.dumps(doc)) == f  # as systemd: banks it does not know are ignored
    assert f.records[0].digest(HashAlg.SHA256) == hashlib.sha256(b"initrd").digest()


@pytest.mark.parametrize("doc", [{}, {"pcrValues": 5}, {"pcrValues": [{"pcr": 11, "values": []}]},
                                 {"pcrValues": [{"pcr": 11, "values": ["00"]}]},
                                 {"pcrBank": "md5", "pcrValues": []},
                                 {"pcrValues": [{"pcr": 11, "values": ["00" * 32]}, {"pcr": 11, "values": ["00" * 32]}]}])
def test_bad_policies(doc):
    with pytest.raises(FormatError):
        PcrlockPolicy.parse(json.dumps(doc))


def test_policy_is_or_within_and_across_pcrs():
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    pol = PcrlockPolicy.parse(json.dumps({"pcrBank": "sha256", "pcrValues": [
        {"pcr": 7, "values": [a.hex()]}, {"pcr": 11, "values": [b.hex(), c.hex()]}]}))

    def values(v7, v11):
        v = PcrValues()
        v.set(HashAlg.SHA256, 7, v7)
        if v11 is not None:
            v.set(HashAlg.SHA256, 11, v11)
        return v
    assert pol.accepts(values(a, b))[0] and pol.accepts(values(a, c))[0]
    ok, why = pol.accepts(values(c, b))
    assert not ok and why[0].startswith("PCR 7")
    assert not pol.accepts(values(a, None))[0]


def test_secureboot_policy_needs_the_secureboot_variable():
    with pytest.raises(UsageError):
        lock_secureboot_policy({"PK": b""})
    f = lock_secureboot_policy({"SecureBoot": b"\x01"})
    assert len(f.records) == 5 and {r.pcr for r in f.records} == {7}  # PK, KEK, db, dbx empty; no dbt/dbr


def test_tree_refuses_a_release_without_a_component_others_have():
    one = PcrlockFile((Record.of_data(11, b"x"),))
    with pytest.raises(UsageError, match="650-uki"):
        tree_files([ReleaseComponents("a", "1", {"650-uki": one}), ReleaseComponents("b", "2", {})])
    with pytest.raises(UsageError):
        tree_files([ReleaseComponents("a", "1", {"650-uki": one}), ReleaseComponents("a", "1", {"650-uki": one})])


def test_tree_prediction_is_every_combination_of_variants():
    files = tree_files([ReleaseComponents("a", "1", {"650-uki": PcrlockFile((Record.of_data(11, b"a"),)),
                                                     "700-x": PcrlockFile((Record.of_data(11, b"x"),))}),
                        ReleaseComponents("b", "2", {"650-uki": PcrlockFile((Record.of_data(11, b"b"),)),
                                                     "700-x": PcrlockFile((Record.of_data(11, b"y"),))})])
    comps = read_tree(files)
    assert [c.id for c in comps] == ["650-uki", "700-x"] and all(len(c.variants) == 2 for c in comps)

    def ext(v, data):
        return hashlib.sha256(v + hashlib.sha256(data).digest()).digest()
    z = bytes(32)
    want = {ext(ext(z, p), q) for p in (b"a", b"b") for q in (b"x", b"y")}  # 4: the AND-of-ORs over-approximation
    assert predict_tree(comps, [11])[11] == want


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "bad.pcrlock").write_text("{")
    r = run("pcrlock", "show", tmp_path / "bad.pcrlock")
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("pcrlock", "lock-secureboot-policy", "--var", "Bogus=x", "-o", tmp_path / "o")
    assert r.returncode == 2 and not (tmp_path / "o").exists()
    (tmp_path / "exists").mkdir()
    r = run("pcrlock", "tree", "--demo-releases", "pcrtool/data/demo/releases.json", "-o", tmp_path / "exists")
    assert r.returncode == 2
