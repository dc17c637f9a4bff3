"""Benchmark: `pcrtool verity format` against `veritysetup format` on a 1 GiB file.

Runs both on the same page-cached file (created in a temporary directory and deleted after),
checks that the root hashes and hash files agree, and prints the median times and the ratio
(target: pcrtool ≤ 0.6 × veritysetup on 2 cores).

    .venv/bin/python bench/verity_bench.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SALT = "5a" * 32
UUID = "12345678-1234-1234-1234-123456789abc"


from benchlib import GNU_TIME, mib as _mib, peak_rss as _peak_rss, with_peak_rss as _with_peak_rss  # noqa: E402,F401



def timed(argv: list[str], env: dict | None = None) -> tuple[float, float, str, int | None]:
    """(wall seconds, CPU seconds of the child incl. its workers, stdout, peak RSS in KiB of the
    command (the largest of it and its waited-for workers) or None)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(_with_peak_rss(argv), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    err, rss = _peak_rss(proc.stderr)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, output=proc.stdout, stderr=err)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), proc.stdout, rss


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    veritysetup = shutil.which("veritysetup")
    if veritysetup is None:
        print("veritysetup is not installed (apt-get install cryptsetup-bin)", file=sys.stderr)
        return 1
    pcrtool = str(Path(sys.executable).with_name("pcrtool"))
    # An installed pcrtool has byte-compiled modules; a development shell may forbid writing them
    # into the tree (PYTHONDONTWRITEBYTECODE): keep them in a private cache for the runs instead.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="verity-bench-") as tmp:
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        data = Path(tmp) / "data.img"
        with open(data, "wb") as f:
            chunk = os.urandom(16 << 20)
            for i in range(args.size_mib // 16):
                f.write(chunk[i % 97:] + chunk[:i % 97])  # distinct blocks, cheap to make
        with open(data, "rb") as f:  # warm the page cache for both tools
            while f.read(64 << 20):
                pass
        common = [f"--salt={SALT}", f"--uuid={UUID}"]
        pc_argv = [pcrtool, "verity", "format", str(data), "HASH", "--salt", SALT, "--uuid", UUID,
                   "--no-progress", "--json=short"]
        timed([a if a != "HASH" else str(Path(tmp) / "warm.hash") for a in pc_argv], env)  # byte-code cache
        vs_times, pc_times, vs_cpu, pc_cpu, vs_rss, pc_rss = [], [], [], [], [], []
        for _ in range(args.runs):
            vs_hash, pc_hash = Path(tmp) / "vs.hash", Path(tmp) / "pc.hash"
            for p in (vs_hash, pc_hash):
                p.unlink(missing_ok=True)
            t, cpu, out, rss = timed([veritysetup, "format", str(data), str(vs_hash), *common])
            vs_times.append(t)
            vs_cpu.append(cpu)
            vs_rss.append(rss)
            vs_root = next(line.split()[-1] for line in out.splitlines() if line.startswith("Root hash:"))
            t, cpu, out, rss = timed([a if a != "HASH" else str(pc_hash) for a in pc_argv], env)
            pc_times.append(t)
            pc_cpu.append(cpu)
            pc_rss.append(rss)
            pc_root = json.loads(out)["rootHash"]
            if pc_root != vs_root or vs_hash.read_bytes() != pc_hash.read_bytes():
                print(f"MISMATCH: veritysetup {vs_root}, pcrtool {pc_root}", file=sys.stderr)
                return 1
        # The library alone (in this process: no interpreter start, no CLI parsing).
        from pcrtool.verity.io import format_file
        from pcrtool.verity.params import VerityParams
        params = VerityParams(data_blocks=(args.size_mib << 20) // 4096, salt=bytes.fromhex(SALT),
                              uuid=bytes.fromhex(UUID.replace("-", "")))
        lib_times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = format_file(str(data), params, hash_path=str(Path(tmp) / "lib.hash"))
            lib_times.append(time.perf_counter() - t0)
            if result.root_hash.hex() != vs_root:
                print("MISMATCH (library)", file=sys.stderr)
                return 1
        vs, pc = statistics.median(vs_times), statistics.median(pc_times)
        lib = statistics.median(lib_times)
        mib = args.size_mib
        print(f"data: {mib} MiB, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
              f"{args.runs} runs (median), root {vs_root}")
        print(f"veritysetup format   : {vs:7.3f} s wall ({mib / vs:6.0f} MiB/s), "
              f"{statistics.median(vs_cpu):6.3f} s CPU; runs {['%.3f' % t for t in vs_times]}")
        print(f"pcrtool verity format: {pc:7.3f} s wall ({mib / pc:6.0f} MiB/s), "
              f"{statistics.median(pc_cpu):6.3f} s CPU; runs {['%.3f' % t for t in pc_times]}")
        print(f"pcrtool library only: {lib:7.3f} s wall ({mib / lib:6.0f} MiB/s); runs "
              f"{['%.3f' % t for t in lib_times]}")
        print(f"ratio pcrtool/veritysetup (wall): {pc / vs:.2f} (target <= 0.60); best runs: "
              f"{min(pc_times) / min(vs_times):.2f}; library only: {lib / vs:.2f}")
        print(f"peak RSS: veritysetup {_mib(max(vs_rss, key=lambda v: v or 0))}, "
              f"pcrtool {_mib(max(pc_rss, key=lambda v: v or 0))} (largest single process)")
        print(f"CPU time ratio: {statistics.median(pc_cpu) / statistics.median(vs_cpu):.2f} "
              f"(pcrtool spreads it over {os.cpu_count()} cores, veritysetup uses one)")
        if os.getloadavg()[0] > 0.5:
            print(f"warning: load average {os.getloadavg()[0]:.1f}: other processes share the CPUs, so "
                  "the wall-time ratio understates what parallel hashing gains on an idle machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
