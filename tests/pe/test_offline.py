"""Offline flow: signed attributes as systemd-sbsign writes them, prepare/attach, refusals."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pytest

from helpers_openssl import sbsign_signed_attributes
from helpers_pe import pcrtool, sign_with_pcrtool, tool
from pcrtool.errors import MismatchError, UnsupportedError
from pcrtool.pe import PeImage, signing_digest
from pcrtool.pe.sign import prepare, prepare_with_attributes
from pcrtool.sign import authenticode_pkcs7 as ac

EPOCH = "1700000000"


@pytest.mark.parametrize("epoch", [0, 1700000000, 2000000000, -631152000, 2524607999])
def test_signed_attributes_equal_openssl_sbsign_calls(stub, epoch):
    idc = ac.spc_indirect_data_content(signing_digest(stub.read_bytes()))
    theirs = sbsign_signed_attributes(hashlib.sha256(ac.content_octets(idc)).digest(), epoch)
    if theirs is None:
        pytest.skip("libcrypto not found")
    ours = ac.signed_attributes(idc, dt.datetime.fromtimestamp(epoch, dt.timezone.utc))
    assert ours == theirs


def test_signing_time_outside_utctime_refused(stub):
    with pytest.raises(UnsupportedError, match="1950..2049"):
        prepare(stub.read_bytes(), dt.datetime(2050, 1, 1, tzinfo=dt.timezone.utc))


def _prepare(tmp, src, cert, name="img"):
    req = tmp / f"{name}.sign-request.json"
    pcrtool("pe", "prepare", src, "--cert", cert, "--request", req, env={"SOURCE_DATE_EPOCH": EPOCH}, check=True)
    return req, tmp / f"{name}.sattrs.der"


@pytest.mark.parametrize("which", ["stub", "uki"])
def test_prepare_openssl_attach_equals_direct(which, request, tmp_path, rsa2048):
    key, cert = rsa2048
    src = request.getfixturevalue(which)
    req, sattrs = _prepare(tmp_path, src, cert)
    manifest = json.loads(req.read_text())
    assert manifest["kind"] == "authenticode" and manifest["inputs"]["pe"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # the blob is what systemd-sbsign --prepare-offline-signing writes
    idc = ac.spc_indirect_data_content(signing_digest(src.read_bytes()))
    assert sattrs.read_bytes() == sbsign_signed_attributes(hashlib.sha256(ac.content_octets(idc)).digest(),
                                                           int(EPOCH))
    tool("openssl", "dgst", "-sha256", "-sign", key, "-out", f"{sattrs}.sig", sattrs)
    out = tmp_path / "offline.efi"
    pcrtool("pe", "attach", src, "--request", req, "--output", out, check=True)
    assert out.read_bytes() == sign_with_pcrtool(src.read_bytes(), key, cert, epoch=int(EPOCH))
    tool("sbverify", "--cert", cert, out)


def test_attach_with_pcrtool_sign_request_response(stub, tmp_path, rsa2048):
    key, cert = rsa2048
    req, _sattrs = _prepare(tmp_path, stub, cert)
    resp = tmp_path / "response.json"
    digest = json.loads(pcrtool("sign-request", "show", req, "--key", key, "--image", stub, "--json=short",
                                check=True).stdout)["digest"]
    pcrtool("sign-request", "sign", req, "--key", key, "--image", stub, "--output", resp, "--expect", digest,
            "--audit-log", tmp_path / "audit.jsonl", check=True)
    out = tmp_path / "resp.efi"
    pcrtool("pe", "attach", stub, "--request", req, "--signature", resp, "--output", out, check=True)
    assert out.read_bytes() == sign_with_pcrtool(stub.read_bytes(), key, cert, epoch=int(EPOCH))


def test_attach_full_pkcs7_from_sbsign(stub, tmp_path, rsa2048):
    key, cert = rsa2048
    req, _ = _prepare(tmp_path, stub, cert)
    p7 = tmp_path / "sb.p7"
    tool("sbsign", "--key", key, "--cert", cert, "--detached", "--output", p7, stub)
    out = tmp_path / "p7.efi"
    pcrtool("pe", "attach", stub, "--request", req, "--signature", p7, "--output", out, check=True)
    tool("sbverify", "--cert", cert, out)
    imported = tmp_path / "imported.efi"
    pcrtool("pe", "import-pkcs7", stub, p7, "--output", imported, check=True)
    assert imported.read_bytes() == out.read_bytes()


def test_attach_refuses_changed_pe(stub, boot, tmp_path, rsa2048):
    key, cert = rsa2048
    req, sattrs = _prepare(tmp_path, stub, cert)
    tool("openssl", "dgst", "-sha256", "-sign", key, "-out", f"{sattrs}.sig", sattrs)
    changed = tmp_path / "changed.efi"
    changed.write_bytes(stub.read_bytes()[:-8] + b"\x01" * 8)
    out = tmp_path / "never.efi"
    for target in (changed, boot):
        r = pcrtool("pe", "attach", target, "--request", req, "--output", out)
        assert r.returncode == 3 and "not the file the request was prepared for" in r.stderr
        assert not out.exists()


def test_attach_refuses_changed_attributes(stub, tmp_path, rsa2048):
    key, cert = rsa2048
    req, sattrs = _prepare(tmp_path, stub, cert)
    blob = bytearray(sattrs.read_bytes())
    blob[-1] ^= 1
    sattrs.write_bytes(bytes(blob))
    tool("openssl", "dgst", "-sha256", "-sign", key, "-out", f"{sattrs}.sig", sattrs)
    out = tmp_path / "never.efi"
    r = pcrtool("pe", "attach", stub, "--request", req, "--output", out)
    assert r.returncode == 3 and "changed" in r.stderr and not out.exists()


def test_attributes_for_another_image_refused(stub, boot):
    other = prepare(boot.read_bytes(), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    with pytest.raises(MismatchError, match="another image"):
        prepare_with_attributes(stub.read_bytes(), other.signed_attrs)


def test_attach_refuses_signature_of_another_key(stub, tmp_path, rsa2048, rsa2048b):
    _key, cert = rsa2048
    req, sattrs = _prepare(tmp_path, stub, cert)
    tool("openssl", "dgst", "-sha256", "-sign", rsa2048b[0], "-out", f"{sattrs}.sig", sattrs)
    out = tmp_path / "never.efi"
    r = pcrtool("pe", "attach", stub, "--request", req, "--output", out)
    assert r.returncode == 3 and "another key" in r.stderr and not out.exists()


def test_attach_refuses_pkcs7_for_another_image(stub, boot, tmp_path, rsa2048):
    key, cert = rsa2048
    p7 = tmp_path / "boot.p7"
    tool("sbsign", "--key", key, "--cert", cert, "--detached", "--output", p7, boot)
    out = tmp_path / "never.efi"
    r = pcrtool("pe", "import-pkcs7", stub, p7, "--output", out)
    assert r.returncode == 3 and "another image digest" in r.stderr and not out.exists()


def test_export_then_osslsigncode_attach(stub, tmp_path, rsa2048):
    key, cert = rsa2048
    signed = tmp_path / "signed.efi"
    signed.write_bytes(sign_with_pcrtool(stub.read_bytes(), key, cert))
    p7 = tmp_path / "exported.p7"
    pcrtool("pe", "export-pkcs7", signed, "--output", p7, check=True)
    assert p7.read_bytes() == ac.parse_pkcs7(PeImage.parse(signed.read_bytes()).certificates()[0].payload).der
    out = tmp_path / "oss.efi"
    tool("osslsigncode", "attach-signature", "-sigin", p7, "-CAfile", cert, "-in", stub, "-out", out)
    tool("sbverify", "--cert", cert, out)


def test_sha384_offline_flow(stub, tmp_path, rsa2048):
    from pcrtool.model import HashAlg
    key, cert = rsa2048
    req = tmp_path / "s384.sign-request.json"
    pcrtool("pe", "prepare", stub, "--cert", cert, "--request", req, "--hash", "sha384",
            env={"SOURCE_DATE_EPOCH": EPOCH}, check=True)
    sattrs = tmp_path / "s384.sattrs.der"
    tool("openssl", "dgst", "-sha384", "-sign", key, "-out", f"{sattrs}.sig", sattrs)
    out = tmp_path / "s384.efi"
    pcrtool("pe", "attach", stub, "--request", req, "--output", out, check=True)
    assert out.read_bytes() == sign_with_pcrtool(stub.read_bytes(), key, cert, epoch=int(EPOCH), alg=HashAlg.SHA384)
    assert "Succeeded" in tool("osslsigncode", "verify", "-CAfile", cert, "-in", out).stdout
    # a SHA-256 signature over the SHA-384 request's bytes is refused
    tool("openssl", "dgst", "-sha256", "-sign", key, "-out", f"{sattrs}.sig", sattrs)
    r = pcrtool("pe", "attach", stub, "--request", req, "--output", tmp_path / "never.efi")
    assert r.returncode == 3 and not (tmp_path / "never.efi").exists()


def test_prepare_refuses_sha512(stub, tmp_path, rsa2048):
    r = pcrtool("pe", "prepare", stub, "--cert", rsa2048[1], "--request", tmp_path / "x.sign-request.json",
                "--hash", "sha512")
    assert r.returncode == 1 and "SHA-512" in r.stderr and not list(tmp_path.iterdir())
