"""Benchmark: signing N request items (32-byte PCR-policy tbs) with each key backend.

Compares pcrtool's file key and SoftHSM2 token (hashing on the token and raw CKM_RSA_PKCS over a
DigestInfo) with `openssl dgst -sha256 -sign` run once per item (the documented offline flow),
and checks that all of them produce the same RSA-2048 signatures.

    .venv/bin/python bench/sign_bench.py [--items 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()

    from pcrtool.model import HashAlg
    from pcrtool.sign import load_signer
    from pcrtool.sign.keygen import generate_private_key, private_key_pem
    from tests.support.softhsm import SoftHsm

    items = [os.urandom(32) for _ in range(args.items)]
    with tempfile.TemporaryDirectory(prefix="pcrtool-sign-bench-") as d:
        key = Path(d) / "k.pem"
        key.write_bytes(private_key_pem(generate_private_key("rsa2048")))
        results: dict[str, tuple[float, list[bytes]]] = {}

        def run(name, sign):
            t0 = time.perf_counter()
            sigs = [sign(tbs) for tbs in items]
            results[name] = (time.perf_counter() - t0, sigs)

        file_signer = load_signer(str(key))
        run("pcrtool file key", lambda tbs: file_signer.sign(tbs, HashAlg.SHA256))
        with SoftHsm.start(label="bench") as hsm:
            hsm.import_key(key, label="k", key_id=b"\x01")
            with load_signer(hsm.uri("k")) as token:
                run("pcrtool SoftHSM2 (CKM_SHA256_RSA_PKCS)", lambda tbs: token.sign(tbs, HashAlg.SHA256))
            with load_signer(hsm.uri("k", prehashed=True)) as token:
                run("pcrtool SoftHSM2 (CKM_RSA_PKCS+DigestInfo)", lambda tbs: token.sign(tbs, HashAlg.SHA256))
        tbs_file = Path(d) / "tbs"

        def openssl_sign(tbs):
            tbs_file.write_bytes(tbs)
            return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), str(tbs_file)],
                                  capture_output=True, check=True).stdout
        run("openssl dgst -sign (one process per item)", openssl_sign)

    reference = results["openssl dgst -sign (one process per item)"][1]
    base = results["openssl dgst -sign (one process per item)"][0]
    print(f"{args.items} RSA-2048 PKCS#1 v1.5 signatures over 32-byte tbs items")
    for name, (seconds, sigs) in results.items():
        same = "identical" if sigs == reference else "DIFFERENT"
        print(f"  {name:45s} {seconds * 1000:8.1f} ms  {seconds / args.items * 1e3:6.2f} ms/sig  "
              f"x{seconds / base:5.2f} of openssl  ({same})")
    assert all(sigs == reference for _, sigs in results.values()), "signatures differ"


if __name__ == "__main__":
    main()
