"""Seed inputs per fuzz target: the real event-log corpus and the project's captures and vectors,
plus small valid documents built with pcrtool's own writers (so mutation starts from inputs that
reach deep into each parser). Missing sources (no corpus, no systemd stub) just give fewer seeds.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.predict.helpers_manifest import FILES, MANIFEST, MANIFEST_JSON

ROOT = Path(__file__).resolve().parents[2]
SEED_MAX = 1 << 16


def _files(paths) -> list[bytes]:
    out = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError:
            continue
        out.append(data[:SEED_MAX])
    return out


def _eventlog() -> list[bytes]:
    from tests.support import corpus_log_names, corpus_root
    root = corpus_root()
    logs = [root / name for name in corpus_log_names(root)]
    logs = [p for p in logs if p.suffix not in (".b64", ".json", ".yaml", ".yml")]
    logs += sorted((ROOT / "eventlogs").glob("*/eventlog.bin"))
    logs += [ROOT / "pcrtool" / "data" / "demo" / "ovmf-secureboot-eventlog.bin"]
    return _files(logs)


def _userspace_log() -> list[bytes]:
    import hashlib
    recs = []
    for text in ("enter-initrd", "leave-initrd", "sysinit", "ready"):
        recs.append({"pcr": 11, "digests": [{"hashAlg": "sha256", "digest": hashlib.sha256(text.encode()).hexdigest()}],
                     "content_type": "systemd", "content": {"string": text, "eventType": "phase"}})
    recs.append({"pcr": 15, "digests": [{"hashAlg": "sha256", "digest": "00" * 32},
                                        {"hashAlg": "sha1", "digest": "00" * 20}],
                 "content_type": "systemd", "content": {"string": "machine-id:abc", "eventType": "machine-id"}})
    return [b"".join(b"\x1e" + json.dumps(r).encode() + b"\n" for r in recs)]


def _pe_image() -> list[bytes]:
    out = _files([ROOT / "tests" / "pe" / "stub.efi", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
                  "/usr/lib/systemd/boot/efi/addonx64.efi.stub"])
    vec = ROOT / "tests" / "vectors" / "predict" / "multiprofile-ukify257.efi.gz"
    if vec.is_file():
        out.append(gzip.decompress(vec.read_bytes())[:SEED_MAX])
    try:
        from tests.pe.helpers_pe import STUB
        out += _files([STUB])
    except Exception:  # noqa: BLE001 - a seed source is optional
        pass
    return out


def _verity_superblock() -> list[bytes]:
    from pcrtool.model import HashAlg
    from pcrtool.verity.params import VerityParams
    from pcrtool.verity.superblock import build_superblock
    return [build_superblock(VerityParams(data_blocks=1024, salt=bytes(range(32)), uuid=bytes(range(16)))),
            build_superblock(VerityParams(data_blocks=7, hash_alg=HashAlg.SHA1, data_block_size=512,
                                          hash_block_size=512))]


def _verity_sig() -> list[bytes]:
    from pcrtool.verity.sig_partition import VeritySig, build_sig_partition
    sig = VeritySig(bytes(range(32)), bytes(32), b"\x30\x03\x02\x01\x01")
    return [build_sig_partition(sig, 4096)[:1024], sig.to_json(), b"ab" * 32 + b"\n"]


def _pkcs7() -> list[bytes]:
    out = []
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import pkcs7
        from cryptography.x509.oid import NameOID
        import datetime as dt
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
        now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        for opts in ([pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
                     [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes]):
            out.append(pkcs7.PKCS7SignatureBuilder().set_data(b"ab" * 32).add_signer(cert, key, hashes.SHA256())
                       .sign(serialization.Encoding.DER, opts))
    except Exception:  # noqa: BLE001
        pass
    return out


def _pcrsig() -> list[bytes]:
    import hashlib
    ref = "svn:3"
    pol = bytes(range(32))
    entry = {"pcrs": [7, 11], "pkfp": "ab" * 32, "pol": pol.hex(), "sig": "AAECAw==", "ref": ref,
             "tbs": (pol + hashlib.sha256(ref.encode()).digest()).hex()}
    return [json.dumps({"sha256": [entry, {"pcrs": [11], "pkfp": "cd" * 32, "pol": "00" * 32, "sig": "AA=="}]}).encode()]


def _predictions() -> list[bytes]:
    out = _files([ROOT / "pcrtool" / "data" / "demo" / "releases.json"])
    try:
        from pcrtool.predict.manifest import dump_predictions, parse_manifest, predict_release
        rel = predict_release(parse_manifest(MANIFEST), FILES.__getitem__)
        out.append(json.dumps(dump_predictions([rel])).encode())
    except Exception:  # noqa: BLE001
        pass
    return out


def _manifest() -> list[bytes]:
    return [MANIFEST.encode(), json.dumps(MANIFEST_JSON).encode(),
            b'[[allow]]\nname = "fooos"\nversion = "2.1"\nsvn = 3\n']


def _enrollment() -> list[bytes]:
    signed = {"mode": "signed", "counter_index": 0x01805C00, "counter_name": "00" * 34, "c0": 0, "f0": 1,
              "window": 16, "bank": "sha256", "pcrs": [7, 11], "public_key_pem": "-----BEGIN PUBLIC KEY-----\n",
              "key_name": "00" * 34, "pkfp": "ab" * 32, "policy": "00" * 32, "blob": "AA==", "version": 1,
              "srk_name": "000b" + "00" * 32}
    allow = dict(signed, mode="allowlist")
    return [json.dumps(signed).encode(), json.dumps(allow).encode()]


def _sign_request() -> list[bytes]:
    out = []
    try:
        from pcrtool.sign.offline import new_request
        for kind in ("pcr-policy", "authenticode", "verity-roothash"):
            req, _ = new_request(kind, [("item", "item.tbs", b"to be signed")])
            out.append(json.dumps(req.to_json()).encode())
    except Exception:  # noqa: BLE001
        pass
    # format version 1, as an older pcrtool wrote it (still read on the signing host)
    v1 = Path(__file__).resolve().parents[1] / "sign" / "fixtures" / "request-v1"
    out += [f.read_bytes() for f in sorted(v1.glob("*/*.json"))]
    return out


def _efi_structs() -> list[bytes]:
    import struct
    import uuid
    x509_guid = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072").bytes_le
    sha256_guid = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328").bytes_le
    owner = bytes(range(16))
    esl = sha256_guid + struct.pack("<III", 28 + 48 * 2, 0, 48) + (owner + bytes(32)) * 2
    cert = b"\x30\x82\x00\x04\x02\x01\x01\x05\x00"
    esl_x509 = x509_guid + struct.pack("<III", 28 + 16 + len(cert), 0, 16 + len(cert)) + owner + cert
    name = "db".encode("utf-16-le")
    var = bytes(range(16)) + struct.pack("<QQ", 2, len(esl)) + name + esl
    device_path = bytes([4, 4, 8, 0]) + "\\a".encode("utf-16-le") + bytes([0x7F, 0xFF, 4, 0])
    load_option = struct.pack("<IH", 1, len(device_path)) + "boot\0".encode("utf-16-le") + device_path
    return [bytes([0]) + esl + esl_x509, bytes([1]) + var, bytes([2]) + load_option, bytes([3]) + device_path,
            bytes([4]) + esl]


def _pcrlock() -> list[bytes]:
    """The shapes systemd-pcrlock 262 writes: a lock-* record file and a make-policy pcrlock.json."""
    record = {"records": [{"pcr": 4, "digests": [{"hashAlg": "sha1", "digest": "11" * 20},
                                                 {"hashAlg": "sha256", "digest": "22" * 32}]}]}
    policy = {"pcrBank": "sha256", "pcrValues": [{"pcr": 7, "values": ["33" * 32, "44" * 32]},
                                                 {"pcr": 11, "values": ["55" * 32]}],
              "nvIndex": 29360128, "nvHandle": 29360128, "nvPublic": "AQAAAA==", "srkHandle": 2164260865,
              "pinPublic": "AA==", "pinPrivate": "AA=="}
    return [json.dumps(record).encode(), json.dumps(policy, indent=1).encode()]


SEEDS = {"eventlog": _eventlog, "userspace_log": _userspace_log, "pe_image": _pe_image,
         "verity_superblock": _verity_superblock, "verity_sig": _verity_sig, "pkcs7": _pkcs7, "pcrsig": _pcrsig,
         "predictions": _predictions, "manifest": _manifest, "enrollment": _enrollment,
         "sign_request": _sign_request, "efi_structs": _efi_structs, "pcrlock": _pcrlock}


def _every() -> list[bytes]:
    from targets import ORDER
    return [bytes([i]) + data for i, name in enumerate(ORDER) for data in SEEDS[name]()]


SEEDS["every"] = _every


def seeds(name: str) -> list[bytes]:
    return SEEDS[name]()


def write_seeds(name: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    items = seeds(name)
    for i, data in enumerate(items):
        (directory / f"seed-{i:03d}").write_bytes(data)
    return len(items)
