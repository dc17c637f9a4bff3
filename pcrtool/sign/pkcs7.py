"""Detached PKCS#7 SignedData for dm-verity root hashes (RFC 2315 §9, as ``PKCS7_sign`` emits it).

The kernel (``verify_pkcs7_signature`` in dm-verity-verify-sig.c), systemd-repart
(``PKCS7_DETACHED|PKCS7_NOATTR|PKCS7_BINARY``) and ``openssl smime -sign -noattr -binary`` all use
the same shape: SignedData v1, content type id-data without content, one SignerInfo v1 with
issuerAndSerialNumber, no signed attributes, the signature directly over the content, and
optionally the signer certificate. Algorithm identifiers are spelled the way OpenSSL writes them
(digest with NULL parameters; rsaEncryption with NULL; ecdsa-with-SHAxxx without parameters), so
the DER is byte-identical to OpenSSL's for the same key (RSA PKCS#1 v1.5 is deterministic).

Pure: bytes in, bytes out; cryptography is used only to verify signatures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import algos, cms, core, x509 as asn1_x509

from pcrtool.errors import FormatError, SignatureError, UsageError
from pcrtool.model import HashAlg

_DIGEST_NAMES = {HashAlg.SHA1: "sha1", HashAlg.SHA256: "sha256", HashAlg.SHA384: "sha384",
                 HashAlg.SHA512: "sha512"}
_BY_DIGEST_NAME = {v: k for k, v in _DIGEST_NAMES.items()}
_ECDSA_NAMES = {HashAlg.SHA1: "sha1_ecdsa", HashAlg.SHA256: "sha256_ecdsa",
                HashAlg.SHA384: "sha384_ecdsa", HashAlg.SHA512: "sha512_ecdsa"}


def _certificate_der(certificate) -> bytes:
    """DER of a ``cryptography`` certificate, or DER bytes as they are."""
    if isinstance(certificate, (bytes, bytearray)):
        return bytes(certificate)
    from cryptography.hazmat.primitives.serialization import Encoding
    return certificate.public_bytes(Encoding.DER)


def _key_kind(cert: asn1_x509.Certificate) -> str:
    algo = cert.public_key.algorithm
    if algo not in ("rsa", "ec"):
        raise UsageError(f"certificate key type {algo} cannot sign a dm-verity root hash",
                         hint="use an RSA or ECDSA key")
    return algo


def build_detached(signature: bytes, certificate, *, hash_alg: HashAlg = HashAlg.SHA256,
                   embed_certificate: bool = True) -> bytes:
    """DER ContentInfo(SignedData) around a raw signature over the (detached) content.

    ``signature`` is RSASSA-PKCS1-v1_5 or DER ECDSA-Sig-Value over the content with ``hash_alg``;
    ``certificate`` (cryptography object or DER) names the signer, embedded unless told not to.
    """
    if hash_alg not in _DIGEST_NAMES:
        raise UsageError(f"{hash_alg.bank_name} cannot be used in a PKCS#7 signature")
    cert = asn1_x509.Certificate.load(_certificate_der(certificate))
    digest_algo = algos.DigestAlgorithm({"algorithm": _DIGEST_NAMES[hash_alg], "parameters": core.Null()})
    if _key_kind(cert) == "rsa":
        sig_algo = algos.SignedDigestAlgorithm({"algorithm": "rsassa_pkcs1v15", "parameters": core.Null()})
    else:
        sig_algo = algos.SignedDigestAlgorithm({"algorithm": _ECDSA_NAMES[hash_alg]})
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": digest_algo,
        "signature_algorithm": sig_algo,
        "signature": bytes(signature),
    })
    signed = {
        "version": "v1",
        "digest_algorithms": [digest_algo],
        "encap_content_info": {"content_type": "data"},
        "signer_infos": [signer],
    }
    if embed_certificate:
        signed["certificates"] = [cert]
    return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)}).dump()


@dataclass(frozen=True, slots=True)
class ParsedSignature:
    """What a detached PKCS#7 says about its single signer."""

    der: bytes
    hash_alg: HashAlg
    signature: bytes
    signature_algorithm: str          # asn1crypto name: rsassa_pkcs1v15, sha256_ecdsa, ...
    issuer: str
    serial_number: int
    issuer_der: bytes
    certificates: tuple[bytes, ...]   # embedded certificates (DER)
    signed_attrs: bytes | None        # DER SET OF the signed attributes (what was signed), if any
    message_digest: bytes | None      # messageDigest attribute, if any
    has_content: bool

    def signer_certificate(self) -> bytes | None:
        """The embedded certificate matching the signer id, if present."""
        for der in self.certificates:
            c = asn1_x509.Certificate.load(der)
            if c.serial_number == self.serial_number and c.issuer.dump() == self.issuer_der:
                return der
        return None


def pem_to_der(data: bytes) -> bytes:
    """Accept ``-----BEGIN PKCS7-----`` (or CMS) PEM as well as DER."""
    if data.lstrip().startswith(b"-----BEGIN"):
        from asn1crypto import pem
        try:
            _, _, der = pem.unarmor(data.strip())
        except ValueError as e:
            raise FormatError(f"signature PEM is malformed: {e}") from None
        return der
    return data


def parse_detached(data: bytes, *, source: str = "signature") -> ParsedSignature:
    """Parse a PKCS#7/CMS SignedData with exactly one signer (DER or PEM)."""
    der = pem_to_der(data)
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise FormatError(f"{source} is a PKCS#7 {info['content_type'].native}, not SignedData")
        sd = info["content"]
        signers = sd["signer_infos"]
        if len(signers) != 1:
            raise FormatError(f"{source} has {len(signers)} signers; a root-hash signature has one")
        si = signers[0]
        sid = si["sid"]
        if sid.name != "issuer_and_serial_number":
            raise FormatError(f"{source} names its signer by subjectKeyIdentifier",
                              hint="the kernel and systemd expect issuerAndSerialNumber")
        digest_name = si["digest_algorithm"]["algorithm"].native
        if digest_name not in _BY_DIGEST_NAME:
            raise FormatError(f"{source} uses unsupported digest {digest_name}")
        attrs = si["signed_attrs"]
        signed_attrs = None
        message_digest = None
        if attrs.native is not None and len(attrs):
            # The signature covers the attributes re-encoded as a SET (RFC 5652 §5.4).
            signed_attrs = b"\x31" + attrs.dump()[1:]
            for a in attrs:
                if a["type"].native == "message_digest":
                    message_digest = a["values"][0].native
        certs = tuple(c.chosen.dump() for c in sd["certificates"]) if sd["certificates"].native else ()
        ias = sid.chosen
        return ParsedSignature(
            der=der, hash_alg=_BY_DIGEST_NAME[digest_name], signature=si["signature"].native,
            signature_algorithm=si["signature_algorithm"]["algorithm"].native,
            issuer=ias["issuer"].human_friendly, serial_number=ias["serial_number"].native,
            issuer_der=ias["issuer"].dump(), certificates=certs, signed_attrs=signed_attrs,
            message_digest=message_digest,
            has_content=sd["encap_content_info"]["content"].native is not None)
    except FormatError:
        raise
    except (ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FormatError(f"{source} is not a valid PKCS#7 SignedData: {first}",
                          hint="expected DER (or PEM) as openssl smime -sign -outform DER writes") from None


def verify_detached(parsed: ParsedSignature, content: bytes, certificate, *,
                    source: str = "signature") -> None:
    """Check that ``certificate`` made ``parsed`` over ``content`` (the kernel's and systemd's
    cryptographic check; trust in the certificate is the caller's business).

    Raises SignatureError naming the problem.
    """
    from cryptography import x509 as cx509
    from pcrtool.sign.api import verify_signature

    der = _certificate_der(certificate)
    cert = asn1_x509.Certificate.load(der)
    if cert.serial_number != parsed.serial_number or cert.issuer.dump() != parsed.issuer_der:
        raise SignatureError(f"{source} was made by another certificate ({parsed.issuer}, "
                             f"serial {parsed.serial_number:x})",
                             hint="give the certificate of the key that signed")
    if parsed.has_content:
        raise SignatureError(f"{source} embeds its content; a root-hash signature must be detached")
    public_key = cx509.load_der_x509_certificate(der).public_key()
    signed = content
    if parsed.signed_attrs is not None:
        if parsed.message_digest != hashlib.new(parsed.hash_alg.hashlib_name, content).digest():
            raise SignatureError(f"{source} signs other content (messageDigest differs)",
                                 hint="sign the lowercase hex root hash without a newline")
        signed = parsed.signed_attrs
    verify_signature(public_key, signed, parsed.signature, parsed.hash_alg, what=source)
