"""Key files (adapter): PEM or DER private keys read with ``cryptography``.

Passphrases for encrypted keys never come from argv: ``?passphrase-file=PATH`` in the key
reference, the file named by ``$PCRTOOL_KEY_PASSPHRASE_FILE``, or ``$PCRTOOL_KEY_PASSPHRASE``.
A certificate comes from ``certificate=`` or from a PEM certificate block in the key file itself.
"""

from __future__ import annotations

import os
import urllib.parse

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding as asym_padding, rsa

from pcrtool import fileio
from pcrtool.errors import KeyReferenceError, UnsupportedError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign.api import (KeyType, Padding, SignerBase, crypto_hash, describe_public_key,
                              public_key_fingerprint, pss_padding)

ENV_PASSPHRASE = "PCRTOOL_KEY_PASSPHRASE"
ENV_PASSPHRASE_FILE = "PCRTOOL_KEY_PASSPHRASE_FILE"


def split_file_target(target: str) -> tuple[str, dict[str, str]]:
    """``/path/key.pem?passphrase-file=/p`` → (path, {"passphrase-file": "/p"})."""
    path, sep, query = target.partition("?")
    if not sep:
        return target, {}
    params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = set(params) - {"passphrase-file"}
    if unknown:
        raise UsageError(f"unknown key file option {sorted(unknown)[0]!r}",
                         hint="the only option is ?passphrase-file=PATH")
    return path, params


def _passphrase(params: dict[str, str]) -> bytes | None:
    source = params.get("passphrase-file") or os.environ.get(ENV_PASSPHRASE_FILE)
    if source:
        data = fileio.read_bytes(source, what="passphrase file")
        return data.rstrip(b"\r\n")
    value = os.environ.get(ENV_PASSPHRASE)
    return value.encode() if value else None


def _private_key_loaders():
    """cryptography's load_pem/der_private_key. They are the Rust functions themselves, taken from
    there so that opening a key file does not import the ``serialization`` package and its SSH
    key code (~10 ms; tests/pe/test_x509_der.py holds the identity); the public names otherwise."""
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl
        return rust_openssl.keys.load_pem_private_key, rust_openssl.keys.load_der_private_key
    except (ImportError, AttributeError):  # pragma: no cover - another cryptography layout
        from cryptography.hazmat.primitives import serialization
        return serialization.load_pem_private_key, serialization.load_der_private_key


def load_private_key_bytes(data: bytes, *, name: str, passphrase: bytes | None,
                           signatures_verified_by_caller: bool = False):
    """Parse PEM or DER (PKCS#8, PKCS#1, SEC1) into a private key; one-line errors, no secrets.

    ``signatures_verified_by_caller``: skip cryptography's RSA key consistency check (about 45 ms
    for RSA-2048: primality-related checks of p, q, d, CRT values). Only for callers that verify
    every signature made with the key against the public key of the signer's certificate
    *before* the signature leaves the process (``pcrtool pe sign`` does, twice). That is enough:
    RSA PKCS#1 v1.5 is deterministic, so a signature that verifies under (n, e) is the unique
    valid one and reveals nothing a valid key's signature would not; a faulty one (e.g. a CRT
    fault from inconsistent p/q/dP/dQ, the case the check guards against) fails verification
    and is never written. Everything else (format, type, curve checks) still runs.
    """
    is_pem = b"-----BEGIN" in data
    load_pem, load_der = _private_key_loaders()
    loader = load_pem if is_pem else load_der
    skip = {"unsafe_skip_rsa_key_validation": True} if signatures_verified_by_caller else {}
    encrypted = b"ENCRYPTED" in data if is_pem else None
    try:
        key = loader(data, password=passphrase, **skip)
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted" (or the reverse)
        if passphrase is None:
            raise KeyReferenceError(f"key file {name!r} is encrypted and no passphrase was given",
                            hint=f"set {ENV_PASSPHRASE_FILE}=FILE, {ENV_PASSPHRASE}, or "
                                 "add ?passphrase-file=FILE to the key reference") from None
        key = loader(data, password=None, **skip)  # not encrypted: ignore the passphrase
    except ValueError:
        if passphrase is not None and (encrypted or not is_pem):
            raise KeyReferenceError(f"cannot decrypt key file {name!r}: wrong passphrase or not a private key",
                            hint="check the passphrase file (a trailing newline is ignored)") from None
        raise KeyReferenceError(f"key file {name!r} is not a PEM or DER private key",
                        hint="expected PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key") from None
    except UnsupportedAlgorithm:
        raise UnsupportedError(f"key file {name!r} uses an algorithm pcrtool does not support",
                               hint="use an RSA or ECDSA P-256/P-384 key") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise UnsupportedError(f"key file {name!r} holds a {type(key).__name__.lstrip('_')}, "
                               "pcrtool signs with RSA or ECDSA P-256/P-384 keys",
                               hint="pcrtool key generate --type rsa2048")
    describe_public_key(key.public_key())  # refuses other curves
    return key


def load_certificate_bytes(data: bytes, *, name: str):
    """First certificate of a PEM or DER file."""
    from cryptography import x509   # here, not at the top: ``pe sign`` opens key files without it

    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise KeyReferenceError(f"{name!r} is not a PEM or DER X.509 certificate") from None


def load_certificate(path: str):
    return load_certificate_bytes(fileio.read_bytes(path, what="certificate"), name=path)


def load_public_key_file(path: str):
    """A public key from a PEM/DER SubjectPublicKeyInfo, a certificate, or a private key file;
    also a key reference (``pkcs11:`` URI, ``file:PATH``): every ``--key``/``--public-key`` takes them."""
    if str(path).startswith(("pkcs11:", "file:")):
        from pcrtool.sign import load_key_material
        material = load_key_material(str(path))
        material.close()
        return material.public_key
    data = fileio.read_bytes(path, what="key")
    from cryptography.hazmat.primitives import serialization

    for loader in (serialization.load_pem_public_key, serialization.load_der_public_key):
        try:
            return loader(data)
        except (ValueError, TypeError):
            pass
    if b"CERTIFICATE" in data or not data.startswith(b"-----"):
        try:
            return load_certificate_bytes(data, name=path).public_key()
        except KeyReferenceError:
            pass
    raise KeyReferenceError(f"{path!r} is not a public key or certificate (PEM or DER)")


class FileSigner(SignerBase):
    """A private key held in memory, loaded from a file."""

    def __init__(self, private_key, *, name: str, certificate=None) -> None:
        self._key = private_key
        self._certificate = certificate
        self.description = f"file:{name}"
        if certificate is not None:
            check_certificate_matches(certificate, private_key.public_key(), name)

    @classmethod
    def from_file(cls, target: str, *, certificate: str | None = None,
                  signatures_verified_by_caller: bool = False) -> "FileSigner":
        """``signatures_verified_by_caller``: see ``load_private_key_bytes`` (default: full checks)."""
        path, params = split_file_target(target)
        data = fileio.read_bytes(path, what="key file")
        key = load_private_key_bytes(data, name=path, passphrase=_passphrase(params),
                                     signatures_verified_by_caller=signatures_verified_by_caller)
        cert = None
        if certificate:
            cert = load_certificate(certificate)
        elif b"-----BEGIN CERTIFICATE-----" in data:
            cert = load_certificate_bytes(data, name=path)
        return cls(key, name=path, certificate=cert)

    def public_key(self):
        return self._key.public_key()

    def certificate(self):
        return self._certificate

    def _sign(self, data: bytes, hash_alg: HashAlg, padding: Padding) -> bytes:
        if self.key_type is KeyType.EC:
            return self._key.sign(data, ec.ECDSA(crypto_hash(hash_alg)))
        pad = asym_padding.PKCS1v15() if padding is Padding.PKCS1V15 else pss_padding(hash_alg)
        return self._key.sign(data, pad, crypto_hash(hash_alg))


def check_certificate_matches(certificate, public_key, name: str) -> None:
    if public_key_fingerprint(certificate.public_key()) != public_key_fingerprint(public_key):
        raise KeyReferenceError(f"the certificate does not belong to key {name!r}",
                        hint="give the certificate issued for this key")
