"""Verification both ways: `veritysetup verify` accepts pcrtool's hash files, pcrtool accepts
veritysetup's, and a flipped byte is found at the block veritysetup names."""

from __future__ import annotations

import json
import re

import pytest
from helpers_verity import UUID, cli, data_bytes, need_tool, run, veritysetup_format

SALT_HEX = "5a" * 32


def _flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def _pcrtool_format(*args):
    code, out, err = cli("--json=short", "verity", "format", *args)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("extra", [
    [],
    ["--no-superblock"],
    ["--hash", "sha1", "--format", "0", "--data-block-size", "512", "--hash-block-size", "512"],
    ["--hash", "sha512", "--salt", "-"],
])
def test_veritysetup_verify_accepts_pcrtool_hash_files(tmp_path, extra):
    (tmp_path / "data").write_bytes(data_bytes(300 * 4096, seed=9))
    salt = [] if "--salt" in extra else ["--salt", SALT_HEX]
    out = _pcrtool_format(tmp_path / "data", tmp_path / "h", *salt, *extra, "--no-progress")
    argv = [need_tool("veritysetup"), "verify", tmp_path / "data", tmp_path / "h", out["rootHash"]]
    if "--no-superblock" in extra:
        argv += ["--no-superblock", f"--salt={SALT_HEX}", f"--hash={out['hashAlgorithm']}",
                 f"--data-blocks={out['dataBlocks']}"]
    assert run(*argv, check=False).returncode == 0


def test_veritysetup_verify_accepts_hash_area_inside_the_data_file(tmp_path):
    img = tmp_path / "img"
    img.write_bytes(data_bytes(1 << 20, seed=4))
    out = _pcrtool_format(img, "--salt", SALT_HEX, "--uuid", UUID)
    assert out["hashOffset"] == 1 << 20 and out["dataBlocks"] == 256
    proc = run(need_tool("veritysetup"), "verify", img, img, out["rootHash"], f"--hash-offset={1 << 20}",
               check=False)
    assert proc.returncode == 0, proc.stderr
    code, _, err = cli("verity", "verify", img, img, out["rootHash"], "--hash-offset", str(1 << 20))
    assert code == 0, err


@pytest.mark.parametrize("sb", [True, False])
def test_pcrtool_verify_accepts_veritysetup_hash_files(tmp_path, sb):
    (tmp_path / "data").write_bytes(data_bytes(1 << 20, seed=8))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "h", superblock=sb, alg="sha512", dbs=512, hbs=1024)
    args = ["verity", "verify", tmp_path / "data", tmp_path / "h", oracle.root]
    if not sb:
        args += ["--no-superblock", "--salt", SALT_HEX, "--hash", "sha512", "--data-block-size", "512",
                 "--hash-block-size", "1024"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "verified: 2048 data blocks" in out


def test_wrong_root_hash_is_a_mismatch(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(1 << 20, seed=8))
    veritysetup_format(tmp_path / "data", tmp_path / "h")
    code, _, err = cli("verity", "verify", tmp_path / "data", tmp_path / "h", "00" * 32)
    assert code == 3
    assert "hash block 0 of level 1 does not match the root hash" in err


@pytest.mark.parametrize("offset", [0, 4095, 4096 * 77 + 5, (1 << 20) - 1])
def test_flipped_data_byte_is_reported_with_the_block_veritysetup_names(tmp_path, offset):
    data = tmp_path / "data"
    data.write_bytes(data_bytes(1 << 20, seed=12))
    oracle = veritysetup_format(data, tmp_path / "h")
    _flip(data, offset)
    vs = run(need_tool("veritysetup"), "verify", data, tmp_path / "h", oracle.root, check=False)
    assert vs.returncode != 0
    position = int(re.search(rb"Verification failed at position (\d+)", vs.stderr).group(1))
    code, out, err = cli("--json=short", "verity", "verify", data, tmp_path / "h", oracle.root)
    assert code == 3
    report = json.loads(out)
    assert report["kind"] == "data"
    assert report["block"] == offset // 4096 == position // 4096
    assert report["offset"] == position
    assert f"data block {offset // 4096} does not match its hash" in err


def test_first_of_several_bad_blocks_is_reported(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(data_bytes(8 << 20, seed=13))
    oracle = veritysetup_format(data, tmp_path / "h")
    for off in (7 << 20, 3 << 20, (5 << 20) + 17):
        _flip(data, off)
    code, out, _ = cli("--json=short", "verity", "verify", data, tmp_path / "h", oracle.root)
    assert code == 3 and json.loads(out)["block"] == (3 << 20) // 4096


@pytest.mark.parametrize("where,level", [("top", 1), ("level0", 0)])
def test_corrupt_hash_block_is_reported_as_hash_corruption(tmp_path, where, level):
    data = tmp_path / "data"
    data.write_bytes(data_bytes(1 << 20, seed=14))
    oracle = veritysetup_format(data, tmp_path / "h")  # superblock, then level 1 (1 block), level 0 (2)
    _flip(tmp_path / "h", 4096 + 10 if where == "top" else 4096 * 3 + 100)
    code, out, _ = cli("--json=short", "verity", "verify", data, tmp_path / "h", oracle.root)
    report = json.loads(out)
    assert code == 3 and report["kind"] == "hash" and report["level"] == level
    assert report["block"] == (0 if where == "top" else 1)


def test_nonzero_spare_area_is_reported(tmp_path):
    """257 blocks: the second level-0 block holds one digest; its unused bytes must be zero."""
    data = tmp_path / "data"
    data.write_bytes(data_bytes(257 * 4096, seed=15))
    oracle = veritysetup_format(data, tmp_path / "h", superblock=False)
    # levels: level 1 = 1 block at 0, level 0 = 3 blocks at 4096; block 2 holds one digest
    _flip(tmp_path / "h", 4096 * 3 + 64)
    vs = run(need_tool("veritysetup"), "verify", data, tmp_path / "h", oracle.root, "--no-superblock",
             f"--salt={SALT_HEX}", check=False)
    assert vs.returncode != 0  # veritysetup refuses it as well
    code, out, err = cli("--json=short", "verity", "verify", data, tmp_path / "h", oracle.root,
                         "--no-superblock", "--salt", SALT_HEX)
    assert code == 3
    report = json.loads(out)
    assert report["kind"] == "hash" and report["level"] == 0


def test_superblock_parameters_that_contradict_options_are_refused(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(64 * 4096, seed=1))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "h")
    code, _, err = cli("verity", "verify", tmp_path / "data", tmp_path / "h", oracle.root, "--hash", "sha1")
    assert code == 3 and "superblock says hash_alg" in err
