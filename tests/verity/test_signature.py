"""Root-hash signatures against openssl: byte-identical to `openssl smime -sign -noattr -binary`,
verified by `openssl cms -verify` in CA mode and in the exact-leaf modes systemd and the kernel use."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from helpers_verity import cli, need_tool, run

from pcrtool.errors import SignatureError
from pcrtool.sign import load_signer
from pcrtool.sign.pkcs7 import build_detached, parse_detached, verify_detached
from pcrtool.verity.roothash_pkcs7 import attach_signature, sign_root_hash

ROOT = "3b47d92f441ec6b09c94322fc99153f2c5878c0194564deadc8292216993aacf"


@pytest.fixture
def content(tmp_path):
    path = tmp_path / "roothash"
    path.write_bytes(ROOT.encode())
    return path


def smime_sign(pki, content, out, *extra, key=None, cert=None):
    run(need_tool("openssl"), "smime", "-sign", "-noattr", "-binary", "-in", content,
        "-signer", cert or pki.leaf_cert, "-inkey", key or pki.leaf_key, "-outform", "DER", "-out", out, *extra)
    return out.read_bytes()


def cms_verify(sig, content, *mode) -> bool:
    proc = run(need_tool("openssl"), "cms", "-verify", "-binary", "-inform", "DER", "-in", sig,
               "-content", content, "-out", "/dev/null", *mode, check=False)
    return proc.returncode == 0


def _sign(pki, *, embed=True, hash_alg="sha256", key=None, cert=None):
    from pcrtool.model import HashAlg
    with load_signer(f"file:{key or pki.leaf_key}", certificate=str(cert or pki.leaf_cert)) as signer:
        return sign_root_hash(signer, signer.certificate(), bytes.fromhex(ROOT),
                              hash_alg=HashAlg.from_name(hash_alg), embed_certificate=embed)


@pytest.mark.parametrize("embed,flags", [(True, []), (False, ["-nocerts"])])
@pytest.mark.parametrize("md", [None, "sha256", "sha384", "sha512"])
def test_signature_is_byte_identical_to_openssl_smime(pki, tmp_path, content, embed, flags, md):
    """openssl's default -md for an RSA key is sha256, the same as pcrtool's default."""
    md_flags = [] if md is None else ["-md", md]
    expected = smime_sign(pki, content, tmp_path / "smime.p7s", *flags, *md_flags)
    assert _sign(pki, embed=embed, hash_alg=md or "sha256") == expected


def test_signature_verifies_in_ca_mode_and_exact_leaf_modes(pki, tmp_path, content):
    sig = tmp_path / "sig.p7s"
    sig.write_bytes(_sign(pki))
    # CA mode: chain from the embedded leaf to the trusted CA.
    assert cms_verify(sig, content, "-CAfile", pki.ca_cert)
    # systemd userspace (validate_signature_userspace): PKCS7_NOINTERN|PKCS7_NOVERIFY with the
    # exact leaf from verity.d.
    assert cms_verify(sig, content, "-nointern", "-noverify", "-certfile", pki.leaf_cert)
    # The leaf itself as the only trust anchor (no chain building).
    assert cms_verify(sig, content, "-CAfile", pki.leaf_cert, "-partial_chain", "-purpose", "any")
    # A CA certificate in verity.d does not help systemd's exact-leaf mode.
    assert not cms_verify(sig, content, "-nointern", "-noverify", "-certfile", pki.ca_cert)
    # Another trust anchor refuses it.
    assert not cms_verify(sig, content, "-CAfile", pki.other_cert)


def test_signature_without_certificate_verifies_with_the_leaf_given(pki, tmp_path, content):
    sig = tmp_path / "sig.p7s"
    sig.write_bytes(_sign(pki, embed=False))
    assert parse_detached(sig.read_bytes()).certificates == ()
    assert cms_verify(sig, content, "-nointern", "-noverify", "-certfile", pki.leaf_cert)
    assert cms_verify(sig, content, "-certfile", pki.leaf_cert, "-CAfile", pki.ca_cert)
    assert not cms_verify(sig, content, "-CAfile", pki.ca_cert)  # nothing to build a chain from


@pytest.mark.parametrize("variant", [ROOT + "\n", ROOT.upper(), ROOT + "\0"])
def test_signature_covers_exactly_the_lowercase_hex_without_newline(pki, tmp_path, variant):
    sig = tmp_path / "sig.p7s"
    sig.write_bytes(_sign(pki))
    other = tmp_path / "other"
    other.write_bytes(variant.encode())
    assert not cms_verify(sig, other, "-CAfile", pki.ca_cert)
    with pytest.raises(SignatureError):
        verify_detached(parse_detached(sig.read_bytes()), variant.encode(), _der(pki.leaf_cert))


def _der(pem_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).public_bytes(Encoding.DER)


def test_ecdsa_signature_matches_openssl_structure_and_verifies(pki, tmp_path, content):
    """ECDSA is randomised: compare everything but the signature value, and verify with openssl."""
    ours = _sign(pki, key=pki.ec_key, cert=pki.ec_cert)
    theirs = smime_sign(pki, content, tmp_path / "ec.p7s", key=pki.ec_key, cert=pki.ec_cert)
    a, b = parse_detached(ours), parse_detached(theirs)
    assert (a.hash_alg, a.signature_algorithm, a.issuer_der, a.serial_number, a.certificates) == \
           (b.hash_alg, b.signature_algorithm, b.issuer_der, b.serial_number, b.certificates)
    # Around openssl's own ECDSA value, the builder reproduces openssl's DER exactly.
    assert build_detached(b.signature, _der(pki.ec_cert)) == theirs
    sig = tmp_path / "ours.p7s"
    sig.write_bytes(ours)
    assert cms_verify(sig, content, "-CAfile", pki.ca_cert)
    assert cms_verify(sig, content, "-nointern", "-noverify", "-certfile", pki.ec_cert)


def test_openssl_signature_with_signed_attributes_is_verified_too(pki, tmp_path, content):
    """openssl smime without -noattr adds signed attributes; the kernel accepts those as well."""
    out = tmp_path / "attrs.p7s"
    run(need_tool("openssl"), "smime", "-sign", "-binary", "-in", content, "-signer", pki.leaf_cert,
        "-inkey", pki.leaf_key, "-outform", "DER", "-out", out)
    parsed = parse_detached(out.read_bytes())
    assert parsed.signed_attrs is not None
    verify_detached(parsed, ROOT.encode(), _der(pki.leaf_cert))
    with pytest.raises(SignatureError, match="messageDigest"):
        verify_detached(parsed, ROOT.encode() + b"\n", _der(pki.leaf_cert))


def test_attach_raw_signature_from_openssl_dgst(pki, tmp_path, content):
    raw = run(need_tool("openssl"), "dgst", "-sha256", "-sign", pki.leaf_key, content).stdout
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(pki.leaf_cert.read_bytes())
    attached = attach_signature(raw, cert, ROOT.encode())
    assert attached.wrapped
    assert attached.der == smime_sign(pki, content, tmp_path / "s.p7s")
    with pytest.raises(SignatureError):
        attach_signature(raw, cert, ROOT.upper().encode())
    other = x509.load_pem_x509_certificate(pki.other_cert.read_bytes())
    with pytest.raises(SignatureError):
        attach_signature(raw, other, ROOT.encode())


def test_builder_refuses_nothing_openssl_accepts_roundtrip(pki):
    der = _sign(pki)
    parsed = parse_detached(der)
    assert parsed.signer_certificate() == _der(pki.leaf_cert)
    assert build_detached(parsed.signature, _der(pki.leaf_cert)) == der


# --- CLI: sign, prepare/attach, verity-sig partition, show-sig ----------------------------------

def test_cli_sign_writes_p7s_and_sig_partition(pki, tmp_path, content):
    code, out, err = cli("--json=short", "verity", "sign", ROOT, "--key", pki.leaf_key, "--certificate",
                         pki.leaf_cert, "-o", tmp_path / "rh.p7s", "--sig-partition", tmp_path / "sig.img")
    assert code == 0, err
    assert (tmp_path / "rh.p7s").read_bytes() == smime_sign(pki, content, tmp_path / "s.p7s")
    blob = (tmp_path / "sig.img").read_bytes()
    assert len(blob) == 16384
    text, _, pad = blob.partition(b"\0")
    assert set(pad) <= {0}
    obj = json.loads(text)
    assert list(obj) == ["rootHash", "certificateFingerprint", "signature"]
    assert b" " not in text  # compact, as repart writes it
    assert obj["rootHash"] == ROOT
    cert_der = run(need_tool("openssl"), "x509", "-in", pki.leaf_cert, "-outform", "DER").stdout
    assert obj["certificateFingerprint"] == hashlib.sha256(cert_der).hexdigest()
    assert base64.b64decode(obj["signature"]) == (tmp_path / "rh.p7s").read_bytes()
    code, out, err = cli("--json=short", "verity", "show-sig", tmp_path / "sig.img", "-c", pki.leaf_cert)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["verified"] and shown["rootHash"] == ROOT and shown["certificateEmbedded"]


def test_cli_prepare_then_attach_raw_and_pkcs7(pki, tmp_path, content):
    req = tmp_path / "img.sign-request.json"
    code, _, err = cli("verity", "prepare", ROOT, "-o", req, "-c", pki.leaf_cert)
    assert code == 0, err
    tbs = tmp_path / "img.roothash"
    assert tbs.read_bytes() == ROOT.encode()
    manifest = json.loads(req.read_text())
    assert manifest["kind"] == "verity-roothash"
    # Sign offline with openssl, attach the raw signature (default name <tbs>.sig).
    run(need_tool("openssl"), "dgst", "-sha256", "-sign", pki.leaf_key, "-out", str(tbs) + ".sig", tbs)
    code, _, err = cli("verity", "attach", req, "-c", pki.leaf_cert, "-o", tmp_path / "a.p7s",
                       "--sig-partition", tmp_path / "a.sig")
    assert code == 0, err
    assert (tmp_path / "a.p7s").read_bytes() == smime_sign(pki, content, tmp_path / "s.p7s")
    assert cms_verify(tmp_path / "a.p7s", content, "-CAfile", pki.ca_cert)
    # A full PKCS#7 from openssl smime is accepted and kept byte for byte.
    code, _, err = cli("verity", "attach", req, "-s", tmp_path / "s.p7s", "-c", pki.leaf_cert,
                       "-o", tmp_path / "b.p7s")
    assert code == 0, err
    assert (tmp_path / "b.p7s").read_bytes() == (tmp_path / "s.p7s").read_bytes()


def test_cli_attach_refuses_wrong_signatures_without_writing(pki, tmp_path, content):
    req = tmp_path / "img.sign-request.json"
    assert cli("verity", "prepare", ROOT, "-o", req)[0] == 0
    wrong = tmp_path / "wrong.sig"
    run(need_tool("openssl"), "dgst", "-sha256", "-sign", pki.other_key, "-out", wrong, content)
    code, _, err = cli("verity", "attach", req, "-s", wrong, "-c", pki.leaf_cert, "-o", tmp_path / "x.p7s")
    assert code == 3 and "does not verify" in err
    other_bytes = tmp_path / "o"
    other_bytes.write_bytes(ROOT.encode() + b"\n")
    run(need_tool("openssl"), "dgst", "-sha256", "-sign", pki.leaf_key, "-out", wrong, other_bytes)
    code, _, err = cli("verity", "attach", req, "-s", wrong, "-c", pki.leaf_cert, "-o", tmp_path / "x.p7s")
    assert code == 3 and "over other bytes" in err
    smime = tmp_path / "other.p7s"
    smime_sign(pki, content, smime, key=pki.other_key, cert=pki.other_cert)
    code, _, err = cli("verity", "attach", req, "-s", smime, "-c", pki.leaf_cert, "-o", tmp_path / "x.p7s")
    assert code == 3 and "another certificate" in err
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x30\x03\x02\x01\x01")
    code, _, err = cli("verity", "attach", req, "-s", garbage, "-c", pki.leaf_cert, "-o", tmp_path / "x.p7s")
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.p7s").exists()


def test_cli_attach_refuses_a_changed_request(pki, tmp_path):
    req = tmp_path / "img.sign-request.json"
    assert cli("verity", "prepare", ROOT, "-o", req, "-c", pki.leaf_cert)[0] == 0
    (tmp_path / "img.roothash").write_bytes(ROOT.replace("3b", "4b", 1).encode())
    code, _, err = cli("verity", "attach", req, "-s", tmp_path / "none", "-c", pki.leaf_cert,
                       "-o", tmp_path / "x.p7s")
    assert code == 3 and "changed" in err
    assert not (tmp_path / "x.p7s").exists()


def test_cli_attach_refuses_a_certificate_of_another_key(pki, tmp_path, content):
    req = tmp_path / "img.sign-request.json"
    assert cli("verity", "prepare", ROOT, "-o", req, "-c", pki.leaf_cert)[0] == 0
    sig = tmp_path / "s.p7s"
    smime_sign(pki, content, sig, key=pki.other_key, cert=pki.other_cert)
    code, _, err = cli("verity", "attach", req, "-s", sig, "-c", pki.other_cert, "-o", tmp_path / "x.p7s")
    assert code == 3 and "prepared for key" in err


def test_cli_sig_partition_from_smime_and_size_limits(pki, tmp_path, content):
    sig = tmp_path / "s.p7s"
    smime_sign(pki, content, sig)
    code, _, err = cli("verity", "sig-partition", sig, "--root-hash", ROOT, "-c", pki.leaf_cert,
                       "-o", tmp_path / "part", "--size", "4096")
    assert code == 0, err
    assert len((tmp_path / "part").read_bytes()) == 4096
    code, _, err = cli("verity", "sig-partition", sig, "--root-hash", ROOT, "-c", pki.leaf_cert,
                       "-o", tmp_path / "small", "--size", "1024")
    assert code == 2 and "partition only 1024" in err and not (tmp_path / "small").exists()
    code, _, err = cli("verity", "sig-partition", sig, "--root-hash", "00" * 32, "-c", pki.leaf_cert,
                       "-o", tmp_path / "bad")
    assert code == 3 and not (tmp_path / "bad").exists()


def test_cli_show_sig_reports_mismatching_root_hash(pki, tmp_path):
    assert cli("verity", "sign", ROOT, "-k", pki.leaf_key, "-c", pki.leaf_cert, "--sig-partition",
               tmp_path / "p")[0] == 0
    code, _, err = cli("verity", "show-sig", tmp_path / "p", "--root-hash", "11" * 32)
    assert code == 3 and "is for root hash" in err
    code, _, err = cli("verity", "show-sig", tmp_path / "p", "-c", pki.other_cert)
    assert code == 3


def test_cli_sign_with_a_pkcs11_token_equals_openssl_smime(pki, tmp_path, content):
    """The Signer interface: a real SoftHSM2 token holding the leaf key and its certificate."""
    need_tool("softhsm2-util")
    need_tool("pkcs11-tool")
    from tests.support.softhsm import SoftHsm

    with SoftHsm.start(label="verity test") as hsm:
        hsm.import_key(pki.leaf_key, label="verity", key_id=b"\x07", certificate=pki.leaf_cert)
        code, _, err = cli("verity", "sign", ROOT, "--key", hsm.uri("verity"), "-o", tmp_path / "hsm.p7s")
    assert code == 0, err
    assert (tmp_path / "hsm.p7s").read_bytes() == smime_sign(pki, content, tmp_path / "s.p7s")


def test_cli_sign_refuses_offline_key_and_missing_certificate(pki, tmp_path):
    code, _, err = cli("verity", "sign", ROOT, "--key", "offline", "-c", pki.leaf_cert, "-o", tmp_path / "x")
    assert code == 2 and "verity prepare" in err
    code, _, err = cli("verity", "sign", ROOT, "--key", pki.leaf_key, "-o", tmp_path / "x")
    assert code == 2 and "certificate" in err
    assert not (tmp_path / "x").exists()
