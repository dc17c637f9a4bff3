"""Coverage-guided fuzzing of one target with atheris (libFuzzer).

    PYTHONPATH=$PWD nice -n 15 .venv/bin/python tests/fuzz/fuzz.py eventlog -runs=1000000
    PYTHONPATH=$PWD .venv/bin/python tests/fuzz/fuzz.py --list

The corpus lives in ``$PCRTOOL_FUZZ_DIR/<target>`` (default ``/tmp/pcrtool-fuzz``), seeded from
``seeds.py`` on first use; libFuzzer writes a crashing input as ``crash-*`` into the current
directory: copy it to ``tests/fuzz/crashes/<target>/`` (replayed by ``test_fuzz_regressions.py``)
and fix the parser. Extra arguments go to libFuzzer (``-runs``, ``-max_total_time``, ``-jobs``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)


def main(argv: list[str]) -> None:
    import atheris

    if len(argv) < 2 or argv[1] in ("-h", "--help", "--list"):
        from targets import TARGETS
        print("targets:", " ".join(TARGETS))
        return
    name = argv[1]
    from seeds import write_seeds
    from targets import MAX_LEN, TARGETS, run_one

    with atheris.instrument_imports(include=["pcrtool"]):
        # The targets import their parsers lazily: run each once so every parser module is
        # loaded (and instrumented) before fuzzing starts.
        for target in TARGETS:
            for probe in (b"", b"\x00" * 64, b"{}"):
                try:
                    run_one(target, probe)
                except Exception:  # noqa: BLE001 - findings are reported by the fuzzing run
                    pass

    if name not in TARGETS:
        sys.exit(f"unknown target {name!r}; one of: {' '.join(TARGETS)}")
    corpus = Path(os.environ.get("PCRTOOL_FUZZ_DIR", "/tmp/pcrtool-fuzz")) / name
    if not corpus.is_dir() or not any(corpus.iterdir()):
        write_seeds(name, corpus)
    args = [argv[0], *argv[2:]]
    if not any(a.startswith("-max_len=") for a in args):
        args.append(f"-max_len={MAX_LEN.get(name, 1 << 12)}")
    for flag, value in (("-timeout=", "10"), ("-rss_limit_mb=", "1536")):
        if not any(a.startswith(flag) for a in args):
            args.append(flag + value)
    args.append(str(corpus))

    def test_one_input(data: bytes) -> None:
        run_one(name, data)

    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
