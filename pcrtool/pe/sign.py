"""Authenticode signing of PE images: prepare, sign through a Signer, attach (pure).

Data flow (signers-reference "Recommended design"): pad to 8 (the zeros are written, and hashed
virtually) → EDK2 digest of the padded image →
SpcIndirectDataContent → signed attributes (the systemd-sbsign set) → RSA PKCS#1 v1.5 over the
DER SET → PKCS#7 → EDK2 layout check → WIN_CERTIFICATE appended → checked again in memory.
The same ``PreparedSignature`` serves direct signing, the offline flow (``signed_attrs`` is the
blob ``systemd-sbsign --prepare-offline-signing`` writes) and attaching a foreign PKCS#7.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from pcrtool.errors import MismatchError, SignatureError, UnsupportedError
from pcrtool.model import HashAlg
from pcrtool.pe.digest import (body_start, digest_and_body_sum, image_digest, pad_length, signed_chunks,
                                     word_sum)
from pcrtool.pe.image import PeImage
from pcrtool.sign import authenticode_pkcs7 as ac

CONSUMER = "UEFI Authenticode verification"


@dataclass(frozen=True, slots=True)
class PreparedSignature:
    image: bytes             # the input; the table follows it after ``pad_length`` zero bytes
    alg: HashAlg
    image_digest: bytes
    idc_der: bytes           # SpcIndirectDataContent
    signed_attrs: bytes      # DER SET OF Attribute: the bytes to sign
    body_sum: int | None = None  # checksum part of the image after its headers (see signed_chunks)


def check_signable(data: bytes, alg: HashAlg) -> tuple[PeImage, int, int]:
    """(parsed image, zero padding to append, body start) of an input that can take a signature
    of ``alg``; refuses (before any hashing) what cannot be signed."""
    ac.check_signing_alg(alg)
    image = PeImage.parse(data)
    pad = pad_length(image)
    if image.security_directory_offset is None:
        raise UnsupportedError("the image has no certificate-table directory entry (NumberOfRvaAndSizes <= 4)",
                               hint="such an image cannot carry an Authenticode signature")
    if image.is_signed:
        image.certificates()  # an existing table must be intact before we append to it
        if image.cert_table_offset + image.cert_table_size != len(data):
            raise UnsupportedError("the existing certificate table is not at the end of the file",
                                   hint="data was appended after signing; re-sign the unsigned binary")
    return image, pad, body_start(image)


def idc_and_attributes(digest: bytes, alg: HashAlg, signing_time: _dt.datetime) -> tuple[bytes, bytes]:
    """(SpcIndirectDataContent, signed attributes) for an image digest."""
    idc = ac.spc_indirect_data_content(digest, alg)
    return idc, ac.signed_attributes(idc, signing_time, alg)


def _prepared_base(data: bytes, alg: HashAlg, body_sum=None, digest=None) -> tuple[bytes, bytes, bytes, int]:
    image, pad, start = check_signable(data, alg)
    if body_sum is None and digest is None:
        digest, body_sum = digest_and_body_sum(image, alg, pad)
    else:
        digest = image_digest(image, alg, pad) if digest is None else digest() if callable(digest) else digest
        if body_sum is None:
            body_sum = word_sum(data, start)
        elif callable(body_sum):
            body_sum = body_sum()
    return data, digest, ac.spc_indirect_data_content(digest, alg), body_sum


def prepare(data: bytes, signing_time: _dt.datetime, alg: HashAlg = HashAlg.SHA256, *,
            body_sum=None, digest=None) -> PreparedSignature:
    """Everything up to the bytes to sign.

    When the caller computes them elsewhere (e.g. concurrently, while keys load), as an int/bytes
    or a callable returning it: ``body_sum`` = ``word_sum(data, body_start(image))`` and
    ``digest`` = ``signing_digest(data, alg)``. Otherwise both are computed here.
    """
    data, digest, idc, body_sum = _prepared_base(data, alg, body_sum, digest)
    return PreparedSignature(data, alg, digest, idc, ac.signed_attributes(idc, signing_time, alg), body_sum)


def prepare_with_attributes(data: bytes, signed_attrs: bytes, alg: HashAlg = HashAlg.SHA256) -> PreparedSignature:
    """Re-create the preparation around signed attributes made earlier (offline attach).

    Refuses attributes that were not made for this image: contentType must be SpcIndirectData and
    messageDigest must cover this image's SpcIndirectDataContent.
    """
    data, digest, idc, body_sum = _prepared_base(data, alg)
    attrs = ac.parse_signed_attributes(signed_attrs)
    if attrs.content_type != ac.SPC_INDIRECT_DATA:
        raise MismatchError("the signed attributes are not Authenticode attributes (contentType)",
                            hint="give the signed-attributes file the prepare step wrote")
    if attrs.message_digest != alg.digest(ac.content_octets(idc)):
        raise MismatchError("the signed attributes were prepared for another image (messageDigest differs)",
                            hint="the PE changed since prepare, or the attributes belong to another file")
    return PreparedSignature(data, alg, digest, idc, bytes(signed_attrs), body_sum)


def prepare_for_pkcs7(data: bytes, alg: HashAlg = HashAlg.SHA256) -> PreparedSignature:
    """Preparation for attaching a complete PKCS#7 made elsewhere (no signed attributes of ours)."""
    data, digest, idc, body_sum = _prepared_base(data, alg)
    return PreparedSignature(data, alg, digest, idc, b"", body_sum)


def complete(prepared: PreparedSignature, signature: bytes, certificate_der: bytes,
             *, extra_certificates: tuple[bytes, ...] = ()) -> bytes:
    """Wrap a raw signature over ``prepared.signed_attrs`` and append it; checked before returning."""
    return b"".join(complete_chunks(prepared, signature, certificate_der, extra_certificates=extra_certificates))


def complete_chunks(prepared: PreparedSignature, signature: bytes, certificate_der: bytes,
                    *, extra_certificates: tuple[bytes, ...] = ()) -> list:
    """``complete`` as chunks to write one after the other (no in-memory copy of the image)."""
    der = ac.build_signed_data(prepared.idc_der, prepared.signed_attrs, signature, certificate_der,
                               prepared.alg, extra_certificates=extra_certificates)
    return attach_chunks(prepared, der)


def attach_chunks(prepared: PreparedSignature, der: bytes) -> list:
    """Append a complete Authenticode PKCS#7 after checking it is for this image and verifies, as
    chunks to write one after the other."""
    from pcrtool.pe.verify import check_signer, edk2_hash_alg, idc_digest_as_edk2

    sig = ac.parse_pkcs7(der)
    alg = edk2_hash_alg(sig.der)
    if alg is None:
        raise UnsupportedError("EDK2 cannot find the digest algorithm of this PKCS#7 (fixed offset 32)",
                               hint="the PKCS#7 needs 2-byte DER lengths (256..65535 bytes)")
    ac.check_signing_alg(alg)
    ac.check_edk2_layout(sig.der, alg)
    digest = prepared.image_digest if alg is prepared.alg else _digest_as_signed(prepared.image, alg)
    if idc_digest_as_edk2(sig.idc_der, alg.digest_size) != digest:
        raise MismatchError("the PKCS#7 signs another image digest",
                            hint="it was made for another file, or the file changed since")
    _signer, problem = check_signer(sig)
    if problem:
        raise SignatureError(f"the PKCS#7 does not verify: {problem}",
                             hint="sign the exact signed-attributes bytes with the certificate's key")
    return signed_chunks(prepared.image, sig.der, body_sum=prepared.body_sum)


def _digest_as_signed(data: bytes, alg: HashAlg) -> bytes:
    image = PeImage.parse(data)
    return image_digest(image, alg, pad_length(image))


def sign_image(data: bytes, signer, signing_time: _dt.datetime, alg: HashAlg = HashAlg.SHA256, *,
               certificate_der: bytes | None = None, chain: tuple[bytes, ...] = ()) -> bytes:
    """Direct signing with a ``Signer`` (file key or PKCS#11); RSA 2048..4096 only.

    ``chain``: intermediate certificates (DER) to embed after the signer's, so that firmware can
    build the path to a CA in db.
    """
    return b"".join(sign_image_chunks(data, signer, signing_time, alg, certificate_der=certificate_der,
                                      chain=chain))


def sign_image_chunks(data: bytes, signer, signing_time: _dt.datetime, alg: HashAlg = HashAlg.SHA256, *,
                      certificate_der: bytes | None = None, chain: tuple[bytes, ...] = ()) -> list:
    """``sign_image`` as chunks to write one after the other."""
    return sign_prepared(lambda: prepare(data, signing_time, alg), signer, certificate_der=certificate_der,
                         chain=chain)


def check_signing_key(signer) -> None:
    """RSA 2048..4096 (what EDK2 verifies); refused before any hashing."""
    from pcrtool.sign.api import KeyType, require_key

    require_key(signer.public_key(), consumer=CONSUMER, key_types=(KeyType.RSA,), min_rsa_bits=2048,
                max_rsa_bits=4096)


def sign_prepared(prepared, signer, *, certificate_der: bytes | None = None, chain: tuple[bytes, ...] = (),
                  checked: bool = False) -> list:
    """Sign a ``PreparedSignature`` (or a callable returning one, e.g. the result of a preparation
    running in the background) with ``signer``; chunks as ``sign_image_chunks``.

    The new signature is verified against the public key of the certificate that goes into the
    PKCS#7 before anything is returned, and the PKCS#7 passes the EDK2 layout check: nothing
    made with a faulty key leaves this function. (The PKCS#7 is this module's own DER, so it is
    not parsed back: ``attach_chunks`` does that for PKCS#7s made elsewhere.) ``checked``: the
    caller already ran ``check_signing_key`` and ``check_certificate_key`` for this signer.
    """
    from pcrtool.sign.api import Padding, verify_signature

    if not checked:
        check_signing_key(signer)
    cert_der = certificate_der or certificate_bytes(signer)
    if not checked:
        check_certificate_key(cert_der, signer.public_key())
    if callable(prepared):
        prepared = prepared()
    signature = signer.sign(prepared.signed_attrs, prepared.alg, Padding.PKCS1V15)
    verify_signature(signer.public_key(), prepared.signed_attrs, signature, prepared.alg, Padding.PKCS1V15,
                     what="the new signature")
    der = ac.build_signed_data(prepared.idc_der, prepared.signed_attrs, signature, cert_der, prepared.alg,
                               extra_certificates=tuple(chain))
    ac.check_edk2_layout(der, prepared.alg)
    return signed_chunks(prepared.image, der, body_sum=prepared.body_sum)


def certificate_bytes(signer) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = signer.certificate()
    if cert is None:
        raise UnsupportedError("Authenticode needs the signer's X.509 certificate",
                               hint="pass --cert CERT.pem (or store the certificate on the token)")
    return cert.public_bytes(Encoding.DER)


def check_certificate_key(cert_der: bytes, public_key) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    spki = x509.load_der_x509_certificate(cert_der).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if spki != public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        raise UnsupportedError("the certificate does not belong to the signing key",
                               hint="give the certificate issued for this key")
