"""Signature databases (db/dbx) for image verification: EFI_SIGNATURE_LIST, PEM and DER certificates.

EFI_SIGNATURE_LIST layout: UEFI 2.10 §32.4.1 (SignatureType GUID, SignatureListSize,
SignatureHeaderSize, SignatureSize, header, then EFI_SIGNATURE_DATA = owner GUID + data).
A dump of the db/dbx variable from efivarfs (4-byte attributes first) is accepted too.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg

EFI_CERT_X509 = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA256 = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
EFI_CERT_SHA384 = uuid.UUID("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")
EFI_CERT_SHA512 = uuid.UUID("093e0fae-a6c4-4f50-9f1b-d41b2b89c19a")
EFI_CERT_X509_SHA256 = uuid.UUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")
EFI_CERT_X509_SHA384 = uuid.UUID("7076876e-80c2-4ee6-aad2-28b349a6865b")
EFI_CERT_X509_SHA512 = uuid.UUID("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")

IMAGE_HASH_TYPES = {EFI_CERT_SHA256: HashAlg.SHA256, EFI_CERT_SHA384: HashAlg.SHA384,
                    EFI_CERT_SHA512: HashAlg.SHA512}
CERT_HASH_TYPES = {EFI_CERT_X509_SHA256: HashAlg.SHA256, EFI_CERT_X509_SHA384: HashAlg.SHA384,
                   EFI_CERT_X509_SHA512: HashAlg.SHA512}


@dataclass(slots=True)
class SignatureDb:
    """The entries of one database that image verification uses."""

    certificates: list[bytes] = field(default_factory=list)                    # DER X.509
    image_hashes: list[tuple[HashAlg, bytes]] = field(default_factory=list)
    cert_hashes: list[tuple[HashAlg, bytes]] = field(default_factory=list)     # hash of TBSCertificate

    def extend(self, other: "SignatureDb") -> None:
        self.certificates += other.certificates
        self.image_hashes += other.image_hashes
        self.cert_hashes += other.cert_hashes


def parse_esl(data: bytes) -> SignatureDb:
    """Parse concatenated EFI_SIGNATURE_LISTs (untrusted input: every length is checked)."""
    db = SignatureDb()
    pos = 0
    while pos < len(data):
        if pos + 28 > len(data):
            raise FormatError("EFI_SIGNATURE_LIST header is truncated", offset=pos)
        sig_type = uuid.UUID(bytes_le=bytes(data[pos:pos + 16]))
        list_size, header_size, sig_size = struct.unpack_from("<III", data, pos + 16)
        if list_size < 28 + header_size or pos + list_size > len(data) or sig_size < 16 or \
                (list_size - 28 - header_size) % sig_size:
            raise FormatError(f"EFI_SIGNATURE_LIST sizes are inconsistent (list {list_size}, "
                              f"header {header_size}, signature {sig_size})", offset=pos)
        p = pos + 28 + header_size
        while p < pos + list_size:
            payload = bytes(data[p + 16:p + sig_size])
            if sig_type == EFI_CERT_X509:
                db.certificates.append(payload)
            elif sig_type in IMAGE_HASH_TYPES:
                db.image_hashes.append((IMAGE_HASH_TYPES[sig_type], payload[:IMAGE_HASH_TYPES[sig_type].digest_size]))
            elif sig_type in CERT_HASH_TYPES:
                db.cert_hashes.append((CERT_HASH_TYPES[sig_type], payload[:CERT_HASH_TYPES[sig_type].digest_size]))
            p += sig_size
        pos += list_size
    return db


def load_sigdb(data: bytes) -> SignatureDb:
    """A certificate (PEM, possibly several, or DER), an ESL file, or an efivarfs db/dbx dump."""
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        from asn1crypto import pem
        db = SignatureDb()
        for kind, _headers, der in pem.unarmor(data, multiple=True):
            if kind == "CERTIFICATE":
                db.certificates.append(der)
        if not db.certificates:
            raise FormatError("PEM file holds no CERTIFICATE", hint="give a certificate, DER or an ESL")
        return db
    if data[:1] == b"\x30":
        from asn1crypto import x509
        try:
            x509.Certificate.load(bytes(data), strict=True).native
            return SignatureDb(certificates=[bytes(data)])
        except (ValueError, TypeError):
            pass
    try:
        return parse_esl(data)
    except FormatError as first:
        if len(data) > 4:
            try:
                return parse_esl(data[4:])  # efivarfs: 4 bytes of attributes first
            except FormatError:
                pass
        raise FormatError(f"not a certificate nor an EFI_SIGNATURE_LIST: {first.message}",
                          hint="give a PEM/DER certificate or an ESL (e.g. from cert-to-efi-sig-list)") from None


def tbs_hash(cert_der: bytes, alg: HashAlg) -> bytes:
    """Hash of the TBSCertificate (what EFI_CERT_X509_SHA* entries hold)."""
    from asn1crypto import x509
    return alg.digest(x509.Certificate.load(cert_der)["tbs_certificate"].dump())
