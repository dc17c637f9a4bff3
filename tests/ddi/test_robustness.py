"""Corrupt DDIs never crash `ddi verify`/`ddi inspect`: every run ends in exit 0, 1 or 3 with a
one-line message, never a traceback or "internal error"."""

from __future__ import annotations

import random

import pytest
from helpers_ddi import cli

from pcrtool.gpt import read_gpt


def _regions(data: bytes):
    g = read_gpt(data)
    yield "gpt", 0, 34 * 512
    for e in g.entries:
        yield e.name, e.first_lba * 512, min(e.lba_count * 512, 64 * 1024)


@pytest.mark.parametrize("seed", range(6))
def test_random_corruption_is_reported_not_crashed(seed, good, certdirs, host, tmp_path):
    rng = random.Random(seed)
    base = good.read_bytes()
    regions = list(_regions(base))
    for i in range(8):
        name, start, size = regions[(seed + i) % len(regions)]
        data = bytearray(base)
        for _ in range(rng.choice((1, 4, 64))):
            data[start + rng.randrange(size)] = rng.randrange(256)
        if rng.random() < 0.3:           # also a zeroed run (truncated structures)
            off = start + rng.randrange(size)
            data[off:off + 512] = bytes(512)
        image = tmp_path / "good.raw"
        image.write_bytes(bytes(data))
        for argv in (("ddi", "verify", image, "--certs", certdirs["new"], "--host-os-release", host["debian"],
                      "--arch", "x86-64"), ("ddi", "inspect", image, "--arch", "x86-64")):
            code, _, err = cli(*argv)
            assert code in (0, 1, 3), (name, err)
            assert "internal error" not in err and "Traceback" not in err, (name, err)
            lines = err.strip().splitlines()
            assert all(line.startswith("pcrtool: ") for line in lines), err
            if code:
                assert sum(line.startswith("pcrtool: error:") for line in lines) == 1, err


def test_corrupt_erofs_metadata_gives_a_reason(good):
    """The in-process erofs reader on damaged metadata: a reason string, never an exception."""
    from pcrtool.ddi.image import dissect

    base = good.read_bytes()
    e = read_gpt(base).entries[0]
    start = e.first_lba * 512
    rng = random.Random(7)
    outcomes = set()
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.choice((1, 2, 8))):
            data[start + 1024 + rng.randrange(8192)] = rng.randrange(256)
        d = dissect(bytes(data), arch="x86-64")
        outcomes.add("read" if d.release_files else "error" if d.release_error else "none")
    assert "error" in outcomes and "read" in outcomes


def test_damaged_backup_gpt_is_a_warning(good, certdirs, host, tmp_path):
    data = bytearray(good.read_bytes())
    data[-512 + 40] ^= 1                     # backup header, as libblkid ignores when the primary is fine
    image = tmp_path / "good.raw"
    image.write_bytes(bytes(data))
    code, _, err = cli("ddi", "verify", image, "--certs", certdirs["new"], "--host-os-release", host["debian"],
                       "--arch", "x86-64")
    assert code == 0 and "backup GPT header CRC mismatch" in err
