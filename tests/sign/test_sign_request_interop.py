"""Round trips through the signing host with systemd's own offline blobs (newest systemd, sid
chroot): systemd-sbsign's --prepare-offline-signing attributes, systemd-measure policy-digest
output and systemd-repart's deferred root hash are decoded, shown, signed with a file key and a
SoftHSM2 token, and the result is accepted by systemd's tools and openssl."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


from helpers_sign import need_tool, openssl, run_cli, sign_cli
from pcrtool.model import HashAlg
from pcrtool.sign.offline import new_request, read_request, write_request
from request_items import make_ref

BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
BANKS = ("sha1", "sha256", "sha384", "sha512")


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    return proc


def test_systemd_sbsign_offline_blob_round_trip_with_file_key_and_token(sid_systemd, keys, hsm, tmp_path):
    if not BOOT.is_file():
        need_tool(str(BOOT))
    efi = tmp_path / "boot.efi"
    shutil.copy(BOOT, efi)
    crt = keys.crt("rsa")
    blob = tmp_path / "signed-data.bin"
    sid_systemd.run("systemd-sbsign", "sign", f"--certificate={crt}", "--prepare-offline-signing",
                    f"--output={blob}", efi)
    req = tmp_path / "uki.sign-request.json"
    ok(run_cli("pe", "prepare", str(efi), "--cert", str(crt), "--request", str(req), "--signed-data", str(blob)))
    assert (tmp_path / "uki.sattrs.der").read_bytes() == blob.read_bytes()   # sbsign's bytes, unchanged
    from pcrtool.pe.sign import prepare_for_pkcs7
    digest = prepare_for_pkcs7(efi.read_bytes()).image_digest.hex()
    shown = json.loads(ok(run_cli("sign-request", "show", str(req), "--image", str(efi), "--json=short")).stdout)
    decoded = shown["summary"]["items"][0]["decoded"]
    assert decoded["image_digest"] == digest and decoded["image_checked"] is True
    assert "systemd-sbsign" in shown["summary"]["items"][0]["shape"]
    ok(sign_cli(req, str(keys.rsa), "--image", str(efi), show_args=("--image", efi)))
    assert json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[0])["decoded"]["image_checked"] is True
    file_sig = (tmp_path / "uki.sattrs.der.sig").read_bytes()
    ok(sign_cli(req, hsm.uri("rsa"), env=hsm.env))
    assert (tmp_path / "uki.sattrs.der.sig").read_bytes() == file_sig            # PKCS#1 v1.5 is deterministic
    out = tmp_path / "signed.efi"
    sid_systemd.run("systemd-sbsign", "sign", f"--certificate={crt}", f"--signed-data={blob}",
                    f"--signed-data-signature={tmp_path / 'uki.sattrs.der.sig'}", f"--output={out}", efi)
    import subprocess
    ok(subprocess.run([need_tool("sbverify"), "--cert", str(crt), str(out)], capture_output=True, text=True))
    # sbsign's blob for another image is refused when the build host wraps it
    other = tmp_path / "other.efi"
    other.write_bytes(efi.read_bytes() + bytes(8))
    proc = run_cli("pe", "prepare", str(other), "--cert", str(crt), "--request", str(tmp_path / "o.sign-request.json"),
                   "--signed-data", str(blob))
    assert proc.returncode == 3 and "another image" in proc.stderr


def _measure(sid, tmp_path, verb, *extra, phase="enter-initrd", banks=BANKS):
    (tmp_path / "linux").write_bytes(b"a kernel image")
    (tmp_path / "osrel").write_bytes(b"ID=demo\nVERSION_ID=1\n")
    proc = sid.run("systemd-measure", verb, f"--linux={tmp_path / 'linux'}", f"--osrel={tmp_path / 'osrel'}",
                   f"--phase={phase}", *[f"--bank={b}" for b in banks], "--json=short", *extra)
    return json.loads(proc.stdout)


def test_systemd_measure_policy_digest_is_decoded_and_signed(sid_systemd, keys, hsm, tmp_path):
    calc = _measure(sid_systemd, tmp_path, "calculate")
    later = _measure(sid_systemd, tmp_path, "calculate", phase="leave-initrd")
    pub = f"--public-key={keys.pub('rsa')}"
    for svn in (None, 3):
        items, pols = [], {}
        for bank in BANKS:   # pcrtool's refs name their bank: one policy-digest run per bank
            ref = None if svn is None else make_ref(svn, HashAlg.from_name(bank))
            doc = _measure(sid_systemd, tmp_path, "policy-digest", pub, *([f"--policyref={ref}"] if ref else []),
                           banks=(bank,))
            [entry] = doc[bank]
            pols[bank] = entry["pol"]
            tbs = bytes.fromhex(entry.get("tbs", entry["pol"]))
            items.append((f"{bank} enter-initrd", f"m.{bank}.tbs", tbs,
                          {"bank": bank, "pcrs": {"11": calc[bank][0]["hash"]}, "ref": ref}))
        d = tmp_path / f"svn-{svn}"
        d.mkdir()
        req, blobs = new_request("pcr-policy", items, key=None)
        write_request(d / "m.sign-request.json", req, blobs)
        shown = json.loads(ok(run_cli("sign-request", "show", str(d / "m.sign-request.json"), "--json=short")).stdout)
        for bank, item in zip(BANKS, shown["summary"]["items"]):
            assert item["decoded"]["svn"] == svn
            assert item["decoded"]["approved_policy"] == pols[bank]
        key = str(keys.rsa) if svn else hsm.uri("rsa")
        ok(sign_cli(d / "m.sign-request.json", key, env=hsm.env))
        for bank in BANKS:   # the TPM's VerifySignature: RSASSA-PKCS1-v1_5 / SHA-256 over tbs (openssl here)
            openssl("dgst", "-sha256", "-verify", str(keys.pub("rsa")), "-signature", str(d / f"m.{bank}.tbs.sig"),
                    str(d / f"m.{bank}.tbs"))
        # the same policy digest shown with the PCR 11 value of another phase: refused
        wrong = [(lbl, n, t, dict(c, pcrs={"11": later[c["bank"]][0]["hash"]})) for lbl, n, t, c in items]
        req, blobs = new_request("pcr-policy", wrong[:1], key=None)
        write_request(d / "w.sign-request.json", req, blobs)
        assert run_cli("sign-request", "show", str(d / "w.sign-request.json")).returncode == 3


def test_systemd_repart_deferred_root_hash_round_trip(sid_systemd, keys, hsm, tmp_path):
    defs = tmp_path / "defs"
    defs.mkdir()
    (tmp_path / "payload.img").write_bytes(bytes(range(256)) * 4096 * 3)
    (defs / "10-root.conf").write_text(
        f"[Partition]\nType=root\nVerity=data\nVerityMatchKey=root\nCopyBlocks={tmp_path / 'payload.img'}\n")
    (defs / "20-verity.conf").write_text("[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n"
                                         "SizeMinBytes=1M\n")
    (defs / "30-sig.conf").write_text("[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n")
    disk = tmp_path / "disk.img"
    common = (f"--definitions={defs}", "--dry-run=no", "--seed=b4d4f6a0-6c0e-4b5f-9f47-2f0c1b1d4a11")
    table = json.loads(sid_systemd.run("systemd-repart", *common, "--empty=create", "--size=auto",
                                       "--defer-partitions=root-verity-sig", "--json=short", disk).stdout)
    root = table[0]["roothash"]
    crt = keys.crt("rsa")
    req = tmp_path / "ddi.sign-request.json"
    ok(run_cli("verity", "prepare", root, "-o", str(req), "-c", str(crt)))
    item = json.loads(ok(run_cli("sign-request", "show", str(req), "--json=short")).stdout)["summary"]["items"][0]
    assert item["decoded"] == {"root_hash": root, "root_hash_algorithm": "sha256"}
    ok(sign_cli(req, hsm.uri("rsa"), env=hsm.env))
    token_sig = (tmp_path / "ddi.roothash.sig").read_bytes()
    ok(sign_cli(req, str(keys.rsa)))
    assert (tmp_path / "ddi.roothash.sig").read_bytes() == token_sig
    ok(run_cli("verity", "attach", str(req), "-c", str(crt), "-o", str(tmp_path / "root.p7s")))
    openssl("smime", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "root.p7s"),
            "-content", str(tmp_path / "ddi.roothash"), "-certfile", str(crt), "-nointern", "-noverify")
    sid_systemd.run("systemd-repart", *common, f"--join-signature={root}:{tmp_path / 'root.p7s'}",
                    f"--certificate={crt}", disk)
    sig = next(e for e in table if e["type"].endswith("verity-sig"))
    part = disk.read_bytes()[sig["offset"]:sig["offset"] + sig["raw_size"]]
    (tmp_path / "sig.part").write_bytes(part)
    shown = json.loads(ok(run_cli("--json=short", "verity", "show-sig", str(tmp_path / "sig.part"),
                                  "-c", str(crt))).stdout)
    assert shown["verified"] is True and shown["rootHash"] == root
    assert read_request(req)[0].items[0].context == {"root_hash_algorithm": "sha256"}
