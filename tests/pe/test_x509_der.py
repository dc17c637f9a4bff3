"""pcrtool.sign.x509_der: the subjectPublicKeyInfo of a certificate read without cryptography.x509 (what
`pe sign` does with a key file and a certificate). cryptography is the oracle: equal key info for real
certificates (Debian's shim vendor certificate, openssl's, RSA and EC with extensions), and whatever
the reader accepts cryptography loads too, over every single-byte corruption of real certificates
(a refusal only sends `pe sign` the full way, through cryptography)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from helpers_pe import make_cert
from pcrtool.sign.x509_der import NotACertificate, certificate_public_key_info, first_pem_certificate

CAPTURES = Path(__file__).resolve().parents[2] / "eventlogs"


def _built(key) -> bytes:
    now = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ünïcode GmbH"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "Secure Boot signer")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).serial_number(2**150 + 3)
            .public_key(key.public_key()).not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.3")]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, bytes]:
    _, pem = make_cert(tmp_path_factory.mktemp("x509"))
    return {"debian shim vendor": (CAPTURES / "ovmf-ms-shim-grub-a" / "shim-vendor-cert.der").read_bytes(),
            "openssl req -x509": first_pem_certificate(pem.read_bytes()),
            "rsa with extensions": _built(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "ec p-256": _built(ec.generate_private_key(ec.SECP256R1()))}


def _spki(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_key_info_equals_cryptographys(certs):
    for name, der in certs.items():
        assert certificate_public_key_info(der) == _spki(der), name


def test_pem_is_the_first_certificate_block(certs, tmp_path):
    _, pem = make_cert(tmp_path)
    text = pem.read_bytes()
    assert first_pem_certificate(text) == x509.load_pem_x509_certificate(text).public_bytes(Encoding.DER)
    assert first_pem_certificate(b"junk\n" + text + text) == first_pem_certificate(text)
    with pytest.raises(NotACertificate):
        first_pem_certificate(text.replace(b"\n", b"\n!", 3))       # not base64
    with pytest.raises(NotACertificate):
        first_pem_certificate(text.split(b"-----END")[0])          # no end line


@pytest.mark.parametrize("which", ["debian shim vendor", "rsa with extensions", "ec p-256"])
def test_every_corruption_it_accepts_cryptography_loads(certs, which):
    der = certs[which]
    accepted = refused = 0
    for i in range(len(der)):
        for flip in (0x01, 0x80, 0xFF):
            m = bytearray(der)
            m[i] ^= flip
            try:
                certificate_public_key_info(bytes(m))
            except NotACertificate:
                refused += 1
                continue
            accepted += 1
            x509.load_der_x509_certificate(bytes(m))   # raises if the reader was too lenient
    assert accepted and refused        # both sides happen: the serial, names and key bits vary freely


@pytest.mark.parametrize("cut", [lambda d: d[:-1], lambda d: d + b"\x00", lambda d: b"\x30\x81" + d[2:],
                                 lambda d: d[:4] + b"\x31" + d[5:], lambda d: b""])
def test_broken_framing_is_refused(certs, cut):
    with pytest.raises(NotACertificate):
        certificate_public_key_info(cut(certs["openssl req -x509"]))


def test_the_lean_imports_are_cryptographys_own_objects():
    """`pe sign` opens key files without importing cryptography's serialization package (its SSH code
    costs ~10 ms): pcrtool takes the same objects from where the package takes them."""
    from cryptography.hazmat.primitives import serialization

    from pcrtool.sign import api, keyfile
    assert keyfile._private_key_loaders() == (serialization.load_pem_private_key, serialization.load_der_private_key)
    assert (api.serialization.Encoding, api.serialization.PublicFormat) == (serialization.Encoding,
                                                                            serialization.PublicFormat)


def test_pe_sign_imports_no_x509_and_no_serialization_package(tmp_path):
    import subprocess
    import sys

    from helpers_pe import STUB
    key, cert = make_cert(tmp_path)
    code = ("import sys\nfrom pcrtool.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, sorted(m for m in sys.modules if m in ('cryptography.x509', "
            "'cryptography.hazmat.primitives.serialization', 'asn1crypto', 'typer')))\n")
    proc = subprocess.run([sys.executable, "-c", code, "pe", "sign", str(STUB), "--key", str(key), "--cert", str(cert),
                           "-o", str(tmp_path / "out.efi")], capture_output=True, text=True)
    assert proc.stdout.strip() == "0 []", proc.stderr
