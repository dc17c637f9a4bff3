"""The Authenticode DER that signing writes by hand (pcrtool.sign.authenticode_pkcs7, no asn1crypto on
the signing path) equals asn1crypto's encoding of the same values, field by field as RFC 2315 and the
Authenticode PE specification define them: SpcIndirectDataContent, the signed attributes (sorted DER
SET OF), and ContentInfo(SignedData) with issuerAndSerialNumber, a sorted certificate SET and
rsaEncryption. (Byte identity with systemd-sbsign 262 itself: tests/interop/test_sbsign.py.)"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from asn1crypto import algos, cms, core, x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.sign import authenticode_pkcs7 as ac
from tests.support import modules_imported

UTC = dt.timezone.utc
_NAMES = {HashAlg.SHA256: "sha256", HashAlg.SHA384: "sha384"}


# --- the reference: asn1crypto builds the same structures from values -------------------------

def _alg(alg):
    return algos.DigestAlgorithm({"algorithm": _NAMES[alg], "parameters": core.Null()})


def ref_idc(digest: bytes, alg) -> bytes:
    spc = ac.SpcPeImageData({"flags": core.BitString(()),
                             "file": ac.SpcLink({"file": ac.SpcString({"unicode": "<<<Obsolete>>>"})})})
    return ac.SpcIndirectDataContent({
        "data": {"type": "1.3.6.1.4.1.311.2.1.15", "value": core.Any.load(spc.dump())},
        "message_digest": {"digest_algorithm": _alg(alg), "digest": digest}}).dump()


def ref_attrs(idc: bytes, when: dt.datetime, alg) -> bytes:
    attrs = [cms.CMSAttribute({"type": "smime_capabilities", "values": [core.Any.load(b"\x30\x00")]}),
             cms.CMSAttribute({"type": "content_type", "values": ["1.3.6.1.4.1.311.2.1.4"]}),
             cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}),
             cms.CMSAttribute({"type": "message_digest", "values": [alg.digest(ac.content_octets(idc))]})]
    return cms.CMSAttributes(attrs).dump(force=True)   # a SET OF: asn1crypto sorts the encodings


def ref_signed_data(idc: bytes, sattrs: bytes, signature: bytes, cert_der: bytes, alg, extra=()) -> bytes:
    cert = ax509.Certificate.load(cert_der)
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
            {"issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": _alg(alg), "signed_attrs": cms.CMSAttributes.load(sattrs),
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15",
                                                            "parameters": core.Null()}),
        "signature": signature})
    inner = ac.Pkcs7ContentInfo.load(_content_info("1.3.6.1.4.1.311.2.1.4", idc))
    sd = ac.Pkcs7SignedData({"version": "v1", "digest_algorithms": [_alg(alg)], "content_info": inner,
                             "certificates": [cert] + [ax509.Certificate.load(c) for c in extra],
                             "signer_infos": [signer]})
    return _content_info("1.2.840.113549.1.7.2", sd.dump())


def _content_info(oid: str, content: bytes) -> bytes:
    """ContentInfo{oid, [0] EXPLICIT content}: asn1crypto drops an explicit tag around an assigned Any,
    so the [0] is written here (X.690 §8.1.3 definite lengths)."""
    def tl(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        return bytes([tag]) + length + body
    return tl(0x30, core.ObjectIdentifier(oid).dump() + tl(0xA0, content))


_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(serial: int, issuer: x509.Name) -> bytes:
    now = dt.datetime(2024, 1, 1, tzinfo=UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"leaf {serial}")])
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).serial_number(serial)
            .public_key(_KEY.public_key()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=9))
            .sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


_ISSUERS = [
    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")]),
    x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ünïcode GmbH"),
               x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "u" * 64),
               x509.NameAttribute(NameOID.LOCALITY_NAME, "l" * 64),
               x509.NameAttribute(NameOID.COMMON_NAME, "Secure Boot CA 2024 " + "x" * 40)]),   # long: 0x81 lengths
]
# serials: one byte, high bit set (a leading zero byte), the 20-byte maximum of RFC 5280
_SERIALS = [1, 0x7F, 0x80, 0xFF00, 2**159 - 1]


@pytest.mark.parametrize("alg", [HashAlg.SHA256, HashAlg.SHA384])
@pytest.mark.parametrize("when", [dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), dt.datetime(1950, 1, 1, tzinfo=UTC),
                                  dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC),
                                  dt.datetime(2001, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=5)))])
def test_idc_and_signed_attributes_equal_asn1crypto(alg, when):
    digest = os.urandom(alg.digest_size)
    idc = ac.spc_indirect_data_content(digest, alg)
    assert idc == ref_idc(digest, alg)
    assert ac.signed_attributes(idc, when, alg) == ref_attrs(idc, when.astimezone(UTC), alg)


@pytest.mark.parametrize("serial", _SERIALS)
@pytest.mark.parametrize("issuer", range(len(_ISSUERS)))
@pytest.mark.parametrize("alg", [HashAlg.SHA256, HashAlg.SHA384])
def test_signed_data_equals_asn1crypto(serial, issuer, alg):
    cert = _cert(serial, _ISSUERS[issuer])
    idc = ac.spc_indirect_data_content(os.urandom(alg.digest_size), alg)
    sattrs = ac.signed_attributes(idc, dt.datetime(2023, 11, 14, tzinfo=UTC), alg)
    sig = os.urandom(256)
    assert ac.certificate_issuer_and_serial(cert) == (ax509.Certificate.load(cert).issuer.dump(), serial)
    assert ac.build_signed_data(idc, sattrs, sig, cert, alg) == ref_signed_data(idc, sattrs, sig, cert, alg)
    # a chain: the certificates SET is sorted by encoding, whatever order they are given in
    chain = (_cert(5, _ISSUERS[0]), _cert(2**100, _ISSUERS[1]))
    got = ac.build_signed_data(idc, sattrs, sig, cert, alg, extra_certificates=chain)
    assert got == ref_signed_data(idc, sattrs, sig, cert, alg, chain)
    assert got == ac.build_signed_data(idc, sattrs, sig, cert, alg, extra_certificates=chain[::-1])
    parsed = ac.parse_pkcs7(got)
    assert parsed.signer_serial == serial and parsed.signature == sig and parsed.idc_der == idc
    assert parsed.signed_attrs == sattrs and len(parsed.certificates) == 3


def test_a_systemd_blob_is_carried_as_it_is():
    """Attributes made elsewhere (systemd-sbsign --prepare-offline-signing, unsorted or not) go into
    the SignerInfo byte for byte, retagged [0] only."""
    cert = _cert(7, _ISSUERS[0])
    idc = ac.spc_indirect_data_content(bytes(32))
    sattrs = ac.signed_attributes(idc, dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC))
    members = [sattrs[i:] for i in ac._children(sattrs, 0)]
    unsorted = ac._der_set(sorted((bytes(m[:ac.der_length(m)]) for m in members), reverse=True))
    assert unsorted != sattrs
    der = ac.build_signed_data(idc, unsorted, b"\x01" * 256, cert)
    assert der == ref_signed_data(idc, unsorted, b"\x01" * 256, cert, HashAlg.SHA256)
    assert b"\xa0" + unsorted[1:] in der


def test_bad_inputs_are_refused():
    idc = ac.spc_indirect_data_content(bytes(32))
    sattrs = ac.signed_attributes(idc, dt.datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(FormatError):
        ac.build_signed_data(idc, sattrs, b"s", b"\x30\x03\x02\x01\x01")       # not a certificate
    with pytest.raises(FormatError):
        ac.build_signed_data(idc, b"\x30" + sattrs[1:], b"s", _cert(1, _ISSUERS[0]))   # not a SET
    with pytest.raises(ValueError):
        ac.spc_indirect_data_content(bytes(31))


def test_signing_does_not_import_asn1crypto():
    """The point of writing the DER by hand: ``pe sign`` loads no ASN.1 library (~20 ms)."""
    code = ("import datetime as dt\nfrom pcrtool.sign import authenticode_pkcs7 as ac\n"
            "idc = ac.spc_indirect_data_content(bytes(32))\n"
            "ac.signed_attributes(idc, dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))\n")
    assert modules_imported(code, ("asn1crypto",)) == []
