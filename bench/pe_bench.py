"""Sign a ~75 MB UKI with pcrtool, sbsign and osslsigncode in the same run; print times and ratios.
Then sign a release's set of 10 PEs: pcrtool in one call vs osslsigncode called once per file.

Run: .venv/bin/python bench/pe_bench.py [--runs N] [--initrd-mib M] [--set-only]
Each number is the median wall-clock time of N full CLI runs (process start, read, hash, sign,
write; pcrtool also checks each written file before renaming it into place, see pcrtool/pe/files.py);
RSA-2048 key, SOURCE_DATE_EPOCH fixed. Peak RSS comes from GNU time (/usr/bin/time) when present.
pcrtool overlaps work on two cores (a forked child summing the inputs' checksums while the
parent loads the key and hashes): on a loaded machine (see the load average printed) its wall time suffers
more than the single-threaded peers'; the CPU time printed is the load-independent comparison.
Files live in /dev/shm by default (--dir to change): pcrtool fsyncs its atomic output and the
peers do not, so on a disk the comparison would measure the disk's flush rather than the signer.
The "floor" lines measure what no Python signer built on the project's libraries can avoid: an
interpreter that only imports what `pe sign` needs from cryptography (key serialization and
RSA padding), one SHA-256 pass, and the PE checksum in pure Python (int.from_bytes is the fastest
summing primitive the standard library has). `pe sign` itself imports neither Typer, asn1crypto nor cryptography.x509.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")


def build_uki(tmp: Path, initrd_mib: int) -> Path:
    rnd = os.urandom
    parts = {"osrel": b"ID=bench\n", "cmdline": b"quiet\0", "linux": rnd(8 << 20), "initrd": rnd(initrd_mib << 20)}
    args = ["objcopy"]
    vma = 0x100000
    for name, content in parts.items():
        p = tmp / name
        p.write_bytes(content)
        args += ["--add-section", f".{name}={p}", "--change-section-vma", f".{name}={vma:#x}"]
        vma += (len(content) + 0xFFFFF) & ~0xFFFFF
    out = tmp / "uki.efi"
    subprocess.run(args + [str(STUB), str(out)], check=True, capture_output=True)
    return out


from benchlib import GNU_TIME, mib as _mib, peak_rss as _peak_rss, with_peak_rss as _with_peak_rss  # noqa: E402,F401



def run_once(argv: list[str], env: dict) -> tuple[float, int | None]:
    """(wall seconds, peak RSS in KiB of the command or None) of one run."""
    t = time.perf_counter()
    proc = subprocess.run(_with_peak_rss(argv), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    err, rss = _peak_rss(proc.stderr)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv, stderr=err)
    return wall, rss


def timed(argv: list[str], runs: int, env: dict, before=None) -> tuple[float, int | None]:
    """Median wall time and the largest peak RSS (KiB) over ``runs`` runs."""
    times, rss = [], None
    for _ in range(runs):
        if before:
            before()
        t, peak = run_once(argv, env)
        times.append(t)
        rss = peak if rss is None else max(rss, peak or 0)
    return statistics.median(times), rss


def _in_process(uki: Path, key: Path, cert: Path, out: Path, runs: int) -> float:
    """Read, hash, sign, write and re-verify through the library: what the CLI does after startup."""
    import datetime as dt
    import mmap

    from pcrtool import fileio
    from pcrtool.pe.sigdb import SignatureDb
    from pcrtool.pe.sign import certificate_bytes, sign_image_chunks
    from pcrtool.pe.verify import verify_image
    from pcrtool.sign import load_signer

    when = dt.datetime(2023, 11, 14, tzinfo=dt.timezone.utc)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        data = fileio.read_bytes(uki)
        with load_signer(str(key), certificate=str(cert)) as signer:
            cert_der = certificate_bytes(signer)
            chunks = sign_image_chunks(data, signer, when, certificate_der=cert_der)
        with fileio.atomic_writer(out) as f:
            for c in chunks:
                f.write(c)
        with open(out, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        assert verify_image(m, db=SignatureDb(certificates=[cert_der])).accepted
        times.append(time.perf_counter() - t)
    return statistics.median(times)


_LIBRARIES = "import cryptography.hazmat.primitives.serialization, cryptography.hazmat.primitives.asymmetric.padding"


def _floor(uki: Path, runs: int, env: dict) -> tuple[float, float, float]:
    """(start-up of an interpreter that only imports the libraries ``pe sign`` is built on,
    one SHA-256 pass over the image, the PE checksum in pure Python), seconds, medians."""
    import hashlib
    import mmap

    from pcrtool.pe.digest import word_sum

    timed([sys.executable, "-c", _LIBRARIES], 1, env)  # warm-up: byte-code cache
    start = timed([sys.executable, "-c", _LIBRARIES], runs, env)[0]
    with open(uki, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    sha, csum = [], []
    for _ in range(runs):
        t = time.perf_counter()
        hashlib.sha256(m).digest()
        sha.append(time.perf_counter() - t)
        t = time.perf_counter()
        word_sum(m)
        csum.append(time.perf_counter() - t)
    return start, statistics.median(sha), statistics.median(csum)


def release_set(tmp: Path) -> list[Path]:
    """10 PEs of a real release: systemd-boot and the stubs of Debian 12 and of the sid chroot
    (systemd 262, when built), the Debian kernel the PE tests download (when cached), a UKI built
    from the stub, and add-ons (the sid addon stub with a .cmdline) to make up ten."""
    sid = Path(os.environ.get("PCRTOOL_SID_ROOT", "/var/cache/pcrtool/sid-chroot")) / "usr/lib/systemd/boot/efi"
    found = [p for p in (Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi"), STUB,
                         sid / "systemd-bootx64.efi", sid / "linuxx64.efi.stub") if p.is_file()]
    for kernel in (ROOT / "_work" / "cache" / "vmlinuz", Path(tempfile.gettempdir()) / "pcrtool-test-cache" / "vmlinuz"):
        if kernel.is_file():  # the Debian kernel the PE tests download (tests/pe/helpers_pe.py)
            found.append(kernel)
            break
    out = []
    for i, p in enumerate(found):
        q = tmp / f"set{i:02d}-{p.name}"
        shutil.copyfile(p, q)
        out.append(q)
    out.append(build_uki(tmp, 16))
    addon_stub = sid / "addonx64.efi.stub"
    base = addon_stub if addon_stub.is_file() else STUB
    i = 0
    while len(out) < 10:
        cmd = tmp / f"cmdline{i}"
        cmd.write_bytes(f"quiet addon={i}".encode())
        q = tmp / f"addon{i}.efi"
        subprocess.run(["objcopy", "--add-section", f".cmdline={cmd}", "--change-section-vma", ".cmdline=0x300000",
                        str(base), str(q)], check=True, capture_output=True)
        out.append(q)
        i += 1
    return out[:10]


def bench_set(tmp: Path, key: Path, cert: Path, runs: int, env: dict) -> None:
    pcrtool = str(Path(sys.executable).with_name("pcrtool"))
    files = release_set(tmp)
    outdir = tmp / "signed-set"
    outdir.mkdir()
    ours = [pcrtool, "pe", "sign", *map(str, files), "--key", str(key), "--cert", str(cert), "-o", str(outdir)]

    def clean() -> None:
        for p in outdir.iterdir():
            p.unlink()

    def osslsigncode_each() -> float:
        t = time.perf_counter()
        for f in files:
            subprocess.run(["osslsigncode", "sign", "-certs", str(cert), "-key", str(key), "-h", "sha256",
                            "-in", str(f), "-out", str(outdir / f.name)], check=True, capture_output=True, env=env)
        return time.perf_counter() - t

    def ours_once() -> float:
        t = time.perf_counter()
        subprocess.run(ours, check=True, capture_output=True, env=env)
        return time.perf_counter() - t

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    clean()
    ours_once()   # warm-up (page cache, byte-code cache)
    for f in files:
        subprocess.run(["sbverify", "--cert", str(cert), str(outdir / f.name)], check=True, capture_output=True)
    clean()
    osslsigncode_each()
    # Interleaved: both tools see the same moments of the machine's load.
    mine, theirs, cpu_mine, cpu_theirs = [], [], [], []
    for _ in range(runs):
        for run, walls, cpus in ((ours_once, mine, cpu_mine), (osslsigncode_each, theirs, cpu_theirs)):
            clean()
            c0 = cpu()
            walls.append(run())
            cpus.append(cpu() - c0)
    t_ours, t_theirs = statistics.median(mine), statistics.median(theirs)
    c_ours, c_theirs = statistics.median(cpu_mine), statistics.median(cpu_theirs)
    total = sum(f.stat().st_size for f in files)
    print(f"release PE set: {len(files)} files, {total / 1e6:.1f} MB ({', '.join(f.name for f in files)}), "
          f"median of {runs} interleaved runs, load average {os.getloadavg()[0]:.1f}")
    print(f"  pcrtool pe sign, one call:        {t_ours * 1000:8.1f} ms wall, {c_ours * 1000:7.1f} ms CPU")
    print(f"  osslsigncode, one call per file:  {t_theirs * 1000:8.1f} ms wall, {c_theirs * 1000:7.1f} ms CPU")
    print(f"  pcrtool / osslsigncode: {t_ours / t_theirs:.2f}x wall time "
          f"({'faster' if t_ours < t_theirs else 'slower'}), {c_ours / c_theirs:.2f}x CPU time")
    import hashlib

    from pcrtool.pe.digest import word_sum
    timed([sys.executable, "-c", "pass"], 1, env)
    bare = timed([sys.executable, "-c", "pass"], runs, env)[0]
    start = timed([sys.executable, "-c", _LIBRARIES], runs, env)[0]
    datas = [f.read_bytes() for f in files]
    t = time.perf_counter()
    for d in datas:
        hashlib.sha256(d).digest()
    sha = time.perf_counter() - t
    t = time.perf_counter()
    for d in datas:
        word_sum(d)
    csum = time.perf_counter() - t
    print(f"  floor: this Python starting {bare * 1000:.1f} ms, + importing cryptography {start * 1000:.1f} ms; "
          f"one SHA-256 pass over the set {sha * 1000:.1f} ms; PE checksums (pure Python) {csum * 1000:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--initrd-mib", type=int, default=62)
    ap.add_argument("--set-only", action="store_true", help="only the 10-PE release set")
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where to put the UKI and outputs (default /dev/shm)")
    args = ap.parse_args()
    for tool in ("objcopy", "openssl", "sbsign", "osslsigncode"):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    # An installed pcrtool has byte-compiled modules; a development shell may forbid writing them
    # into the tree (PYTHONDONTWRITEBYTECODE). Keep them in a private cache for the runs instead.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    pcrtool = str(Path(sys.executable).with_name("pcrtool"))
    with tempfile.TemporaryDirectory(prefix="pe-bench-", dir=args.dir) as d:
        tmp = Path(d)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        key, cert = tmp / "key.pem", tmp / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "30", "-subj", "/CN=bench"], check=True, capture_output=True)
        if args.set_only:
            bench_set(tmp, key, cert, args.runs, env)
            return 0
        uki = build_uki(tmp, args.initrd_mib)
        size = uki.stat().st_size
        cmds = {
            "pcrtool": [pcrtool, "pe", "sign", str(uki), "--key", str(key), "--cert", str(cert),
                        "-o", str(tmp / "p.efi")],
            "sbsign": ["sbsign", "--key", str(key), "--cert", str(cert), "--output", str(tmp / "s.efi"), str(uki)],
            "osslsigncode": ["osslsigncode", "sign", "-certs", str(cert), "-key", str(key), "-h", "sha256",
                             "-in", str(uki), "-out", str(tmp / "o.efi")],
        }
        results, peaks = {}, {}
        for name, argv in cmds.items():
            # osslsigncode refuses to overwrite: remove its output before every run
            before = (lambda: (tmp / "o.efi").unlink(missing_ok=True)) if name == "osslsigncode" else None
            timed(argv, 1, env, before)  # warm-up (page cache, byte-code cache)
            results[name], peaks[name] = timed(argv, args.runs, env, before)
        subprocess.run(["sbverify", "--cert", str(cert), str(tmp / "p.efi")], check=True, capture_output=True)
        in_process = _in_process(uki, key, cert, tmp / "q.efi", args.runs)
        start, sha, csum = _floor(uki, args.runs, env)
        print(f"UKI: {size / 1e6:.1f} MB, RSA-2048, median of {args.runs} runs, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}")
        for name, t in results.items():
            print(f"  {name:13s} {t * 1000:8.1f} ms   peak RSS {_mib(peaks[name])}")
        print(f"  pcrtool library, in-process (no interpreter start/imports): {in_process * 1000:.1f} ms")
        print(f"  floor: a Python interpreter that only imports cryptography (serialization, padding): "
              f"{start * 1000:.1f} ms; one SHA-256 pass over the image {sha * 1000:.1f} ms; PE checksum "
              f"(pure Python) {csum * 1000:.1f} ms")
        print(f"  start-up + imports alone = {start / results['osslsigncode']:.2f}x osslsigncode's whole run; "
              f"with the hash after them: {(start + sha) / results['osslsigncode']:.2f}x")
        for peer in ("sbsign", "osslsigncode"):
            print(f"  pcrtool / {peer}: {results['pcrtool'] / results[peer]:.2f}x time "
                  f"({'faster' if results['pcrtool'] < results[peer] else 'slower'})")
        bench_set(tmp, key, cert, args.runs, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
