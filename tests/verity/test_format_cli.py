"""`pcrtool verity format`: salts, seeds, UUIDs, refusals, and no output on errors."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from helpers_verity import cli, data_bytes, need_tool, run, veritysetup_format

from pcrtool.verity.superblock import parse_superblock

SEED = "b4d4f6a0-6c0e-4b5f-9f47-2f0c1b1d4a11"


def _fmt(*args):
    code, out, err = cli("--json=short", "verity", "format", *args)
    return code, (json.loads(out) if code == 0 else None), err


def _openssl_hmac(key_hex: str, message: bytes) -> str:
    """HMAC-SHA256 by the openssl command line (the oracle for repart's derivation)."""
    proc = run(need_tool("openssl"), "mac", "-digest", "SHA256", "-macopt", f"hexkey:{key_hex}", "HMAC",
               input=message)
    return proc.stdout.decode().strip().lower()


def test_seed_derives_salt_and_uuid_as_systemd_repart(tmp_path):
    """salt = HMAC-SHA256(seed, "verity-salt"); UUID = HMAC-SHA256(seed, "verity-uuid")[:16] as v4."""
    (tmp_path / "data").write_bytes(data_bytes(256 * 4096, seed=21))
    code, out, err = _fmt(tmp_path / "data", tmp_path / "h", "--seed", SEED)
    assert code == 0, err
    seed_hex = uuidlib.UUID(SEED).hex
    assert out["salt"] == _openssl_hmac(seed_hex, b"verity-salt")
    raw = bytearray(bytes.fromhex(_openssl_hmac(seed_hex, b"verity-uuid"))[:16])
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    assert out["uuid"] == str(uuidlib.UUID(bytes=bytes(raw)))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs", salt=bytes.fromhex(out["salt"]), uuid=out["uuid"])
    assert out["rootHash"] == oracle.root
    assert (tmp_path / "h").read_bytes() == oracle.hash_bytes
    # repart names the partitions after the root hash halves
    assert out["partitionUuids"]["data"].replace("-", "") == oracle.root[:32]
    assert out["partitionUuids"]["hash"].replace("-", "") == oracle.root[32:]


def test_default_salt_and_uuid_are_random_like_veritysetup(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(16 * 4096, seed=22))
    a = _fmt(tmp_path / "data", tmp_path / "h1")[1]
    b = _fmt(tmp_path / "data", tmp_path / "h2")[1]
    assert a["saltSource"] == "random" and len(a["salt"]) == 64
    assert a["salt"] != b["salt"] and a["uuid"] != b["uuid"] and a["rootHash"] != b["rootHash"]
    assert uuidlib.UUID(a["uuid"]).version == 4
    sb = parse_superblock((tmp_path / "h1").read_bytes())
    assert sb.salt.hex() == a["salt"]
    proc = run(need_tool("veritysetup"), "verify", tmp_path / "data", tmp_path / "h1", a["rootHash"], check=False)
    assert proc.returncode == 0


def test_root_hash_file_has_no_newline(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(4 * 4096, seed=23))
    out = _fmt(tmp_path / "data", tmp_path / "h", "--salt", "-", "--root-hash-file", tmp_path / "rh")[1]
    assert (tmp_path / "rh").read_bytes() == out["rootHash"].encode()


def test_unaligned_image_is_refused_and_nothing_is_written(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(5000, seed=24))
    code, _, err = _fmt(tmp_path / "data", tmp_path / "h")
    assert code == 2
    assert "904 bytes unprotected" in err and "--data-blocks 1" in err
    assert not (tmp_path / "h").exists()


def test_explicit_data_blocks_accepts_the_tail_with_a_warning(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(5000, seed=24))
    code, out, err = _fmt(tmp_path / "data", tmp_path / "h", "--data-blocks", "1", "--salt", "-",
                          "--no-superblock")
    assert code == 0
    assert "bytes 4096…4999" in err and "not protected" in err
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs", salt=None, superblock=False)
    assert out["rootHash"] == oracle.root


@pytest.mark.parametrize("args,message", [
    (["--data-blocks", "3"], "exceeds"),
    (["--hash", "sha384"], "not supported for dm-verity"),
    (["--hash-block-size", "3000"], "not a power of two"),
    (["--format", "2"], "--format must be 0 or 1"),
    (["--salt", "zz"], "salt is not hex"),
    (["--salt", "00", "--seed", SEED], "exclude each other"),
    (["--no-superblock", "--hash-offset", "512"], "not a multiple of the hash block size"),
    (["--hash-offset", "1000"], "not a multiple of 512"),
    (["--no-superblock", "--uuid", SEED], "--uuid needs a superblock"),
])
def test_bad_options_are_usage_errors_without_output(tmp_path, args, message):
    (tmp_path / "data").write_bytes(data_bytes(2 * 4096, seed=25))
    code, _, err = _fmt(tmp_path / "data", tmp_path / "h", *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "h").exists()


def test_hash_area_overlapping_the_data_is_refused_before_writing(tmp_path):
    img = tmp_path / "img"
    content = data_bytes(8 * 4096, seed=26)
    img.write_bytes(content)
    code, _, err = _fmt(img, "--hash-offset", "8192", "--data-blocks", "4")
    assert code == 2 and "overlaps" in err
    assert img.read_bytes() == content


def test_missing_data_file_is_one_line(tmp_path):
    code, _, err = _fmt(tmp_path / "nope", tmp_path / "h")
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_pipe_is_refused_without_blocking(tmp_path):
    import os
    os.mkfifo(tmp_path / "fifo")
    code, _, err = _fmt(tmp_path / "fifo", tmp_path / "h", "--data-blocks", "1")
    assert code == 1 and "not a regular file or block device" in err


def test_appended_hash_area_without_superblock_verifies_without_data_blocks(tmp_path):
    img = tmp_path / "img"
    img.write_bytes(data_bytes(64 * 4096, seed=27))
    out = _fmt(img, "--no-superblock", "--salt", "-")[1]
    assert out["hashOffset"] == 64 * 4096 and out["hashFile"] == str(img)
    code, _, err = cli("verity", "verify", img, img, out["rootHash"], "--hash-offset", str(64 * 4096),
                       "--no-superblock", "--salt", "-")
    assert code == 0, err
    proc = run(need_tool("veritysetup"), "verify", img, img, out["rootHash"], f"--hash-offset={64 * 4096}",
               "--no-superblock", "--salt=-", "--data-blocks=64", check=False)
    assert proc.returncode == 0


def test_verify_missing_hash_file_is_one_line(tmp_path):
    (tmp_path / "data").write_bytes(bytes(4096))
    code, _, err = cli("verity", "verify", tmp_path / "data", tmp_path / "nope", "00" * 32)
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_unusable_hash_target_is_one_line(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(8 * 4096, seed=28))
    code, _, err = _fmt(tmp_path / "data", "/dev/full")
    assert code == 1 and "not a regular file or block device" in err
    code, _, err = _fmt(tmp_path / "data", tmp_path / "missing-dir" / "h")
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1
