"""An X.509 certificate's subjectPublicKeyInfo, read from its DER without importing
``cryptography.x509`` (~20 ms): ``pe sign`` needs only that (to match the certificate to the key)
and the certificate's own bytes (to embed them).

The certificate is checked on the way as a strict DER parser reads it (X.690 §10: definite,
minimal lengths) against the RFC 5280 §4.1 layout: every field's tag, the serial a minimal
INTEGER, Validity two well-formed UTCTime/GeneralizedTime values, Names as SEQUENCE OF SET OF
AttributeTypeAndValue, the key info, the extensions' frame and the outer signature. Whatever
does not pass is handed to cryptography by the caller, which then reports it in its own words.
Pure: bytes in, bytes out.
"""

from __future__ import annotations

import base64
import binascii
import datetime

_SEQUENCE, _SET, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID, _BOOLEAN = 0x30, 0x31, 0x02, 0x03, 0x04, 0x06, 0x01
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_RSASSA_PSS = bytes.fromhex("2a864886f70d01010a")   # 1.2.840.113549.1.1.10


class NotACertificate(ValueError):
    """The bytes are not a DER X.509 certificate as this reader checks it."""


def _tl(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the TLV at ``pos``, which must end by ``end``; DER lengths."""
    if pos + 2 > end:
        raise NotACertificate("truncated")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise NotACertificate("multi-byte tag")
    if first < 0x80:
        start, length = pos + 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + 2 + n > end or der[pos + 2] == 0:
            raise NotACertificate("length form")
        length = int.from_bytes(der[pos + 2:pos + 2 + n], "big")
        if length < 0x80:
            raise NotACertificate("non-minimal length")
        start = pos + 2 + n
    if start + length > end:
        raise NotACertificate("truncated")
    return tag, start, start + length


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, TLV start, value start, value end) of each TLV filling [start, end) exactly."""
    out = []
    while start < end:
        tag, vs, ve = _tl(der, start, end)
        out.append((tag, start, vs, ve))
        start = ve
    return out


def _expect(items, tags: list[int]) -> None:
    if [t for t, *_ in items[:len(tags)]] != tags or len(items) < len(tags):
        raise NotACertificate("layout")


def _oid(der: bytes, item) -> None:
    """X.690 §8.19: subidentifiers in base 128, minimal (no leading 0x80), the last byte < 0x80."""
    tag, _, vs, ve = item
    body = der[vs:ve]
    if tag != _OID or not body or body[-1] & 0x80:
        raise NotACertificate("OBJECT IDENTIFIER")
    if body[0] == 0x80 or any(body[i] == 0x80 and not body[i - 1] & 0x80 for i in range(1, len(body))):
        raise NotACertificate("OBJECT IDENTIFIER")


_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")


def _string(der: bytes, item) -> None:
    """An attribute value: the string types' character sets as a strict parser checks them."""
    tag, _, vs, ve = item
    body = bytes(der[vs:ve])
    try:
        if tag == 0x13 and not set(body) <= _PRINTABLE:          # PrintableString
            raise ValueError
        if tag == 0x16:                                          # IA5String
            body.decode("ascii")
        elif tag == 0x0C:                                        # UTF8String
            body.decode("utf-8")
        elif tag == 0x1E:                                        # BMPString
            body.decode("utf-16-be")
        elif tag == 0x1C:                                        # UniversalString
            body.decode("utf-32-be")
    except ValueError:
        raise NotACertificate("string value") from None


def _algorithm(der: bytes, item) -> None:
    tag, _, vs, ve = item
    if tag != _SEQUENCE:
        raise NotACertificate("AlgorithmIdentifier")
    inner = _children(der, vs, ve)
    if not inner or len(inner) > 2:
        raise NotACertificate("AlgorithmIdentifier")
    _oid(der, inner[0])
    if der[inner[0][2]:inner[0][3]] == _RSASSA_PSS:
        raise NotACertificate("RSASSA-PSS parameters")   # their syntax is cryptography's to check
    if len(inner) == 2:   # parameters: NULL (RSA) or a named curve (EC); anything else goes the full way
        if inner[1][0] == _OID:
            _oid(der, inner[1])
        elif der[inner[1][1]:inner[1][3]] != b"\x05\x00":
            raise NotACertificate("AlgorithmIdentifier parameters")


def _bit_string(der: bytes, item) -> None:
    """X.690 §11.2: the unused-bits count 0..7 (0 when empty), the unused bits zero."""
    _, _, vs, ve = item
    if vs == ve or der[vs] > 7 or (ve - vs == 1 and der[vs]) or \
            (ve - vs > 1 and der[ve - 1] & ((1 << der[vs]) - 1)):
        raise NotACertificate("BIT STRING")


def _name(der: bytes, item) -> None:
    tag, _, vs, ve = item
    if tag != _SEQUENCE:
        raise NotACertificate("Name")
    for rdn_tag, _, rs, re_ in _children(der, vs, ve):
        atvs = _children(der, rs, re_)
        if rdn_tag != _SET or not atvs:
            raise NotACertificate("RelativeDistinguishedName")
        for atv_tag, _, as_, ae in atvs:
            parts = _children(der, as_, ae)
            if atv_tag != _SEQUENCE or len(parts) != 2:
                raise NotACertificate("AttributeTypeAndValue")
            _oid(der, parts[0])
            _string(der, parts[1])


def _time(der: bytes, item) -> None:
    tag, _, vs, ve = item
    text = bytes(der[vs:ve])
    digits = {_UTC_TIME: 12, _GENERALIZED_TIME: 14}.get(tag)
    if digits is None or len(text) != digits + 1 or text[-1:] != b"Z" or not text[:-1].isdigit():
        raise NotACertificate("Time")
    year = int(text[:digits - 10])
    month, day, hour, minute, second = (int(text[i:i + 2]) for i in range(digits - 10, digits, 2))
    try:
        datetime.datetime(year + (0 if digits == 14 else 1900 if year >= 50 else 2000), month, day, hour, minute, second)
    except ValueError:
        raise NotACertificate("Time") from None


def certificate_public_key_info(der: bytes) -> bytes:
    """The subjectPublicKeyInfo TLV of the DER certificate ``der`` (which it must be exactly);
    raises ``NotACertificate`` otherwise."""
    der = bytes(der)
    tag, vs, ve = _tl(der, 0, len(der))
    if tag != _SEQUENCE or ve != len(der):
        raise NotACertificate("Certificate")
    outer = _children(der, vs, ve)
    if len(outer) != 3:
        raise NotACertificate("Certificate")
    _expect(outer, [_SEQUENCE, _SEQUENCE, _BIT_STRING])
    _algorithm(der, outer[1])
    _bit_string(der, outer[2])
    fields = _children(der, outer[0][2], outer[0][3])
    if fields and fields[0][0] == 0xA0:
        version = _children(der, fields[0][2], fields[0][3])
        if len(version) != 1 or version[0][0] != _INTEGER or der[version[0][2]:version[0][3]] not in (b"\x01", b"\x02"):
            raise NotACertificate("version")
        fields = fields[1:]
    _expect(fields, [_INTEGER, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE, _SEQUENCE])
    serial = der[fields[0][2]:fields[0][3]]
    if not serial or serial[0] >= 0x80 or not any(serial) or (len(serial) > 1 and serial[0] == 0 and serial[1] < 0x80):
        raise NotACertificate("serialNumber")   # a minimal, positive INTEGER (RFC 5280 §4.1.2.2)
    _algorithm(der, fields[1])
    _name(der, fields[2])
    validity = _children(der, fields[3][2], fields[3][3])
    if len(validity) != 2:
        raise NotACertificate("Validity")
    for t in validity:
        _time(der, t)
    _name(der, fields[4])
    spki = _children(der, fields[5][2], fields[5][3])
    if len(spki) != 2 or spki[1][0] != _BIT_STRING or der[spki[1][2]:spki[1][2] + 1] != b"\x00":
        raise NotACertificate("SubjectPublicKeyInfo")
    _algorithm(der, spki[0])
    for tag, _, xs, xe in fields[6:]:
        if tag not in (0x81, 0x82, 0xA3):
            raise NotACertificate("optional fields")
        if tag == 0xA3:
            exts = _children(der, xs, xe)
            if len(exts) != 1 or exts[0][0] != _SEQUENCE:
                raise NotACertificate("extensions")
            for ext_tag, _, es, ee in _children(der, exts[0][2], exts[0][3]):
                parts = _children(der, es, ee)
                if ext_tag != _SEQUENCE or [t for t, *_ in parts] not in ([_OID, _OCTET_STRING],
                                                                          [_OID, _BOOLEAN, _OCTET_STRING]):
                    raise NotACertificate("Extension")
                _oid(der, parts[0])
                if len(parts) == 3 and der[parts[1][2]:parts[1][3]] != b"\xff":   # DER: TRUE only (FALSE is the default)
                    raise NotACertificate("Extension critical")
    _, start, _, end = fields[5]
    return der[start:end]


def first_pem_certificate(data: bytes) -> bytes:
    """The first certificate of a PEM file (its base64 body decoded strictly), or ``data`` itself
    when it is not PEM; raises ``NotACertificate`` for a PEM body that does not decode."""
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    if begin not in data:
        return bytes(data)
    start = data.index(begin) + len(begin)
    stop = data.find(end, start)
    if stop < 0:
        raise NotACertificate("PEM")
    try:
        return base64.b64decode(b"".join(data[start:stop].split()), validate=True)
    except (binascii.Error, ValueError):
        raise NotACertificate("PEM") from None
