"""The fuzz campaign as tests: every target survives its seeds and the saved findings
(``crashes/<target>/``) in-process, and a short coverage-guided atheris run over all targets at
once (target ``every``) in CI. The long campaign (≥ 1M inputs per target) is run by hand with
``fuzz.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from seeds import seeds, write_seeds  # noqa: E402
from targets import TARGETS, run_one  # noqa: E402

from tests.support import need_module  # noqa: E402

SMOKE_SECONDS = 8


def saved_findings() -> list[tuple[str, Path]]:
    out = []
    for name in TARGETS:
        folder = HERE / "crashes" / name
        if folder.is_dir():
            out += [(name, p) for p in sorted(folder.iterdir()) if p.is_file()]
    return out


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_its_seeds(name):
    items = seeds(name)
    assert items, f"no seeds for {name}"
    for data in items:
        run_one(name, data)
        run_one(name, data[: len(data) // 2])   # a cut-short copy too


def test_saved_findings_are_fixed():
    """Every input a campaign found crashing is now refused cleanly (or accepted)."""
    for name, path in saved_findings():
        run_one(name, path.read_bytes())


def _smoke(name: str, workdir: Path) -> tuple[str, int, str]:
    corpus = workdir / "corpus"
    write_seeds(name, corpus / name)
    env = dict(os.environ, PCRTOOL_FUZZ_DIR=str(corpus))
    proc = subprocess.run([sys.executable, str(HERE / "fuzz.py"), name, f"-max_total_time={SMOKE_SECONDS}",
                           "-print_final_stats=1"], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)
    return name, proc.returncode, proc.stderr[-3000:]


@pytest.mark.slow
def test_atheris_smoke_every_target(tmp_path):
    need_module("atheris")
    name, rc, err = _smoke("every", tmp_path)
    assert rc == 0, err
    runs = int(err.split("stat::number_of_executed_units:")[1].split()[0])
    assert runs > 100, err
