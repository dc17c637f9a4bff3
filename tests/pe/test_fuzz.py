"""Property tests: mutated PE files and signatures only ever raise FormatError."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers_pe import STUB, raw_headers
from pcrtool.errors import FormatError, PcrtoolError
from pcrtool.pe import PeImage, authenticode_digest, signing_digest
from pcrtool.pe.verify import verify_image

_BASE = STUB.read_bytes() if STUB.is_file() else b"MZ" + bytes(1022)
_SIGNED: list[bytes] = []


def _signed() -> bytes:
    if not _SIGNED:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        from pcrtool.pe.sign import complete, prepare
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
        now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
                .sign(key, hashes.SHA256()))
        from cryptography.hazmat.primitives.asymmetric import padding
        from cryptography.hazmat.primitives.serialization import Encoding
        p = prepare(_BASE, now)
        sig = key.sign(p.signed_attrs, padding.PKCS1v15(), hashes.SHA256())
        _SIGNED.append(complete(p, sig, cert.public_bytes(Encoding.DER)))
    return _SIGNED[0]


def _exercise(data: bytes) -> None:
    try:
        img = PeImage.parse(data)
        img.warnings
        [s.loaded for s in img.sections[:3]]
        authenticode_digest(data)
        signing_digest(data)
        verify_image(data)
        import datetime as dt

        from pcrtool.pe.sign import prepare
        prepare(data, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))
    except FormatError:
        pass
    except PcrtoolError as e:  # a refusal with a reason is fine too, a crash is not
        assert e.message


_SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), min_size=1, max_size=12))
def test_header_byte_mutations(edits):
    d = bytearray(_BASE)
    for pos, val in edits:
        d[pos] = val
    _exercise(bytes(d))


@_SETTINGS
@given(st.sampled_from(["e_lfanew", "nsec", "optsz", "hdrsize", "secdir_off", "secdir_size", "sect_off",
                        "sect_size", "nrva"]),
       st.sampled_from([0, 1, 7, 8, 0x7F, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, len(_BASE), len(_BASE) - 1]))
def test_header_field_extremes(field, value):
    d = bytearray(_signed() if value % 2 else _BASE)
    h = raw_headers(d)
    where = {"e_lfanew": (0x3C, "<I"), "nsec": (h["pe"] + 6, "<H"), "optsz": (h["pe"] + 20, "<H"),
             "hdrsize": (h["opt"] + 60, "<I"), "secdir_off": (h["secdir"], "<I"),
             "secdir_size": (h["secdir"] + 4, "<I"), "sect_off": (h["sect"] + 20, "<I"),
             "sect_size": (h["sect"] + 16, "<I"), "nrva": (h["opt"] + 108, "<I")}[field]
    fmt = where[1]
    struct.pack_into(fmt, d, where[0], value & (0xFFFF if fmt == "<H" else 0xFFFFFFFF))
    _exercise(bytes(d))


@_SETTINGS
@given(st.integers(0, 4000), st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=6))
def test_signed_file_truncation_and_signature_mutation(cut, edits):
    signed = bytearray(_signed())
    table = PeImage.parse(bytes(signed)).cert_table_offset
    for pos, val in edits:
        signed[min(table + 8 + pos, len(signed) - 1)] = val
    _exercise(bytes(signed[:len(signed) - cut]))


@settings(deadline=None, max_examples=60)
@given(st.binary(max_size=600))
def test_random_bytes(blob):
    _exercise(b"MZ" + blob)
