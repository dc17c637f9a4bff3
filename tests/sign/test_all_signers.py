"""All three signers (Authenticode, dm-verity root hash, PCR-policy approvals) with a file key, the
same key on a SoftHSM2 token, and the offline flow: outputs are byte-identical, and the oracles
(sbverify, openssl smime) accept them. RSA PKCS#1 v1.5 is deterministic and signingTime comes from
SOURCE_DATE_EPOCH, so byte equality is the exact expectation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers_sign import IN_CI, PIN, need_tool, openssl, run_cli, sign_cli
from pcrtool.model import HashAlg, PcrValues
from pcrtool.sign import load_signer
from pcrtool.sign.offline import new_request, read_request, read_signatures, write_request

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
ROOT_HASH = "5c3f0e1d9a7b2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def efi(tmp_path_factory) -> Path:
    if not EFI.is_file():
        if IN_CI:
            pytest.fail(f"{EFI} missing (apt-get install systemd-boot-efi)")
        pytest.skip(f"{EFI} missing")
    d = tmp_path_factory.mktemp("pe")
    shutil.copy(EFI, d / "in.efi")
    return d / "in.efi"


def test_authenticode_file_token_and_offline_outputs_are_identical(keys, hsm, efi, tmp_path):
    env = {**EPOCH, **hsm.env}
    crt = str(keys.crt("rsa"))
    online = tmp_path / "file.efi"
    ok(run_cli("pe", "sign", str(efi), "--key", str(keys.rsa), "--cert", crt, "-o", str(online), env=env))
    # token: the certificate comes from the token itself
    ok(run_cli("pe", "sign", str(efi), "--key", hsm.uri("rsa"), "-o", str(tmp_path / "token.efi"), env=env))
    assert (tmp_path / "token.efi").read_bytes() == online.read_bytes()
    # offline: prepare -> pcrtool sign-request sign on the "air-gapped" side with the token -> attach
    req = tmp_path / "uki.sign-request.json"
    ok(run_cli("pe", "prepare", str(efi), "--cert", crt, "--request", str(req), env=env))
    request, blobs = read_request(req)
    assert request.kind.value == "authenticode" and blobs[0][0] == 0x31  # DER SET OF attributes
    ok(sign_cli(req, hsm.uri("rsa"), env=env))
    ok(run_cli("pe", "attach", str(efi), "--request", str(req), "-o", str(tmp_path / "offline.efi"), env=env))
    assert (tmp_path / "offline.efi").read_bytes() == online.read_bytes()
    # offline with openssl dgst as the signer (systemd-sbsign's documented flow)
    openssl("dgst", "-sha256", "-sign", str(keys.rsa), "-out", str(tmp_path / "uki.sattrs.der.sig"),
            str(tmp_path / "uki.sattrs.der"))
    ok(run_cli("pe", "attach", str(efi), "--request", str(req), "-o", str(tmp_path / "openssl.efi"), env=env))
    assert (tmp_path / "openssl.efi").read_bytes() == online.read_bytes()
    ok(subprocess.run([need_tool("sbverify"), "--cert", crt, str(online)], capture_output=True, text=True))
    # a signature by another key is refused at attach and leaves no output
    openssl("dgst", "-sha256", "-sign", str(keys.rsa_b), "-out", str(tmp_path / "uki.sattrs.der.sig"),
            str(tmp_path / "uki.sattrs.der"))
    proc = run_cli("pe", "attach", str(efi), "--request", str(req), "-o", str(tmp_path / "bad.efi"), env=env)
    assert proc.returncode == 3 and "another key" in proc.stderr and not (tmp_path / "bad.efi").exists()


def _smime_verify(p7s: Path, content: Path, crt: str) -> None:
    ok(subprocess.run([need_tool("openssl"), "smime", "-verify", "-binary", "-inform", "DER", "-in", str(p7s),
                       "-content", str(content), "-certfile", crt, "-nointern", "-noverify"],
                      capture_output=True, text=True))


def test_verity_roothash_file_token_and_offline_outputs_are_identical(keys, hsm, tmp_path):
    env = hsm.env
    crt = str(keys.crt("rsa"))
    online = tmp_path / "file.p7s"
    ok(run_cli("verity", "sign", ROOT_HASH, "--key", str(keys.rsa), "-c", crt, "-o", str(online), env=env))
    ok(run_cli("verity", "sign", ROOT_HASH, "--key", hsm.uri("rsa"), "-o", str(tmp_path / "token.p7s"), env=env))
    assert (tmp_path / "token.p7s").read_bytes() == online.read_bytes()
    req = tmp_path / "img.sign-request.json"
    ok(run_cli("verity", "prepare", ROOT_HASH, "-o", str(req), "-c", crt, env=env))
    assert (tmp_path / "img.roothash").read_bytes() == ROOT_HASH.encode()  # lowercase hex, no newline
    ok(sign_cli(req, hsm.uri("rsa", prehashed=True), env=env))
    ok(run_cli("verity", "attach", str(req), "-c", crt, "-o", str(tmp_path / "offline.p7s"), env=env))
    assert (tmp_path / "offline.p7s").read_bytes() == online.read_bytes()
    _smime_verify(online, tmp_path / "img.roothash", crt)
    # pkcs11-tool as the signer on the air-gapped side
    ok(subprocess.run([need_tool("pkcs11-tool"), "--module", hsm.module, "--token-label", hsm.label, "--login",
                       "--pin", PIN, "--sign", "-m", "SHA256-RSA-PKCS", "--id", "01",
                       "-i", str(tmp_path / "img.roothash"), "-o", str(tmp_path / "img.roothash.sig")],
                      capture_output=True, env={**os.environ, **env}))
    ok(run_cli("verity", "attach", str(req), "-c", crt, "-o", str(tmp_path / "p11tool.p7s"), env=env))
    assert (tmp_path / "p11tool.p7s").read_bytes() == online.read_bytes()
    # a signature over other bytes (hex with a trailing newline) is refused
    (tmp_path / "nl").write_bytes(ROOT_HASH.encode() + b"\n")
    openssl("dgst", "-sha256", "-sign", str(keys.rsa), "-out", str(tmp_path / "img.roothash.sig"), str(tmp_path / "nl"))
    proc = run_cli("verity", "attach", str(req), "-c", crt, "-o", str(tmp_path / "bad.p7s"), env=env)
    assert proc.returncode == 3 and "other bytes" in proc.stderr and not (tmp_path / "bad.p7s").exists()


def test_verity_roothash_with_an_ecdsa_token_key(keys, hsm, tmp_path):
    crt = str(keys.crt("ec256"))
    req = tmp_path / "img.sign-request.json"
    ok(run_cli("verity", "prepare", ROOT_HASH, "-o", str(req), "-c", crt, env=hsm.env))
    ok(sign_cli(req, hsm.uri("ec256"), env=hsm.env))
    ok(run_cli("verity", "attach", str(req), "-c", crt, "-o", str(tmp_path / "ec.p7s"), env=hsm.env))
    _smime_verify(tmp_path / "ec.p7s", tmp_path / "img.roothash", crt)


def test_pcr_policy_approvals_file_token_and_offline_are_identical(keys, hsm, tmp_path):
    from pcrtool.policy.approvals import (ApprovalTarget, Approvals, attach_signatures, build_entries,
                                          sign_entries, signer_callable, verify_entry)
    targets = [ApprovalTarget(PcrValues({HashAlg.SHA256: {11: hashlib.sha256(bytes([i])).digest()},
                                         HashAlg.SHA1: {11: hashlib.sha1(bytes([i])).digest()}}),
                              svn=i, label=f"release-{i}") for i in (1, 2)]
    file_signer = load_signer(str(keys.rsa))
    public = file_signer.public_key()
    entries = build_entries(targets, public)
    online = Approvals(tuple(sign_entries(entries, signer_callable(file_signer))))
    with load_signer(hsm.uri("rsa")) as token:
        token.require_rsa(consumer="systemd signed PCR policy")
        assert Approvals(tuple(sign_entries(entries, signer_callable(token)))).dumps() == online.dumps()
    # offline: one request with one tbs item per release and bank, signed by pcrtool on the token
    values = {(b, t.svn): pcrs for t in targets for b, pcrs in t.values.values.items()}
    items = [(f"{e.bank.bank_name}/svn{e.svn}", f"rel.tbs-{i}", e.tbs,
              {"bank": e.bank.bank_name, "pcrs": {"11": values[(e.bank, e.svn)][11].hex()}, "ref": e.ref})
             for i, e in enumerate(entries)]
    request, blobs = new_request("pcr-policy", items, key=public)
    req = tmp_path / "rel.sign-request.json"
    write_request(req, request, blobs)
    ok(sign_cli(req, hsm.uri("rsa"), "-o", str(tmp_path / "resp.json"), env=hsm.env))
    request, blobs = read_request(req)
    sigs = read_signatures(req, request, tmp_path / "resp.json")
    offline = attach_signatures(Approvals(tuple(entries)), dict(zip(blobs, sigs)), public)
    assert offline.dumps() == online.dumps()
    for e in offline.entries:
        verify_entry(e, public)
    # another key than the one the request names is refused on the signing side
    proc = run_cli("sign-request", "sign", str(req), "--key", hsm.uri("ec256"), "--expect", "00" * 32,
                   env=hsm.env)
    assert proc.returncode == 1 and "the request asks for key" in proc.stderr


def test_verity_roothash_signed_by_pkcs11_tool_ecdsa_raw_signature(keys, hsm, tmp_path):
    """pkcs11-tool -m ECDSA returns raw r||s (PKCS#11 §2.3.1); the request names an EC key, so
    it is converted to DER before the PKCS#7 is built, and openssl accepts the result."""
    crt = str(keys.crt("ec256"))
    req = tmp_path / "img.sign-request.json"
    ok(run_cli("verity", "prepare", ROOT_HASH, "-o", str(req), "-c", crt, env=hsm.env))
    digest = tmp_path / "digest"
    digest.write_bytes(hashlib.sha256(ROOT_HASH.encode()).digest())
    ok(subprocess.run([need_tool("pkcs11-tool"), "--module", hsm.module, "--token-label", hsm.label, "--login",
                       "--pin", PIN, "--sign", "-m", "ECDSA", "--id", "02", "-i", str(digest),
                       "-o", str(tmp_path / "img.roothash.sig")], capture_output=True, env={**os.environ, **hsm.env}))
    assert len((tmp_path / "img.roothash.sig").read_bytes()) == 64
    ok(run_cli("verity", "attach", str(req), "-c", crt, "-o", str(tmp_path / "ec.p7s"), env=hsm.env))
    _smime_verify(tmp_path / "ec.p7s", tmp_path / "img.roothash", crt)


def _releases(tmp_path: Path) -> Path:
    doc = {"pcrs": [11], "releases": [
        {"name": "os", "version": f"1.{i}", "svn": i,
         "measurements": [{"pcr": 11, "sha256": hashlib.sha256(b"uki %d" % i).hexdigest()}]}
        for i in (1, 2, 3)]}
    path = tmp_path / "releases.json"
    path.write_text(json.dumps(doc))
    return path


def test_pcr_policy_cli_approve_file_token_and_offline_are_identical(keys, hsm, tmp_path):
    """`pcrtool policy approve` with the file key and the token, and `policy prepare --request` →
    `pcrtool sign-request sign` (token) → `policy attach`: the same .pcrsig bytes."""
    releases = _releases(tmp_path)
    env = hsm.env
    ok(run_cli("policy", "approve", "-r", str(releases), "--key", str(keys.rsa), "-o", str(tmp_path / "file.json"),
               env=env))
    ok(run_cli("policy", "approve", "-r", str(releases), "--key", hsm.uri("rsa"), "-o", str(tmp_path / "token.json"),
               env=env))
    online = (tmp_path / "file.json").read_bytes()
    assert (tmp_path / "token.json").read_bytes() == online
    req = tmp_path / "rel.sign-request.json"
    ok(run_cli("policy", "prepare", "-r", str(releases), "-k", str(keys.pub("rsa")), "-o",
               str(tmp_path / "unsigned.json"), "--request", str(req), env=env))
    request, blobs = read_request(req)
    assert request.kind.value == "pcr-policy" and len(blobs) == 3
    ok(sign_cli(req, hsm.uri("rsa", prehashed=True), env=env))
    ok(run_cli("policy", "attach", str(tmp_path / "unsigned.json"), "-k", str(keys.pub("rsa")), "--request", str(req),
               "-o", str(tmp_path / "offline.json"), env=env))
    assert (tmp_path / "offline.json").read_bytes() == online
    # openssl dgst over each tbs file gives the same result; another key's signatures are refused
    def attach_openssl_signatures(key: Path, name: str) -> subprocess.CompletedProcess:
        for it in request.items:
            openssl("dgst", "-sha256", "-sign", str(key), "-out", str(tmp_path / f"{it.file}.sig"),
                    str(tmp_path / it.file))
        return run_cli("policy", "attach", str(tmp_path / "unsigned.json"), "-k", str(keys.pub("rsa")),
                       "--request", str(req), "-o", str(tmp_path / name), env=env)

    ok(attach_openssl_signatures(keys.rsa, "openssl.json"))
    assert (tmp_path / "openssl.json").read_bytes() == online
    proc = attach_openssl_signatures(keys.rsa_b, "bad.json")
    assert proc.returncode == 3 and "another key" in proc.stderr and not (tmp_path / "bad.json").exists()
