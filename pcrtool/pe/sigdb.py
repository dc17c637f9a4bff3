"""Signature databases (db/dbx) for image verification: EFI_SIGNATURE_LIST, PEM and DER certificates.

EFI_SIGNATURE_LIST layout: UEFI 2.10 §32.4.1 (SignatureType GUID, SignatureListSize,
SignatureHeaderSize, SignatureSize, header, then EFI_SIGNATURE_DATA = owner GUID + data).
A dump of the db/dbx variable from efivarfs (4-byte attributes first) is accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg

# EFI_SIGNATURE_LIST type names as pcrtool.eventlog.decode.variables reports them
IMAGE_HASH_TYPES = {"sha256": HashAlg.SHA256, "sha384": HashAlg.SHA384, "sha512": HashAlg.SHA512}
CERT_HASH_TYPES = {"x509-sha256": HashAlg.SHA256, "x509-sha384": HashAlg.SHA384,
                   "x509-sha512": HashAlg.SHA512}


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
    """Sort the entries of concatenated EFI_SIGNATURE_LISTs (parsed by the event-log decoder)."""
    from pcrtool.eventlog.decode.variables import parse_signature_lists

    db = SignatureDb()
    for sig_list in parse_signature_lists(bytes(data)):
        for entry in sig_list.entries:
            payload = entry.data
            if sig_list.type_name == "x509":
                db.certificates.append(payload)
            elif sig_list.type_name in IMAGE_HASH_TYPES:
                alg = IMAGE_HASH_TYPES[sig_list.type_name]
                db.image_hashes.append((alg, payload[:alg.digest_size]))
            elif sig_list.type_name in CERT_HASH_TYPES:
                alg = CERT_HASH_TYPES[sig_list.type_name]
                db.cert_hashes.append((alg, payload[:alg.digest_size]))
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
