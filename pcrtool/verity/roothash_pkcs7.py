"""Root-hash signatures: sign with any ``Signer``, or wrap and check a signature made elsewhere.

Both paths end in the same detached PKCS#7 (``pcrtool.sign.pkcs7``) and both are verified before
anything is returned, so no command ever writes a signature that the kernel would refuse for the
given certificate. Pure: bytes, certificates and Signer objects in; DER out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.errors import SignatureError, UnsupportedError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign.api import KeyType, Padding, describe_public_key, require_key, verify_signature
from pcrtool.sign.pkcs7 import ParsedSignature, build_detached, parse_detached, pem_to_der, verify_detached
from pcrtool.verity.sig_partition import roothash_tbs

CONSUMER = "dm-verity root-hash signature (kernel PKCS#7)"
SIGNATURE_HASHES = (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)


def check_hash(hash_alg: HashAlg) -> None:
    if hash_alg not in SIGNATURE_HASHES:
        raise UsageError(f"{hash_alg.bank_name} is not accepted for root-hash signatures",
                         hint="use sha256 (default), sha384 or sha512")


def _der(certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding
    return certificate.public_bytes(Encoding.DER)


def sign_root_hash(signer, certificate, root_hash: bytes, *, hash_alg: HashAlg = HashAlg.SHA256,
                   embed_certificate: bool = True) -> bytes:
    """Detached PKCS#7 over the lowercase hex root hash, made by ``signer`` (verified)."""
    check_hash(hash_alg)
    if certificate is None:
        raise UsageError("a root-hash signature needs the signer's X.509 certificate",
                         hint="pass --certificate CERT (PKCS#7 names the signer by issuer and serial)")
    require_key(certificate.public_key(), consumer=CONSUMER)
    tbs = roothash_tbs(root_hash)
    raw = signer.sign(tbs, hash_alg, Padding.PKCS1V15)
    der = build_detached(raw, certificate, hash_alg=hash_alg, embed_certificate=embed_certificate)
    verify_detached(parse_detached(der), tbs, _der(certificate))
    return der


def looks_like_pkcs7(data: bytes) -> bool:
    """DER ContentInfo (SEQUENCE holding OID 1.2.840.113549.1.7.2) or a PEM PKCS7/CMS block."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        return True
    return b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" in data[:24] and data[:1] == b"\x30"


@dataclass(frozen=True, slots=True)
class AttachedSignature:
    der: bytes
    wrapped: bool           # True: pcrtool wrapped a raw signature; False: PKCS#7 given as is
    parsed: ParsedSignature


def attach_signature(untrusted_signature: bytes, certificate, tbs: bytes, *,
                     hash_alg: HashAlg = HashAlg.SHA256, embed_certificate: bool = True,
                     padding: Padding = Padding.PKCS1V15) -> AttachedSignature:
    """Turn a signature made elsewhere into the root-hash PKCS#7, after checking it.

    ``signature`` is either a raw signature over ``tbs`` (PKCS#1 v1.5 or DER ECDSA) or a full
    PKCS#7/CMS (DER or PEM, e.g. from ``openssl smime -sign -noattr -binary -outform DER``), which
    is kept byte for byte once it verifies over ``tbs`` with ``certificate``.
    """
    signature = untrusted_signature
    cert_der = _der(certificate)
    if looks_like_pkcs7(signature):
        parsed = parse_detached(signature, source="given PKCS#7")
        verify_detached(parsed, tbs, cert_der, source="given PKCS#7")
        return AttachedSignature(pem_to_der(signature), False, parsed)
    check_hash(hash_alg)
    if Padding(padding) is not Padding.PKCS1V15:
        raise UnsupportedError("the root-hash PKCS#7 carries RSA PKCS#1 v1.5 or ECDSA signatures, not PSS",
                               hint="sign with PKCS#1 v1.5 padding")
    require_key(certificate.public_key(), consumer=CONSUMER)
    kt, size = describe_public_key(certificate.public_key())
    if kt is KeyType.RSA and len(signature) != (size + 7) // 8:
        raise SignatureError(f"raw signature has {len(signature)} bytes; an RSA-{size} signature has "
                             f"{(size + 7) // 8}", hint="give the raw signature file or a DER PKCS#7")
    verify_signature(certificate.public_key(), tbs, signature, hash_alg, what="raw signature")
    der = build_detached(signature, certificate, hash_alg=hash_alg, embed_certificate=embed_certificate)
    parsed = parse_detached(der)
    verify_detached(parsed, tbs, cert_der)
    return AttachedSignature(der, True, parsed)


def check_signature_file(untrusted_der: bytes, certificate, root_hash: bytes, *,
                         source: str = "signature") -> ParsedSignature:
    """Parse and verify a root-hash PKCS#7 against a certificate (the cryptographic check only)."""
    parsed = parse_detached(untrusted_der, source=source)
    verify_detached(parsed, roothash_tbs(root_hash), _der(certificate), source=source)
    return parsed
