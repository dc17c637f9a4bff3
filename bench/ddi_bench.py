"""Benchmark: a realistic system extension (this Python's standard library, a few thousand files)
as `systemd-repart --make-ddi=sysext` (uncompressed erofs, the only option of --make-ddi) and as
`pcrtool ddi build` uncompressed and compressed; image sizes and build times side by side, and
`pcrtool ddi verify` time.

repart runs in the Debian sid chroot (.ci/sid-chroot, systemd 262); pcrtool uses the chroot's
mkfs.erofs too (the host's erofs-utils may lack zstd/lzma), so both sides format with the same
erofs-utils. The uncompressed pcrtool image is checked to be byte-identical to repart's.

    .venv/bin/python bench/ddi_bench.py [--source DIR] [--runs 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SID = ROOT / ".ci" / "sid-chroot"
SEED = "b4d4f6a0-6c0e-4b5f-9f47-2f0c1b1d4a11"
EPOCH = "1700000000"


def run(argv, env=None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    if proc.returncode:
        sys.exit(f"{argv[0]} {argv[1]} failed: {proc.stderr.strip()[-600:]}")
    return time.perf_counter() - t0


def make_tree(dest: Path, source: Path) -> int:
    lib = dest / "usr/lib" / source.name
    shutil.copytree(source, lib, symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc"))
    rel = dest / "usr/lib/extension-release.d"
    rel.mkdir(parents=True)
    (rel / "extension-release.pystdlib").write_text("ID=_any\n")
    return sum(len(files) for _, _, files in os.walk(dest))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if subprocess.run(["bash", str(SID), "version"], capture_output=True).returncode:
        sys.exit("the sid chroot is not built: bash .ci/sid-chroot build")
    with tempfile.TemporaryDirectory(prefix="ddi-bench-", dir="/tmp") as tmp:
        t = Path(tmp)
        files = make_tree(t / "src", args.source)
        size_src = sum(f.stat().st_size for f in (t / "src").rglob("*") if f.is_file())
        key, cert = t / "k.pem", t / "c.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-subj", "/CN=bench", "-days", "1"], capture_output=True, check=True)
        certs = t / "verity.d"
        certs.mkdir()
        shutil.copy(cert, certs / "bench.crt")
        mkfs = t / "mkfs-erofs-sid"
        mkfs.write_text(f'#!/bin/sh\nexec bash {SID} run env SOURCE_DATE_EPOCH="${{SOURCE_DATE_EPOCH:-0}}" '
                        'mkfs.erofs "$@"\n')
        mkfs.chmod(0o755)
        pcrtool = [sys.executable, "-m", "pcrtool"]
        env = {"PCRTOOL_MKFS_EROFS": str(mkfs), "PYTHONPATH": str(ROOT)}
        rows = []

        def measure(label, argv, out, run_env=None):
            times = []
            for _ in range(args.runs):
                if out.exists():
                    out.unlink()
                times.append(run(argv, run_env))
            rows.append((label, out.stat().st_size, statistics.median(times)))

        (t / "repart").mkdir()
        repart = t / "repart" / "pystdlib.raw"
        measure("systemd-repart --make-ddi (erofs, uncompressed)",
                ["bash", SID, "run", "env", f"SOURCE_DATE_EPOCH={EPOCH}", "systemd-repart", "--make-ddi=sysext",
                 f"--copy-source={t / 'src'}", f"--private-key={key}", f"--certificate={cert}", "--offline=yes",
                 f"--seed={SEED}", repart], repart)
        for compress in ("none", "lz4hc", "zstd", "lzma"):
            (t / compress).mkdir()
            out = t / compress / "pystdlib.raw"
            measure(f"pcrtool ddi build --compress {compress}",
                    [*pcrtool, "ddi", "build", t / "src", "-o", out, "-k", f"file:{key}", "-c", cert,
                     "--seed", SEED, "--source-date-epoch", EPOCH, "--compress", compress], out, env)
        identical = (t / "none" / "pystdlib.raw").read_bytes() == repart.read_bytes()
        verify_s = run([*pcrtool, "ddi", "verify", t / "lzma" / "pystdlib.raw", "--certs", certs,
                        "--image-policy", "root=verity+signed+absent:usr=verity+signed+absent"], env)
    base_size, base_time = rows[0][1], rows[0][2]
    print(f"tree: {args.source} → {files} files, {size_src / 2**20:.1f} MiB "
          f"(median of {args.runs} run{'s' if args.runs > 1 else ''}, same mkfs.erofs on both sides)")
    print(f"{'builder':<50} {'image MiB':>10} {'vs repart':>10} {'build s':>8} {'vs repart':>10}")
    for label, size, secs in rows:
        print(f"{label:<50} {size / 2**20:>10.1f} {size / base_size:>9.2f}x {secs:>8.2f} {secs / base_time:>9.2f}x")
    print(f"pcrtool uncompressed image byte-identical to repart's: {'yes' if identical else 'NO'}")
    print(f"pcrtool ddi verify (lzma image: signature + every block + release): {verify_s:.2f} s")


if __name__ == "__main__":
    main()
