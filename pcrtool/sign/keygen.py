"""Key generation for tests and demos (adapter: draws randomness, reads the clock).

Release keys belong in an HSM; these helpers make throw-away keys and self-signed certificates
suitable for Secure Boot ``db``, dm-verity ``verity.d`` and systemd PCR-policy tests.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pcrtool.errors import UsageError

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")


def generate_private_key(key_type: str):
    """A new RSA (e = 65537) or ECDSA P-256/P-384 private key."""
    if key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type {key_type!r}", hint=f"use one of {', '.join(KEY_TYPES)}")
    if key_type.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))
    return ec.generate_private_key(ec.SECP256R1() if key_type == "ec256" else ec.SECP384R1())


def private_key_pem(key, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted (best available) when a passphrase is given."""
    enc = (serialization.BestAvailableEncryption(passphrase) if passphrase
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def self_signed_certificate(key, common_name: str, *, days: int = 3650,
                            now: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed leaf certificate (digitalSignature, codeSigning) for ``key``.

    SHA-256 signature; CA:FALSE, which Secure Boot ``db``, the kernel keyrings and systemd's
    ``verity.d`` accept for a directly trusted signing certificate.
    """
    if not common_name or len(common_name) > 64:
        raise UsageError("certificate common name must have 1…64 characters")
    now = now or dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    builder = (x509.CertificateBuilder()
               .subject_name(name).issuer_name(name).public_key(public)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False, crl_sign=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))
    return builder.sign(key, hashes.SHA256())


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
