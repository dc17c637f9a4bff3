"""Interop with systemd-repart (the installed v252): a DDI with root, root-verity and
root-verity-sig partitions made by repart itself is verified by pcrtool, its hash partition is
reproduced byte for byte, and pcrtool's verity-sig partition for the same key is identical."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from helpers_verity import cli, data_bytes, need_tool, run

from pcrtool.verity.io import format_file
from pcrtool.verity.superblock import parse_superblock

SEED = "b4d4f6a0-6c0e-4b5f-9f47-2f0c1b1d4a11"


@pytest.fixture(scope="module")
def ddi(pki, tmp_path_factory):
    repart = need_tool("systemd-repart")
    d = tmp_path_factory.mktemp("repart")
    (d / "payload.img").write_bytes(data_bytes(3 << 20, seed=31))
    defs = d / "defs"
    defs.mkdir()
    (defs / "10-root.conf").write_text(
        f"[Partition]\nType=root\nVerity=data\nVerityMatchKey=root\nCopyBlocks={d / 'payload.img'}\n")
    (defs / "20-verity.conf").write_text("[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n")
    (defs / "30-sig.conf").write_text("[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n")
    proc = run(repart, f"--definitions={defs}", "--empty=create", "--size=auto", "--dry-run=no",
               f"--seed={SEED}", f"--private-key={pki.leaf_key}", f"--certificate={pki.leaf_cert}",
               "--json=short", d / "disk.img")
    table = json.loads(proc.stdout)
    disk = (d / "disk.img").read_bytes()
    parts = {}
    for entry in table:
        kind = entry["type"].rsplit("-", 1)[-1] if entry["type"].endswith(("verity", "sig")) else "data"
        path = d / f"{kind}.part"
        path.write_bytes(disk[entry["offset"]:entry["offset"] + entry["raw_size"]])
        parts[kind] = (path, entry)
    root = next(e["roothash"] for _, e in parts.values() if e["roothash"])
    return d, parts, root


def test_pcrtool_verifies_the_repart_image(ddi):
    _, parts, root = ddi
    code, out, err = cli("--json=short", "verity", "verify", parts["data"][0], parts["verity"][0], root)
    assert code == 0, err
    assert json.loads(out)["ok"]


def test_pcrtool_reproduces_the_repart_hash_partition(ddi, tmp_path):
    _, parts, root = ddi
    hash_part = parts["verity"][0].read_bytes()
    params = parse_superblock(hash_part)  # repart 252: sha256, format 1, 512/512 blocks, random salt
    result = format_file(str(parts["data"][0]), params, hash_path=str(tmp_path / "h"))
    assert result.root_hash.hex() == root
    ours = (tmp_path / "h").read_bytes()
    assert hash_part[:len(ours)] == ours and hash_part[len(ours):].count(0) == len(hash_part) - len(ours)


def test_partition_uuids_are_the_root_hash_halves(ddi):
    _, parts, root = ddi
    code, out, _ = cli("--json=short", "verity", "format", parts["data"][0], parts["data"][0].with_suffix(".h"),
                       "--salt", parse_superblock(parts["verity"][0].read_bytes()).salt.hex(),
                       "--data-block-size", "512", "--hash-block-size", "512")
    assert code == 0
    uuids = json.loads(out)["partitionUuids"]
    assert json.loads(out)["rootHash"] == root
    assert uuids["data"] == parts["data"][1]["uuid"] == str(uuidlib.UUID(root[:32]))
    assert uuids["hash"] == parts["verity"][1]["uuid"] == str(uuidlib.UUID(root[32:]))


def test_repart_signature_partition_is_identical_to_pcrtool_sign(ddi, pki, tmp_path):
    _, parts, root = ddi
    sig_part = parts["sig"][0]
    code, out, err = cli("--json=short", "verity", "show-sig", sig_part, "-c", pki.leaf_cert)
    assert code == 0, err
    assert json.loads(out)["verified"] and json.loads(out)["rootHash"] == root
    code, _, err = cli("verity", "sign", root, "-k", pki.leaf_key, "-c", pki.leaf_cert,
                       "--sig-partition", tmp_path / "ours.sig", "--partition-size", str(len(sig_part.read_bytes())))
    assert code == 0, err
    assert (tmp_path / "ours.sig").read_bytes() == sig_part.read_bytes()


def test_offline_flow_gives_the_repart_signature_partition(ddi, pki, tmp_path):
    _, parts, root = ddi
    req = tmp_path / "ddi.sign-request.json"
    assert cli("verity", "prepare", root, "-o", req, "-c", pki.leaf_cert)[0] == 0
    run(need_tool("openssl"), "dgst", "-sha256", "-sign", pki.leaf_key, "-out", tmp_path / "ddi.roothash.sig",
        tmp_path / "ddi.roothash")
    code, _, err = cli("verity", "attach", req, "-c", pki.leaf_cert, "--sig-partition", tmp_path / "off.sig")
    assert code == 0, err
    assert (tmp_path / "off.sig").read_bytes() == parts["sig"][0].read_bytes()
