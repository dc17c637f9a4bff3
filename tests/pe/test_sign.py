"""Signing: oracles sbverify/osslsigncode accept our output, we accept theirs, edge cases as EDK2."""

from __future__ import annotations

import shutil
import struct

import pytest

from helpers_pe import (make_cert, pcrtool, sign_with_pcrtool, strip_signatures, tool, variant_gap, variant_headers_swapped,
                        variant_last_section_unaligned)
from pcrtool.errors import FormatError, UnsupportedError
from pcrtool.model import HashAlg
from pcrtool.pe import PeImage, authenticode_digest, signing_digest
from pcrtool.pe.sigdb import load_sigdb
from pcrtool.pe.verify import verify_image
from pcrtool.sign import authenticode_pkcs7 as ac


def _db(cert):
    return load_sigdb(cert.read_bytes())


def _accepts(data: bytes, cert) -> bool:
    return verify_image(data, db=_db(cert)).accepted is True


@pytest.mark.parametrize("which", ["stub", "boot", "kernel", "uki"])
def test_our_signature_passes_sbverify_and_osslsigncode(which, request, pe_tmp, rsa2048):
    key, cert = rsa2048
    src = request.getfixturevalue(which)
    if which == "kernel":
        # appending to Debian's signature: sbverify checks every entry
        both = pe_tmp / "kernel-two-signatures.efi"
        both.write_bytes(sign_with_pcrtool(src.read_bytes(), key, cert))
        tool("sbverify", "--cert", cert, both)
        assert _accepts(both.read_bytes(), cert)
        # osslsigncode cannot read a table with two entries: give it the unsigned kernel
        src = pe_tmp / "kernel-unsigned.efi"
        src.write_bytes(strip_signatures(request.getfixturevalue(which).read_bytes()))
    out = pe_tmp / f"ours-{which}.efi"
    out.write_bytes(sign_with_pcrtool(src.read_bytes(), key, cert))
    tool("sbverify", "--cert", cert, out)
    res = tool("osslsigncode", "verify", "-CAfile", cert, "-in", out)
    assert "Signature verification: ok" in res.stdout or "Succeeded" in res.stdout
    assert _accepts(out.read_bytes(), cert)
    # the embedded digest is what pesign computes for the unsigned input
    sig = ac.parse_pkcs7(PeImage.parse(out.read_bytes()).certificates()[-1].payload)
    assert sig.idc_digest == signing_digest(src.read_bytes())


@pytest.mark.parametrize("which", ["stub", "boot", "kernel", "uki"])
def test_peer_signatures_verify_with_pcrtool(which, request, pe_tmp, rsa2048):
    key, cert = rsa2048
    src = request.getfixturevalue(which)
    if which == "kernel":  # osslsigncode cannot add to Debian's signature table: start unsigned
        src = pe_tmp / "kernel-unsigned-peers.efi"
        src.write_bytes(strip_signatures(request.getfixturevalue(which).read_bytes()))
    sb = pe_tmp / f"sbsign-{which}.efi"
    tool("sbsign", "--key", key, "--cert", cert, "--output", sb, src)
    oss = pe_tmp / f"osslsigncode-{which}.efi"
    tool("osslsigncode", "sign", "-certs", cert, "-key", key, "-h", "sha256", "-in", src, "-out", oss)
    for f in (sb, oss):
        result = verify_image(f.read_bytes(), db=_db(cert))
        assert result.accepted is True, result.reason
        assert [s.digest_matches and s.signature_valid for s in result.signatures] == [True]
    # osslsigncode writes dwLength padded, sbsign unpadded: both walk
    assert PeImage.parse(oss.read_bytes()).certificates()[0].length % 8 == 0
    r = pcrtool("pe", "verify", sb, "--cert", cert)
    assert r.returncode == 0, r.stderr


def test_debian_signed_kernel_lists_debian_signer(kernel):
    result = verify_image(kernel.read_bytes())
    assert result.accepted is None
    (s,) = result.signatures
    assert s.digest_matches and s.signature_valid
    assert "Debian Secure Boot Signer" in s.subject and "Debian Secure Boot CA" in s.issuer


def test_spc_indirect_data_content_is_byte_identical_to_sbsign(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    p7 = pe_tmp / "sbsign-detached.p7"
    tool("sbsign", "--key", key, "--cert", cert, "--detached", "--output", p7, stub)
    theirs = ac.parse_pkcs7(p7.read_bytes()).idc_der
    ours = ac.spc_indirect_data_content(signing_digest(stub.read_bytes()))
    assert ours == theirs and len(ours) == 106


def test_two_signatures_append_and_both_verify(stub, pe_tmp, rsa2048, rsa2048b):
    (k1, c1), (k2, c2) = rsa2048, rsa2048b
    once = sign_with_pcrtool(stub.read_bytes(), k1, c1)
    twice = sign_with_pcrtool(once, k2, c2)
    assert twice.startswith(once[:PeImage.parse(once).checksum_offset])
    out = pe_tmp / "two.efi"
    out.write_bytes(twice)
    listing = tool("sbverify", "--list", out).stdout
    assert "signature 2" in listing
    tool("sbverify", "--cert", c1, out)
    tool("sbverify", "--cert", c2, out)
    for c in (c1, c2):
        assert _accepts(twice, c)
    assert len(verify_image(twice).signatures) == 2
    # sbsign appending to ours, and ours to sbsign's: the table stays walkable
    sb2 = pe_tmp / "two-sbsign.efi"
    tool("sbsign", "--key", k2, "--cert", c2, "--output", sb2, pe_tmp / "two.efi")
    assert len(PeImage.parse(sb2.read_bytes()).certificates()) == 3
    assert all(s.digest_matches and s.signature_valid for s in verify_image(sb2.read_bytes()).signatures)


@pytest.mark.parametrize("variant", [variant_last_section_unaligned, variant_gap, variant_headers_swapped],
                         ids=["E1-unaligned-no-trailer", "E3-gap", "E4-headers-unsorted"])
def test_edge_cases_behave_as_edk2(variant, stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    src = pe_tmp / f"edge-{variant.__name__}.efi"
    src.write_bytes(variant(stub.read_bytes()))
    ours = pe_tmp / f"edge-ours-{variant.__name__}.efi"
    ours.write_bytes(sign_with_pcrtool(src.read_bytes(), key, cert))
    tool("sbverify", "--cert", cert, ours)        # sbsign's hashing is right in all three cases
    assert _accepts(ours.read_bytes(), cert)
    # sbsign's signature over the same input embeds the same digest as ours
    sb = pe_tmp / f"edge-sbsign-{variant.__name__}.efi"
    tool("sbsign", "--key", key, "--cert", cert, "--output", sb, src)
    sb_sig = ac.parse_pkcs7(PeImage.parse(sb.read_bytes()).certificates()[0].payload)
    assert sb_sig.idc_digest == signing_digest(src.read_bytes())


def test_osslsigncode_gap_signature_is_rejected_like_edk2(stub, pe_tmp, rsa2048):
    """osslsigncode hashes the gap linearly: EDK2 (and sbverify, and we) reject its signature."""
    key, cert = rsa2048
    src = pe_tmp / "gap.efi"
    src.write_bytes(variant_gap(stub.read_bytes()))
    out = pe_tmp / "gap-oss.efi"
    tool("osslsigncode", "sign", "-certs", cert, "-key", key, "-in", src, "-out", out)
    assert tool("sbverify", "--cert", cert, out, check=False).returncode != 0
    result = verify_image(out.read_bytes(), db=_db(cert))
    assert result.accepted is False and not result.signatures[0].digest_matches


def test_e1_padding_is_physical(stub, rsa2048):
    key, cert = rsa2048
    e1 = variant_last_section_unaligned(stub.read_bytes())
    signed = sign_with_pcrtool(e1, key, cert)
    pad = (-len(e1)) % 8
    assert signed[len(e1):len(e1) + pad] == bytes(pad)
    assert PeImage.parse(signed).cert_table_offset == len(e1) + pad
    assert authenticode_digest(signed) == signing_digest(e1) != authenticode_digest(e1)


def test_reproducible_with_source_date_epoch(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    outs = []
    for i in range(2):
        out = pe_tmp / f"repro{i}.efi"
        pcrtool("pe", "sign", stub, "--key", key, "--cert", cert, "-o", out,
                env={"SOURCE_DATE_EPOCH": "1700000000"}, check=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == sign_with_pcrtool(stub.read_bytes(), key, cert, epoch=1700000000)
    sig = ac.parse_pkcs7(PeImage.parse(outs[0]).certificates()[0].payload)
    assert sig.attributes.signing_time.timestamp() == 1700000000


def test_checksum_is_updated(stub, rsa2048):
    pefile = pytest.importorskip("pefile")
    key, cert = rsa2048
    signed = sign_with_pcrtool(stub.read_bytes(), key, cert)
    pe = pefile.PE(data=signed, fast_load=True)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_rsa_keys(bits, stub, pe_tmp):
    key, cert = make_cert(pe_tmp, bits, f"rsa{bits}")
    out = pe_tmp / f"rsa{bits}.efi"
    out.write_bytes(sign_with_pcrtool(stub.read_bytes(), key, cert))
    tool("sbverify", "--cert", cert, out)


def test_sha384_signature(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    out = pe_tmp / "sha384.efi"
    out.write_bytes(sign_with_pcrtool(stub.read_bytes(), key, cert, alg=HashAlg.SHA384))
    sig = ac.parse_pkcs7(PeImage.parse(out.read_bytes()).certificates()[0].payload)
    assert sig.digest_algorithm is HashAlg.SHA384 and len(sig.idc_der) == 122
    assert sig.idc_digest == signing_digest(stub.read_bytes(), HashAlg.SHA384)
    res = tool("osslsigncode", "verify", "-CAfile", cert, "-in", out)
    assert "Succeeded" in res.stdout
    assert _accepts(out.read_bytes(), cert)


def test_sha512_is_refused_with_reason(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    with pytest.raises(UnsupportedError, match="0x81 length form"):
        sign_with_pcrtool(stub.read_bytes(), key, cert, alg=HashAlg.SHA512)
    out = pe_tmp / "sha512.efi"
    r = pcrtool("pe", "sign", stub, "--key", key, "--cert", cert, "-o", out, "--hash", "sha512")
    assert r.returncode == 1 and "SHA-512" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_osslsigncode_sha512_is_rejected_by_edk2_rules(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    out = pe_tmp / "oss-sha512.efi"
    tool("osslsigncode", "sign", "-certs", cert, "-key", key, "-h", "sha512", "-in", stub, "-out", out)
    result = verify_image(out.read_bytes(), db=_db(cert))
    assert result.accepted is False
    assert any("length form" in p for p in result.signatures[0].problems)


def test_small_and_non_rsa_keys_refused(stub, pe_tmp):
    import subprocess
    key, cert = pe_tmp / "ec.key", pe_tmp / "ec.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-subj", "/CN=ec", "-days", "10"], check=True, capture_output=True)
    with pytest.raises(UnsupportedError):
        sign_with_pcrtool(stub.read_bytes(), key, cert)
    key, cert = make_cert(pe_tmp, 1024, "small")
    with pytest.raises(UnsupportedError, match="too small"):
        sign_with_pcrtool(stub.read_bytes(), key, cert)


def test_certificate_of_another_key_refused(stub, rsa2048, rsa2048b):
    with pytest.raises(Exception) as e:
        sign_with_pcrtool(stub.read_bytes(), rsa2048[0], rsa2048b[1])
    assert "certificate" in str(e.value)


def test_tampered_image_fails_verification(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    signed = bytearray(sign_with_pcrtool(stub.read_bytes(), key, cert))
    signed[0x500] ^= 1
    out = pe_tmp / "tampered.efi"
    out.write_bytes(bytes(signed))
    assert tool("sbverify", "--cert", cert, out, check=False).returncode != 0
    r = pcrtool("pe", "verify", out, "--cert", cert)
    assert r.returncode == 3 and "refuse" in r.stderr


def test_data_appended_after_signing(stub, rsa2048):
    key, cert = rsa2048
    signed = sign_with_pcrtool(stub.read_bytes(), key, cert) + b"appended"
    result = verify_image(signed, db=_db(cert))
    assert result.accepted is False
    assert any("not at the end of the file" in w for w in result.warnings)
    with pytest.raises(UnsupportedError, match="not at the end"):
        sign_with_pcrtool(signed, key, cert)


def test_broken_table_walk_rejected(stub, rsa2048):
    key, cert = rsa2048
    signed = bytearray(sign_with_pcrtool(stub.read_bytes(), key, cert))
    img = PeImage.parse(bytes(signed))
    struct.pack_into("<I", signed, img.security_directory_offset + 4, img.cert_table_size - 8)
    result = verify_image(bytes(signed), db=_db(cert))
    assert result.accepted is False and not result.table_ok
    with pytest.raises(FormatError):
        PeImage.parse(bytes(signed)).certificates()


def test_dbx_hits(stub, rsa2048):
    key, cert = rsa2048
    signed = sign_with_pcrtool(stub.read_bytes(), key, cert)
    from pcrtool.pe.sigdb import SignatureDb, tbs_hash
    cert_der = _db(cert).certificates[0]
    for dbx in (SignatureDb(certificates=[cert_der]),
                SignatureDb(cert_hashes=[(HashAlg.SHA256, tbs_hash(cert_der, HashAlg.SHA256))]),
                SignatureDb(image_hashes=[(HashAlg.SHA256, authenticode_digest(signed))])):
        result = verify_image(signed, db=_db(cert), dbx=dbx)
        assert result.accepted is False and "dbx" in result.reason


def test_unsigned_image_by_hash_in_db(stub):
    from pcrtool.pe.sigdb import SignatureDb
    data = stub.read_bytes()
    ok = verify_image(data, db=SignatureDb(image_hashes=[(HashAlg.SHA256, authenticode_digest(data))]))
    assert ok.accepted is True
    padded_hash = verify_image(data, db=SignatureDb(image_hashes=[(HashAlg.SHA256, signing_digest(data))]))
    assert padded_hash.accepted is False   # firmware hashes the unsigned file as it is


def test_edk2_layout_check_refuses_short_pkcs7():
    with pytest.raises(UnsupportedError):
        ac.check_edk2_layout(b"\x30\x81\x90" + bytes(0x90), HashAlg.SHA256)


def test_no_partial_output_on_failure(stub, pe_tmp, rsa2048):
    key, _cert = rsa2048
    out = pe_tmp / "never.efi"
    r = pcrtool("pe", "sign", stub, "--key", key, "-o", out)   # no certificate anywhere
    assert r.returncode != 0 and not out.exists()
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_hash_prints_both_digests(stub):
    import json
    r = pcrtool("pe", "hash", stub, "--json=short", check=True)
    out = json.loads(r.stdout)
    assert out["as_loaded"] == "28fd6b9a39b745449fa2389a31045900804eae49ea7edb0f8c152a131df0002c"
    assert out["for_signing"] == "32cab00c99673e8b50d5d7f7602b2f8fdb5138aba67d1d2e422fdc8464310bc1"


def test_cli_malformed_input_one_line_error(pe_tmp):
    bad = pe_tmp / "garbage.efi"
    bad.write_bytes(b"MZ" + bytes(200))
    for cmd in (["hash"], ["inspect"], ["verify"]):
        r = pcrtool("pe", *cmd, bad)
        assert r.returncode == 1
        assert r.stderr.startswith("pcrtool: error:") and len(r.stderr.strip().splitlines()) == 1
        assert "Traceback" not in r.stderr


def test_sbattach_accepts_our_exported_pkcs7(stub, pe_tmp, rsa2048):
    key, cert = rsa2048
    p7 = pe_tmp / "ours.p7"
    pcrtool("pe", "sign", stub, "--key", key, "--cert", cert, "-o", p7, "--detached",
            env={"SOURCE_DATE_EPOCH": "1700000000"}, check=True)
    target = pe_tmp / "sbattach.efi"
    shutil.copy(stub, target)
    tool("sbattach", "--attach", p7, target)
    tool("sbverify", "--cert", cert, target)
    target2 = pe_tmp / "oss-attach.efi"
    tool("osslsigncode", "attach-signature", "-sigin", p7, "-CAfile", cert, "-in", stub, "-out", target2)
    tool("sbverify", "--cert", cert, target2)


def test_edk2_layout_check_accepts_ours_and_refuses_long_form(stub, rsa2048):
    key, cert = rsa2048
    signed = sign_with_pcrtool(stub.read_bytes(), key, cert)
    der = ac.parse_pkcs7(PeImage.parse(signed).certificates()[0].payload).der
    ac.check_edk2_layout(der, HashAlg.SHA256)
    with pytest.raises(UnsupportedError):
        ac.check_edk2_layout(der, HashAlg.SHA384)          # OID at +32 is sha256, not sha384
    with pytest.raises(UnsupportedError):                  # a 3-byte length moves the OID
        ac.check_edk2_layout(b"\x30\x83\x00" + der[2:], HashAlg.SHA256)


@pytest.mark.slow
def test_large_uki_signs_and_verifies(pe_tmp, stub, rsa2048):
    from helpers_pe import make_uki
    key, cert = rsa2048
    big = make_uki(pe_tmp, 64 << 20, seed=7)
    out = pe_tmp / "big-signed.efi"
    r = pcrtool("pe", "sign", big, "--key", key, "--cert", cert, "-o", out, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert r.returncode == 0, r.stderr
    tool("sbverify", "--cert", cert, out)
    assert tool("pesign", "-h", "-P", "-i", big).stdout.split("hash:")[1].strip() == \
        signing_digest(big.read_bytes()).hex()
    assert _accepts(out.read_bytes(), cert)


def test_cli_sign_large_image_equals_library_and_checksum(pe_tmp, stub, rsa2048):
    """From 16 MiB the CLI sums the checksum in a forked child while a thread hashes and the key
    loads: same bytes as the library's in-process path, and a CheckSum recomputed naively."""
    import array
    import datetime as dt
    import sys

    from pcrtool.pe.sign import sign_image
    from pcrtool.sign import load_signer
    key, cert = rsa2048
    big = make_uki_16(pe_tmp)
    assert big.stat().st_size >= 16 << 20
    out = pe_tmp / "big-cli.efi"
    pcrtool("pe", "sign", big, "--key", key, "--cert", cert, "-o", out, env={"SOURCE_DATE_EPOCH": "1700000000"},
            check=True)
    with load_signer(str(key), certificate=str(cert)) as signer:
        lib = sign_image(big.read_bytes(), signer, dt.datetime.fromtimestamp(1700000000, dt.timezone.utc))
    signed = out.read_bytes()
    assert signed == lib
    # imagehlp CheckSum: 16-bit one's-complement sum of the file without the field, plus its length
    off = PeImage.parse(signed).checksum_offset
    words = array.array("H", signed[:off] + bytes(4) + signed[off + 4:])
    if sys.byteorder == "big":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert struct.unpack_from("<I", signed, off)[0] == total + len(signed)
    tool("sbverify", "--cert", cert, out)


def test_inconsistent_rsa_key_never_yields_a_signed_file(pe_tmp, stub, uki, rsa2048):
    """``pe sign`` skips cryptography's RSA key check (speed) because it verifies its signature
    before writing: a key whose private half does not match (wrong d and CRT exponents) must
    still end in an error and no output, for the in-memory and the 16 MiB+ paths alike."""
    from asn1crypto import keys, pem
    from cryptography.hazmat.primitives import serialization

    from pcrtool.errors import KeyReferenceError
    from pcrtool.sign.keyfile import load_private_key_bytes
    key, cert = rsa2048
    n = serialization.load_pem_private_key(key.read_bytes(), None).private_numbers()
    der = keys.RSAPrivateKey({"version": 0, "modulus": n.public_numbers.n, "public_exponent": n.public_numbers.e,
                              "private_exponent": n.d + 2, "prime1": n.p, "prime2": n.q, "exponent1": n.dmp1 + 2,
                              "exponent2": n.dmq1 + 2, "coefficient": n.iqmp}).dump()
    bad = pe_tmp / "inconsistent.pem"
    bad.write_bytes(pem.armor("RSA PRIVATE KEY", der))
    with pytest.raises(KeyReferenceError):                      # the default loader still refuses it
        load_private_key_bytes(bad.read_bytes(), name="inconsistent.pem", passphrase=None)
    big = make_uki_16(pe_tmp)
    for src in (stub, uki, big):
        out = pe_tmp / f"inconsistent-{src.name}"
        r = pcrtool("pe", "sign", src, "--key", bad, "--cert", cert, "-o", out)
        assert r.returncode != 0 and "does not verify" in r.stderr, r.stderr
        assert not out.exists()


def make_uki_16(pe_tmp):
    from helpers_pe import make_uki
    return make_uki(pe_tmp, 16 << 20, seed=11)


def test_cli_inspect_json(uki):
    import json
    pefile = pytest.importorskip("pefile")
    out = json.loads(pcrtool("pe", "inspect", uki, "--json=short", check=True).stdout)
    pe = pefile.PE(str(uki), fast_load=True)
    assert [s["name"] for s in out["sections"]] == [s.Name.rstrip(b"\0").decode() for s in pe.sections]
    assert out["format"] == "PE32+" and out["certificate_table"]["entries"] == []


def test_certificate_chain_to_ca_in_db(stub, tmp_path):
    from helpers_pe import make_chain
    c = make_chain(tmp_path)
    out = tmp_path / "chain.efi"
    r = pcrtool("pe", "sign", stub, "--key", c["leaf_key"], "--cert", c["leaf_crt"], "--chain", c["inter_crt"],
                "-o", out)
    assert r.returncode == 0, r.stderr
    sig = ac.parse_pkcs7(PeImage.parse(out.read_bytes()).certificates()[0].payload)
    assert len(sig.certificates) == 2
    for anchor in ("root_crt", "inter_crt", "leaf_crt"):       # partial chains count, as in EDK2
        tool("sbverify", "--cert", c[anchor], out)
        assert pcrtool("pe", "verify", out, "--cert", c[anchor]).returncode == 0
    # without the intermediate embedded, the root in db is not reachable
    bare = tmp_path / "bare.efi"
    pcrtool("pe", "sign", stub, "--key", c["leaf_key"], "--cert", c["leaf_crt"], "-o", bare, check=True)
    assert pcrtool("pe", "verify", bare, "--cert", c["root_crt"]).returncode == 3
    assert tool("sbverify", "--cert", c["root_crt"], bare, check=False).returncode != 0


def test_pe32_image(pe_tmp, rsa2048):
    """PE32 (optional header magic 0x10b, data directory at +96) as well as PE32+."""
    from helpers_pe import make_pe32, need_tool
    need_tool("as")
    need_tool("ld")
    key, cert = rsa2048
    src = make_pe32(pe_tmp)
    img = PeImage.parse(src.read_bytes())
    assert not img.is_pe32_plus and img.security_directory_offset == img.optional_header_offset + 96 + 32
    assert signing_digest(src.read_bytes()).hex() == \
        tool("pesign", "-h", "-P", "-i", src).stdout.split("hash:")[1].strip()
    out = pe_tmp / "pe32-signed.efi"
    out.write_bytes(sign_with_pcrtool(src.read_bytes(), key, cert))
    tool("sbverify", "--cert", cert, out)
    assert "Succeeded" in tool("osslsigncode", "verify", "-CAfile", cert, "-in", out).stdout
    pefile = pytest.importorskip("pefile")
    pe = pefile.PE(data=out.read_bytes(), fast_load=True)
    assert pe.OPTIONAL_HEADER.CheckSum == pe.generate_checksum()
