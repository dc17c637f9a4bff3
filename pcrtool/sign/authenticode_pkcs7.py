"""Authenticode PKCS#7 SignedData: pure builder and parser (asn1crypto).

Structures: Microsoft "Windows Authenticode Portable Executable Signature Format" (SpcIndirectDataContent,
SpcPeImageData, SpcLink, SpcString) inside PKCS#7 SignedData (RFC 2315 §9). The content is a
PKCS#7 ``content [0] EXPLICIT ANY`` (the SEQUENCE itself, not a CMS OCTET STRING).

Encoding choices copy systemd-sbsign (src/sbsign/sbsign.c), byte for byte:
  - SpcIndirectDataContent: SpcPeImageData{flags = empty BIT STRING, file = [0]{[2]{[0] BMPString
    "<<<Obsolete>>>"}}}, DigestInfo{alg + NULL, digest} (also what sbsign 0.9.4 emits: 106 bytes).
  - signed attributes, DER SET OF sorted: smimeCapabilities (empty), contentType = SPC_INDIRECT_DATA,
    signingTime, messageDigest = H(content octets of SpcIndirectDataContent).
  - one SignerInfo v1 by issuerAndSerialNumber, rsaEncryption + NULL, the signer certificate in
    ``certificates``.
What EDK2 enforces (DxeImageVerificationLib ``HashPeImageByType``, CryptAuthenticode.c) is checked by
``check_edk2_layout``: the digest OID at fixed offset 32, SpcIndirectDataContent length form.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pcrtool.errors import FormatError, UnsupportedError
from pcrtool.model import HashAlg

SPC_INDIRECT_DATA = "1.3.6.1.4.1.311.2.1.4"
SPC_PE_IMAGE_DATA = "1.3.6.1.4.1.311.2.1.15"
SPC_STATEMENT_TYPE = "1.3.6.1.4.1.311.2.1.11"
SPC_PESIGN_TYPE = "1.3.6.1.4.1.311.2.1.21"   # Debian pesign 0.112 writes this in data.type: tolerated
PKCS7_SIGNED_DATA = "1.2.840.113549.1.7.2"
OBSOLETE = "<<<Obsolete>>>"

SIGNING_ALGS = (HashAlg.SHA256, HashAlg.SHA384)
_DIGEST_NAMES = {HashAlg.SHA1: "sha1", HashAlg.SHA256: "sha256", HashAlg.SHA384: "sha384",
                 HashAlg.SHA512: "sha512"}
_BY_DIGEST_NAME = {v: k for k, v in _DIGEST_NAMES.items()}
DIGEST_OIDS = {HashAlg.SHA1: "1.3.14.3.2.26", HashAlg.SHA256: "2.16.840.1.101.3.4.2.1",
                HashAlg.SHA384: "2.16.840.1.101.3.4.2.2", HashAlg.SHA512: "2.16.840.1.101.3.4.2.3"}


# --- ASN.1 definitions (Authenticode PE spec), for parsing -----------------------------------
# Built on first use (module ``__getattr__``): signing never imports asn1crypto (~20 ms); it
# writes its few fixed structures as DER directly (``_der``), and the tests hold that DER
# byte for byte against asn1crypto's encoding of the same values and against systemd-sbsign.

_ASN1_NAMES = ("SpcString", "SpcSerializedObject", "SpcLink", "SpcPeImageData", "SpcAttributeTypeAndOptionalValue",
               "DigestInfo", "SpcIndirectDataContent", "Pkcs7ContentInfo", "Pkcs7SignedData",
               "algos", "cms", "core", "x509")
_asn1_cache: dict = {}


def _asn1() -> dict:
    if _asn1_cache:
        return _asn1_cache
    from asn1crypto import algos, cms, core, x509

    class SpcString(core.Choice):
        _alternatives = [("unicode", core.BMPString, {"implicit": 0}), ("ascii", core.IA5String, {"implicit": 1})]

    class SpcSerializedObject(core.Sequence):
        _fields = [("class_id", core.OctetString), ("serialized_data", core.OctetString)]

    class SpcLink(core.Choice):
        _alternatives = [("url", core.IA5String, {"implicit": 0}),
                         ("moniker", SpcSerializedObject, {"implicit": 1}),
                         ("file", SpcString, {"explicit": 2})]

    class SpcPeImageData(core.Sequence):
        _fields = [("flags", core.BitString), ("file", SpcLink, {"explicit": 0, "optional": True})]

    class SpcAttributeTypeAndOptionalValue(core.Sequence):
        _fields = [("type", core.ObjectIdentifier), ("value", core.Any, {"optional": True})]

    class DigestInfo(core.Sequence):
        _fields = [("digest_algorithm", algos.DigestAlgorithm), ("digest", core.OctetString)]

    class SpcIndirectDataContent(core.Sequence):
        _fields = [("data", SpcAttributeTypeAndOptionalValue), ("message_digest", DigestInfo)]

    class Pkcs7ContentInfo(core.Sequence):
        """PKCS#7 ContentInfo: ``content [0] EXPLICIT ANY`` (RFC 2315 §7)."""

        _fields = [("content_type", core.ObjectIdentifier),
                   ("content", core.Any, {"explicit": 0, "optional": True})]

    class Pkcs7SignedData(core.Sequence):
        """PKCS#7 SignedData (RFC 2315 §9.1) with a PKCS#7 inner ContentInfo."""

        _fields = [("version", cms.CMSVersion), ("digest_algorithms", cms.DigestAlgorithms),
                   ("content_info", Pkcs7ContentInfo),
                   ("certificates", cms.CertificateSet, {"implicit": 0, "optional": True}),
                   ("crls", cms.RevocationInfoChoices, {"implicit": 1, "optional": True}),
                   ("signer_infos", cms.SignerInfos)]

    _asn1_cache.update(SpcString=SpcString, SpcSerializedObject=SpcSerializedObject, SpcLink=SpcLink,
                       SpcPeImageData=SpcPeImageData,
                       SpcAttributeTypeAndOptionalValue=SpcAttributeTypeAndOptionalValue, DigestInfo=DigestInfo,
                       SpcIndirectDataContent=SpcIndirectDataContent, Pkcs7ContentInfo=Pkcs7ContentInfo,
                       Pkcs7SignedData=Pkcs7SignedData, algos=algos, cms=cms, core=core, x509=x509)
    return _asn1_cache


def __getattr__(name: str):
    if name in _ASN1_NAMES:
        return _asn1()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- building (DER written directly; layout as systemd-sbsign writes it) ---------------------

def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _oid(dotted: str) -> bytes:
    arcs = [int(x) for x in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _integer(value: int) -> bytes:
    n = value.bit_length() // 8 + 1   # minimal two's complement, sign bit included
    raw = value.to_bytes(n, "big", signed=True)
    while len(raw) > 1 and ((raw[0] == 0 and raw[1] < 0x80) or (raw[0] == 0xFF and raw[1] >= 0x80)):
        raw = raw[1:]
    return _tlv(0x02, raw)


_NULL = b"\x05\x00"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"


def _digest_algorithm(alg: HashAlg) -> bytes:
    """AlgorithmIdentifier{hash OID, NULL} (DER)."""
    return _tlv(0x30, _oid(DIGEST_OIDS[alg]) + _NULL)


def check_signing_alg(alg: HashAlg) -> None:
    """SHA-256 (default) and SHA-384 only; SHA-512 breaks EDK2's length-form check."""
    if alg is HashAlg.SHA512:
        raise UnsupportedError("SHA-512 Authenticode signatures are refused: the 136-byte "
                               "SpcIndirectDataContent is encoded with a 0x81 length form that EDK2's "
                               "AuthenticodeVerify rejects", hint="use sha256 (default) or sha384")
    if alg not in SIGNING_ALGS:
        raise UnsupportedError(f"{alg.bank_name} is not usable for Authenticode",
                               hint="use sha256 (default) or sha384")




def spc_indirect_data_content(digest: bytes, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """DER SpcIndirectDataContent for an image digest, encoded as systemd-sbsign/sbsign do."""
    check_signing_alg(alg)
    if len(digest) != alg.digest_size:
        raise ValueError("digest length does not match the algorithm")
    # SpcPeImageData{flags = empty BIT STRING, file = [0]{[2]{[0] BMPString "<<<Obsolete>>>"}}}
    pe_image_data = _tlv(0x30, b"\x03\x01\x00" + _tlv(0xA0, _tlv(0xA2, _tlv(0x80, OBSOLETE.encode("utf-16-be")))))
    data = _tlv(0x30, _oid(SPC_PE_IMAGE_DATA) + pe_image_data)
    return _tlv(0x30, data + _tlv(0x30, _digest_algorithm(alg) + _tlv(0x04, digest)))


def content_octets(der: bytes) -> bytes:
    """The value bytes of a DER TLV (what Authenticode's messageDigest and EDK2 cover)."""
    header_len, length = _tl(der, 0)
    if header_len + length > len(der):
        raise FormatError("ASN.1 value is truncated")
    return der[header_len:header_len + length]


def _tl(der: bytes, pos: int) -> tuple[int, int]:
    """(header length, value length) of the DER TLV at ``pos`` (single-byte tags only)."""
    if pos + 2 > len(der):
        raise FormatError("ASN.1 header is truncated", offset=pos)
    first = der[pos + 1]
    if first < 0x80:
        return 2, first
    n = first & 0x7F
    if n == 0 or n > 4 or pos + 2 + n > len(der):
        raise FormatError("unsupported ASN.1 length form", offset=pos)
    return 2 + n, int.from_bytes(der[pos + 2:pos + 2 + n], "big")


def _children(der: bytes, pos: int) -> list[int]:
    """Offsets of the TLVs inside the constructed TLV at ``pos``."""
    h, n = _tl(der, pos)
    out, p, end = [], pos + h, pos + h + n
    while p < end:
        out.append(p)
        ch, cn = _tl(der, p)
        p += ch + cn
    if p != end:
        raise FormatError("ASN.1 structure is inconsistent", offset=pos)
    return out


def _explicit_inner(der: bytes, pos: int) -> bytes:
    """The single TLV inside the explicit tag at ``pos``, bytes as encoded."""
    inner = _children(der, pos)
    if len(inner) != 1:
        raise FormatError("explicit tag does not hold exactly one value", offset=pos)
    h, n = _tl(der, inner[0])
    return der[inner[0]:inner[0] + h + n]


def der_length(der: bytes) -> int:
    """Total length of the DER object at the start of ``der`` (trailing padding ignored)."""
    h, n = _tl(der, 0)
    return h + n


def _signing_time(when: _dt.datetime) -> bytes:
    """signingTime as a DER UTCTime (RFC 5652 §11.3: UTCTime for 1950..2049).

    Outside that range systemd-sbsign (OpenSSL's PKCS7_add0_attrib_signing_time) writes a
    GeneralizedTime string under the UTCTime tag, which is invalid DER; we refuse instead of
    producing bytes that differ from it or that verifiers may reject.
    """
    when = when.astimezone(_dt.timezone.utc).replace(microsecond=0)
    if not 1950 <= when.year < 2050:
        raise UnsupportedError(f"signing time {when.isoformat()} is outside 1950..2049, which "
                               "Authenticode signingTime (UTCTime) can encode",
                               hint="set SOURCE_DATE_EPOCH to a time between 1950 and 2049")
    return _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))


def _attribute(oid: str, value: bytes) -> bytes:
    """Attribute ::= SEQUENCE { attrType OID, attrValues SET OF (one value) }."""
    return _tlv(0x30, _oid(oid) + _tlv(0x31, value))


def signed_attributes(idc_der: bytes, signing_time: _dt.datetime, alg: HashAlg = HashAlg.SHA256) -> bytes:
    """DER ``SET OF Attribute`` (tag 0x31): exactly what is RSA-signed, and what
    ``systemd-sbsign --prepare-offline-signing`` writes: smimeCapabilities (an empty SEQUENCE),
    contentType, signingTime, messageDigest, sorted by their encodings (DER SET OF)."""
    attrs = [
        _attribute("1.2.840.113549.1.9.15", b"\x30\x00"),
        _attribute("1.2.840.113549.1.9.3", _oid(SPC_INDIRECT_DATA)),
        _attribute("1.2.840.113549.1.9.5", _signing_time(signing_time)),
        _attribute("1.2.840.113549.1.9.4", _tlv(0x04, alg.digest(content_octets(idc_der)))),
    ]
    return _der_set(sorted(attrs))


def _der_set(members: list[bytes]) -> bytes:
    body = b"".join(members)
    return b"\x31" + _der_len(len(body)) + body


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tbs_fields(certificate_der: bytes) -> list[int]:
    """Offsets of serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo in an
    X.509 certificate's DER (RFC 5280 §4.1); the outer layout is checked on the way."""
    try:
        if der_length(certificate_der) != len(certificate_der) or certificate_der[0] != 0x30:
            raise IndexError
        outer = _children(certificate_der, 0)
        if len(outer) != 3 or [certificate_der[p] for p in outer] != [0x30, 0x30, 0x03]:
            raise IndexError
        fields = _children(certificate_der, outer[0])
        if certificate_der[fields[0]] == 0xA0:
            fields = fields[1:]
        if len(fields) < 6 or [certificate_der[p] for p in fields[:6]] != [0x02, 0x30, 0x30, 0x30, 0x30, 0x30]:
            raise IndexError
        return fields[:6]
    except (IndexError, FormatError):
        raise FormatError("the certificate is not a DER X.509 certificate") from None


def _tlv_at(der: bytes, pos: int) -> bytes:
    h, n = _tl(der, pos)
    return bytes(der[pos:pos + h + n])


def certificate_issuer_and_serial(certificate_der: bytes) -> tuple[bytes, int]:
    """(issuer Name as encoded, serialNumber) of an X.509 certificate, read from its DER."""
    fields = _tbs_fields(certificate_der)
    h, n = _tl(certificate_der, fields[0])
    serial = int.from_bytes(certificate_der[fields[0] + h:fields[0] + h + n], "big", signed=True)
    return _tlv_at(certificate_der, fields[2]), serial


def build_signed_data(idc_der: bytes, sattrs_der: bytes, signature: bytes, certificate_der: bytes,
                      alg: HashAlg = HashAlg.SHA256, *, extra_certificates: tuple[bytes, ...] = ()) -> bytes:
    """The WIN_CERTIFICATE payload: ContentInfo(signedData) with one RSA SignerInfo (v1, by
    issuerAndSerialNumber, rsaEncryption + NULL), the certificates as given (DER SET OF: sorted)."""
    issuer, serial = certificate_issuer_and_serial(certificate_der)
    if sattrs_der[:1] != b"\x31":
        raise FormatError("the signed attributes are not a DER SET")
    signer = _tlv(0x30, _integer(1) + _tlv(0x30, issuer + _integer(serial)) + _digest_algorithm(alg)
                  + b"\xa0" + bytes(sattrs_der[1:])            # [0] IMPLICIT SET OF Attribute
                  + _tlv(0x30, _oid(_RSA_ENCRYPTION) + _NULL) + _tlv(0x04, signature))
    certificates = b"".join(sorted([bytes(certificate_der)] + [bytes(c) for c in extra_certificates]))
    signed_data = _tlv(0x30, _integer(1) + _tlv(0x31, _digest_algorithm(alg))
                       + _content_info(SPC_INDIRECT_DATA, idc_der)
                       + _tlv(0xA0, certificates) + _tlv(0x31, signer))
    return _content_info(PKCS7_SIGNED_DATA, signed_data)


def _content_info(oid: str, content_der: bytes) -> bytes:
    """ContentInfo ::= SEQUENCE { contentType, content [0] EXPLICIT ANY } (RFC 2315 §7)."""
    return _tlv(0x30, _oid(oid) + _tlv(0xA0, content_der))


def _idc_of(der: bytes) -> bytes:
    """The inner content (SpcIndirectDataContent, as encoded) of a ContentInfo(SignedData)."""
    sd_der = _explicit_inner(der, _children(der, 0)[1])
    inner_pos = _children(sd_der, 0)[2]
    return _explicit_inner(sd_der, _children(sd_der, inner_pos)[1])


def check_edk2_layout(der: bytes, alg: HashAlg) -> None:
    """Refuse a PKCS#7 EDK2 cannot read (HashPeImageByType, AuthenticodeVerify).

    EDK2 takes the image-hash OID by memcmp at fixed offset 32, which is right only when the
    outer SEQUENCE, the [0] and the SignedData SEQUENCE all use 2-byte (0x82) lengths, i.e. the
    DER is 256..65535 bytes; SpcIndirectDataContent must use a short or 0x82 length.
    """
    oid = _oid(DIGEST_OIDS[alg])[2:]
    if len(der) < 40 or len(der) > 0xFFFF + 4:
        raise UnsupportedError(f"the PKCS#7 is {len(der)} bytes; EDK2's fixed-offset algorithm detection "
                               "needs 2-byte DER lengths (256..65535 bytes)",
                               hint="use fewer/smaller certificates in the chain")
    if der[1] != 0x82 or der[15:17] != b"\xa0\x82" or der[19:21] != b"\x30\x82" or \
            der[32:32 + len(oid)] != oid:
        raise UnsupportedError("the PKCS#7 layout puts the digest algorithm OID elsewhere than offset 32, "
                               "where EDK2 looks for it", hint="use fewer/smaller certificates in the chain")
    try:
        idc = _idc_of(bytes(der[:der_length(der)]))
    except IndexError:
        raise FormatError("not a valid Authenticode PKCS#7: the SignedData content is missing") from None
    if idc[1] not in range(0x80) and idc[1] != 0x82:
        raise UnsupportedError(f"SpcIndirectDataContent length form {idc[1]:#x} is rejected by EDK2",
                               hint="use sha256 or sha384")


# --- parsing ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignedAttributes:
    content_type: str | None
    message_digest: bytes | None
    signing_time: _dt.datetime | None


def parse_signed_attributes(der: bytes) -> SignedAttributes:
    """Read contentType, messageDigest and signingTime from a DER SET OF Attribute."""
    cms = _asn1()["cms"]
    try:
        attrs = cms.CMSAttributes.load(der, strict=True)
        found = {}
        for a in attrs:
            found[a["type"].dotted] = a["values"][0] if len(a["values"]) else None
        ct = found.get("1.2.840.113549.1.9.3")
        md = found.get("1.2.840.113549.1.9.4")
        st = found.get("1.2.840.113549.1.9.5")
        return SignedAttributes(ct.dotted if ct is not None else None,
                                md.native if md is not None else None,
                                st.native if st is not None else None)
    except (ValueError, TypeError) as e:
        raise FormatError(f"signed attributes are not valid DER: {e}",
                          hint="give the signed-attributes file the prepare step wrote") from None


@dataclass(frozen=True, slots=True)
class AuthenticodeSignature:
    """One parsed Authenticode PKCS#7 (one WIN_CERTIFICATE payload)."""

    der: bytes
    digest_algorithm: HashAlg | None       # digestAlgorithms[0]: what EDK2 uses for the image hash
    idc_der: bytes                         # SpcIndirectDataContent, full TLV
    idc_type: str                          # SPC_PE_IMAGE_DATA, or pesign's .21
    idc_digest_algorithm: HashAlg | None
    idc_digest: bytes
    certificates: tuple[bytes, ...]        # DER
    signer_issuer: object                  # asn1crypto Name
    signer_serial: int
    signer_digest_algorithm: HashAlg | None
    signature_algorithm: str
    signed_attrs: bytes | None             # DER SET (0x31) form: what the signature covers
    signature: bytes
    attributes: SignedAttributes | None
    signer_count: int
    nested_signatures: int                 # osslsigncode -nest: invisible to EDK2
    signer_der: bytes | None = None        # the embedded certificate matching issuer + serial
    signer_subject: str | None = None
    signer_issuer_name: str | None = None

    def signer_certificate(self) -> bytes | None:
        return self.signer_der


def _find_signer(certs: tuple[bytes, ...], issuer, serial: int) -> tuple[bytes | None, str | None, str | None]:
    """The signer certificate and its names, parsed eagerly so damage shows up here."""
    x509 = _asn1()["x509"]
    for c in certs:
        cert = x509.Certificate.load(c)
        if cert.serial_number == serial and cert.issuer == issuer:
            return c, cert.subject.human_friendly, cert.issuer.human_friendly
    return None, None, None


def parse_pkcs7(der: bytes) -> AuthenticodeSignature:
    """Parse a WIN_CERTIFICATE payload (trailing zero padding tolerated, as osslsigncode writes it)."""
    g = _asn1()
    core = g["core"]
    try:
        der = bytes(der[:der_length(der)])
        ci = g["Pkcs7ContentInfo"].load(der, strict=True)
        if ci["content_type"].dotted != PKCS7_SIGNED_DATA:
            raise FormatError(f"PKCS#7 content type is {ci['content_type'].dotted}, not signedData")
        sd_der = _explicit_inner(der, _children(der, 0)[1])
        sd = g["Pkcs7SignedData"].load(sd_der)
        inner = sd["content_info"]
        if inner["content_type"].dotted != SPC_INDIRECT_DATA:
            raise FormatError(f"signed content type is {inner['content_type'].dotted}, not SpcIndirectData",
                              hint="this is not an Authenticode signature")
        inner_pos = _children(sd_der, 0)[2]
        idc_der = _explicit_inner(sd_der, _children(sd_der, inner_pos)[1])
        idc = g["SpcIndirectDataContent"].load(idc_der)
        digest_algs = [d["algorithm"].native for d in sd["digest_algorithms"]]
        certs = () if isinstance(sd["certificates"], core.Void) else \
            tuple(c.chosen.dump() for c in sd["certificates"])
        signers = list(sd["signer_infos"])
        if not signers:
            raise FormatError("the PKCS#7 has no SignerInfo", hint="an unsigned PKCS#7 shell cannot be attached")
        si = signers[0]
        sid = si["sid"]
        if sid.name != "issuer_and_serial_number":
            raise FormatError("SignerInfo identifies the signer by key id; Authenticode needs issuer and serial")
        sattrs = si["signed_attrs"]
        sattrs_der = None
        attributes = None
        if not isinstance(sattrs, core.Void) and len(sattrs):
            sattrs_der = b"\x31" + sattrs.dump()[1:]
            attributes = parse_signed_attributes(sattrs_der)
        nested = 0
        if not isinstance(si["unsigned_attrs"], core.Void):
            for a in si["unsigned_attrs"]:
                if a["type"].dotted == "1.3.6.1.4.1.311.2.4.1":
                    # counted from the raw SET: asn1crypto would parse the nested PKCS#7 as CMS
                    raw = a.dump()
                    nested += len(_children(raw, _children(raw, 0)[1]))
        signer_der, subject, issuer_name = _find_signer(certs, sid.chosen["issuer"],
                                                        sid.chosen["serial_number"].native)
        if attributes is not None:
            _ = attributes.signing_time, attributes.message_digest
        return AuthenticodeSignature(
            der=der,
            digest_algorithm=_BY_DIGEST_NAME.get(digest_algs[0]) if digest_algs else None,
            idc_der=idc_der,
            idc_type=idc["data"]["type"].dotted,
            idc_digest_algorithm=_BY_DIGEST_NAME.get(idc["message_digest"]["digest_algorithm"]["algorithm"].native),
            idc_digest=idc["message_digest"]["digest"].native,
            certificates=certs,
            signer_issuer=sid.chosen["issuer"],
            signer_serial=sid.chosen["serial_number"].native,
            signer_digest_algorithm=_BY_DIGEST_NAME.get(si["digest_algorithm"]["algorithm"].native),
            signature_algorithm=si["signature_algorithm"]["algorithm"].native,
            signed_attrs=sattrs_der,
            signature=si["signature"].native,
            attributes=attributes,
            signer_count=len(signers),
            nested_signatures=nested,
            signer_der=signer_der,
            signer_subject=subject,
            signer_issuer_name=issuer_name,
        )
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise FormatError(f"not a valid Authenticode PKCS#7: {e}".splitlines()[0],
                          hint="the signature blob is damaged or of another kind") from None


def load_pkcs7_file(data: bytes) -> bytes:
    """A PKCS#7 given as DER or PEM (``-----BEGIN PKCS7-----``) → DER."""
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        from asn1crypto import pem
        try:
            _type, _headers, der = pem.unarmor(stripped)
        except ValueError as e:
            raise FormatError(f"PEM PKCS#7 is damaged: {e}") from None
        return der
    return data
