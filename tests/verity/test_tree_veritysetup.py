"""Differential tests: pcrtool's hash tree against `veritysetup format` (cryptsetup-bin).

Root hash AND hash-file bytes must be identical. The grid covers every dimension: sizes (1 block,
257 blocks, 1 MiB, 64 MiB), superblock on/off, format 0/1, sha1/sha256/sha512, 512/4096 data and
hash blocks (also mixed), explicit/empty salt, hash area in the data file at an offset, explicit
data-block counts. 64 MiB only for a few cells.
"""

from __future__ import annotations

import itertools
import uuid as uuidlib

import pytest
from helpers_verity import UUID, data_bytes, veritysetup_format

from pcrtool.model import HashAlg
from pcrtool.verity import io as verity_io
from pcrtool.verity.io import format_file
from pcrtool.verity.params import HashType, VerityParams
from pcrtool.verity.superblock import parse_superblock
from pcrtool.verity.tree import build_tree

SALT = b"\x5a" * 32


def _params(blocks, alg, fmt, dbs, hbs, salt, superblock, hash_offset=0):
    return VerityParams(data_blocks=blocks, hash_alg=HashAlg.from_name(alg), hash_type=HashType(fmt),
                        data_block_size=dbs, hash_block_size=hbs, salt=salt, superblock=superblock,
                        uuid=uuidlib.UUID(UUID).bytes if superblock else None, hash_offset=hash_offset)


# Small sizes: the full cross product of format, algorithm, block size and superblock.
SMALL_GRID = [
    (n, alg, fmt, bs, sb)
    for n, alg, fmt, bs, sb in itertools.product(
        ("1block", "257blocks", "1MiB"), ("sha1", "sha256", "sha512"), (0, 1), (512, 4096), (True, False))
]


def _size(label: str, dbs: int) -> int:
    return {"1block": dbs, "257blocks": 257 * dbs, "1MiB": 1 << 20, "64MiB": 64 << 20}[label]


@pytest.mark.parametrize("label,alg,fmt,bs,sb", SMALL_GRID,
                         ids=[f"{n}-{a}-v{f}-{b}-{'sb' if s else 'nosb'}" for n, a, f, b, s in SMALL_GRID])
def test_tree_matches_veritysetup(tmp_path, label, alg, fmt, bs, sb):
    size = _size(label, bs)
    # Every third cell uses the empty salt (--salt=-), so each dimension meets both salts.
    salt = b"" if SMALL_GRID.index((label, alg, fmt, bs, sb)) % 3 == 0 else SALT
    data = data_bytes(size, seed=size + fmt)
    (tmp_path / "data").write_bytes(data)
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", alg=alg, fmt=fmt, dbs=bs, hbs=bs,
                                salt=salt, superblock=sb)
    params = _params(size // bs, alg, fmt, bs, bs, salt, sb)
    result = format_file(str(tmp_path / "data"), params, hash_path=str(tmp_path / "pcr.hash"))
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes
    # The pure in-memory builder agrees too.
    tree = build_tree(params, data)
    assert tree.root_hash.hex() == oracle.root
    assert tree.hash_area() == oracle.hash_bytes


MIXED = [(4096, 512, "sha256", 1), (512, 4096, "sha512", 1), (1024, 2048, "sha1", 0), (4096, 1024, "sha1", 1)]


@pytest.mark.parametrize("dbs,hbs,alg,fmt", MIXED)
def test_mixed_block_sizes_match_veritysetup(tmp_path, dbs, hbs, alg, fmt):
    size = 300 * dbs
    (tmp_path / "data").write_bytes(data_bytes(size, seed=dbs ^ hbs))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", alg=alg, fmt=fmt, dbs=dbs, hbs=hbs)
    result = format_file(str(tmp_path / "data"), _params(300, alg, fmt, dbs, hbs, SALT, True),
                         hash_path=str(tmp_path / "pcr.hash"))
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes


BIG = [("sha256", 1, 4096, True, SALT), ("sha512", 0, 4096, False, b""), ("sha1", 1, 512, True, b"\x01\x02")]


@pytest.mark.slow
@pytest.mark.parametrize("alg,fmt,bs,sb,salt", BIG)
def test_64mib_matches_veritysetup(tmp_path, alg, fmt, bs, sb, salt):
    size = 64 << 20
    (tmp_path / "data").write_bytes(data_bytes(size, seed=7))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", alg=alg, fmt=fmt, dbs=bs, hbs=bs,
                                salt=salt, superblock=sb)
    result = format_file(str(tmp_path / "data"), _params(size // bs, alg, fmt, bs, bs, salt, sb),
                         hash_path=str(tmp_path / "pcr.hash"), workers=2)
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes


@pytest.mark.parametrize("chunk", [4096 * 128, 4096 * 128 * 3])
@pytest.mark.parametrize("workers,backend", [(1, "thread"), (2, "thread"), (3, "thread"), (2, "process"),
                                             (2, "fork"), (3, "fork"), (64, "fork")])
def test_streaming_chunk_boundaries_do_not_change_the_tree(tmp_path, monkeypatch, chunk, workers, backend):
    """Many small work items (and more workers than cores, threads or forked processes) give the
    veritysetup bytes."""
    monkeypatch.setattr(verity_io, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(verity_io, "BACKEND", backend)
    size = 4096 * 1000 + 4096 * 7
    (tmp_path / "data").write_bytes(data_bytes(size, seed=3))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash")
    result = format_file(str(tmp_path / "data"), _params(size // 4096, "sha256", 1, 4096, 4096, SALT, True),
                         hash_path=str(tmp_path / "pcr.hash"), workers=workers)
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes


@pytest.mark.parametrize("backend", ["auto", "fork"])
@pytest.mark.parametrize("sb,offset", [(True, 1 << 20), (False, 1 << 20), (True, (1 << 20) + 1536)])
def test_hash_area_inside_the_data_file_matches_veritysetup(tmp_path, monkeypatch, sb, offset, backend):
    """--hash-offset in the same file: the whole file (data untouched + hash area) is identical
    (also with forked workers writing level 0 in place)."""
    monkeypatch.setattr(verity_io, "BACKEND", backend)
    data = data_bytes(1 << 20, seed=11)
    for name in ("vs.img", "pcr.img"):
        (tmp_path / name).write_bytes(data + bytes(offset - len(data)))
    oracle = veritysetup_format(tmp_path / "vs.img", tmp_path / "vs.img", superblock=sb, hash_offset=offset,
                                data_blocks=256)
    result = format_file(str(tmp_path / "pcr.img"), _params(256, "sha256", 1, 4096, 4096, SALT, sb, offset),
                         workers=2)
    assert result.in_place
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.img").read_bytes() == oracle.hash_bytes


def test_hash_offset_in_a_separate_hash_file(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(257 * 4096, seed=5))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", hash_offset=8192)
    format_file(str(tmp_path / "data"), _params(257, "sha256", 1, 4096, 4096, SALT, True, 8192),
                hash_path=str(tmp_path / "pcr.hash"))
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes


def test_explicit_data_blocks_ignores_the_tail_like_veritysetup(tmp_path):
    """A 5000-byte image: veritysetup counts one block and leaves 904 bytes unprotected."""
    (tmp_path / "data").write_bytes(data_bytes(5000, seed=1))
    oracle = veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", superblock=False)
    result = format_file(str(tmp_path / "data"), _params(1, "sha256", 1, 4096, 4096, SALT, False),
                         hash_path=str(tmp_path / "pcr.hash"))
    assert result.root_hash.hex() == oracle.root
    assert (tmp_path / "pcr.hash").read_bytes() == oracle.hash_bytes == b""


def test_superblock_of_veritysetup_parses_to_its_parameters(tmp_path):
    (tmp_path / "data").write_bytes(data_bytes(64 * 1024, seed=2))
    veritysetup_format(tmp_path / "data", tmp_path / "vs.hash", alg="sha512", fmt=0, dbs=1024, hbs=2048,
                       salt=b"\xab\xcd")
    params = parse_superblock((tmp_path / "vs.hash").read_bytes())
    assert params == _params(64, "sha512", 0, 1024, 2048, b"\xab\xcd", True)


def test_failing_fork_worker_leaves_no_hash_file(tmp_path, monkeypatch):
    """A forked level-0 worker that fails makes format fail with one error; nothing is renamed into place."""
    import os

    from pcrtool.errors import InputFileError
    from pcrtool.verity import tree

    parent = os.getpid()
    real = tree.hash_data_chunk

    def flaky(params, data):
        if os.getpid() != parent:
            raise RuntimeError("worker failure")
        return real(params, data)

    monkeypatch.setattr(verity_io, "BACKEND", "fork")
    monkeypatch.setattr(verity_io, "hash_data_chunk", flaky)
    size = 4096 * 1000
    (tmp_path / "data").write_bytes(data_bytes(size, seed=5))
    with pytest.raises(InputFileError, match="hashing worker"):
        format_file(str(tmp_path / "data"), _params(size // 4096, "sha256", 1, 4096, 4096, SALT, True),
                    hash_path=str(tmp_path / "pcr.hash"), workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
