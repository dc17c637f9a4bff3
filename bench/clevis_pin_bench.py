"""The clevis pin on swtpm, side by side with clevis' own tpm2 pin (tpm2-tools underneath).

- start-up: the initramfs pin's interpreter (`python -I -S`) alone, and with the whole decrypt
  path imported (pcrtool.clevis.pin, tpm.enroll, tpm2-pytss ESAPI, cryptography's AES-GCM)
- `clevis decrypt` of a pcrtool JWE (signed policy + floor: PolicyAuthorize, PolicyNV, unseal)
  through the initramfs pin executable, vs `pcrtool tpm unlock` (the full CLI, what the pin ran
  as a subprocess before), vs `clevis decrypt` of a `clevis encrypt tpm2 '{"pcr_ids":"11"}'` JWE

Run as root or not: .venv/bin/python bench/clevis_pin_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib import best_of  # bench/ is sys.path[0] when a benchmark runs

ROOT = Path(__file__).resolve().parents[1]


def run(*args, env=None, input=None) -> bytes:
    p = subprocess.run([str(a) for a in args], env=env, input=input, capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {p.stderr.decode(errors='replace')}")
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TSS2_LOG", "all+none")
    from pcrtool.clevis import initramfs
    from pcrtool.swtpm import Swtpm
    from tests.support.releases import two_uki_releases

    pcrtool = [sys.executable, "-m", "pcrtool"]
    python = initramfs.interpreter()
    roots = initramfs.search_roots()
    imports = "; ".join(f"import {m}" for m in initramfs.PIN_MODULES)
    bare = best_of(args.rounds, lambda: run(python, "-I", "-S", "-c", "pass"))
    full = best_of(args.rounds, lambda: run(python, "-I", "-S", "-c", f"import sys; sys.path += {roots!r}; {imports}"))
    print(f"start-up  python -I -S                      {bare * 1000:7.1f} ms")
    print(f"          + the pin's decrypt imports        {full * 1000:7.1f} ms")
    with tempfile.TemporaryDirectory() as tmp, Swtpm.start() as sw:
        d = Path(tmp)
        env = {**os.environ, "PATH": f"{d / 'bin'}:{os.environ['PATH']}", "TPM2TOOLS_TCTI": sw.tcti}
        two_uki_releases(d)
        run(*pcrtool, "key", "generate", d / "k.pem", "--public-output", d / "pub.pem")
        run(*pcrtool, "policy", "approve", "-r", d / "p.json", "-k", d / "k.pem", "--pcrs", "11", "-o", d / "a.pcrsig")
        run(*pcrtool, "tpm", "boot-release", d / "p.json", "fooos-2", "--tcti", sw.tcti)
        run(*pcrtool, "clevis", "install", "--dir", d / "bin")
        cfg = {"public_key": str(d / "pub.pem"), "floor": 1, "pcrs": [11], "approvals": str(d / "a.pcrsig"),
               "tcti": sw.tcti, "enrollment": str(d / "e.json")}
        ours_jwe = run("clevis", "encrypt", "pcrtool", json.dumps(cfg), env=env, input=b"secret")
        (d / "bin" / "clevis-decrypt-pcrtool").unlink()  # decrypt through the initramfs' pin executable
        run(sys.executable, "-m", "pcrtool.clevis.initramfs", "files", "--pin-script", d / "bin" / "clevis-decrypt-pcrtool",
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert run("clevis", "decrypt", env=env, input=ours_jwe) == b"secret"
        ours = best_of(args.rounds, lambda: run("clevis", "decrypt", env=env, input=ours_jwe))
        print(f"decrypt   clevis decrypt (pcrtool pin)       {ours * 1000:7.1f} ms")
        cli = best_of(args.rounds, lambda: run(*pcrtool, "tpm", "unlock", "-e", d / "e.json", "-a", d / "a.pcrsig",
                                               "-o", "-", "--tcti", sw.tcti))
        print(f"          pcrtool tpm unlock (full CLI)      {cli * 1000:7.1f} ms   ratio {cli / ours:5.2f}x")
        theirs_jwe = run("clevis", "encrypt", "tpm2", '{"pcr_ids":"11"}', env=env, input=b"secret")
        assert run("clevis", "decrypt", env=env, input=theirs_jwe) == b"secret"
        theirs = best_of(args.rounds, lambda: run("clevis", "decrypt", env=env, input=theirs_jwe))
        print(f"          clevis decrypt (tpm2 pin, PCR 11)  {theirs * 1000:7.1f} ms   ratio {theirs / ours:5.2f}x")


if __name__ == "__main__":
    main()
