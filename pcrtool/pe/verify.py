"""Image verification as EDK2 does it (DxeImageVerificationHandler, AuthenticodeVerify, Pkcs7Verify).

Per WIN_CERTIFICATE entry: hash algorithm from the PKCS#7 at fixed offset 32; the last HashSize
bytes of SpcIndirectDataContent must equal the image digest; the signature must verify with
PKCS7_verify semantics (messageDigest over the content octets, signature over the DER SET of
signed attributes) and chain to one trusted certificate (partial chains allowed, validity dates
and EKU ignored). A dbx hit on any entry rejects the image; a db match on any entry accepts it.
The table walk must tile the directory exactly. Unsigned images are accepted only by an image
hash (SHA-256 of the file as is) in db.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcrtool.errors import FormatError
from pcrtool.model import HashAlg
from pcrtool.pe.digest import image_digest
from pcrtool.pe.image import WIN_CERT_TYPE_EFI_GUID, WIN_CERT_TYPE_PKCS_SIGNED_DATA, PeImage
from pcrtool.pe.sigdb import SignatureDb, tbs_hash
from pcrtool.sign import authenticode_pkcs7 as ac

EFI_CERT_TYPE_PKCS7_GUID = bytes.fromhex("9dd2af4adf68ee498aa9347d375665a7")  # 4aafd29d-68df-49ee-…, LE


@dataclass(slots=True)
class SignatureCheck:
    """What one WIN_CERTIFICATE entry says and how it fares."""

    index: int
    offset: int
    length: int
    cert_type: int
    subject: str | None = None
    issuer: str | None = None
    digest_algorithm: str | None = None
    signing_time: str | None = None
    digest_matches: bool = False            # SpcIndirectDataContent carries this image's digest
    signature_valid: bool = False           # the signer's signature verifies (no trust decision)
    trusted_by: str | None = None           # subject of the db/--cert certificate it chains to
    dbx_hit: str | None = None
    problems: list[str] = field(default_factory=list)
    signature: "ac.AuthenticodeSignature | None" = None

    def to_json(self) -> dict:
        return {"index": self.index, "offset": self.offset, "length": self.length,
                "type": self.cert_type, "subject": self.subject, "issuer": self.issuer,
                "digest_algorithm": self.digest_algorithm, "signing_time": self.signing_time,
                "digest_matches": self.digest_matches, "signature_valid": self.signature_valid,
                "trusted_by": self.trusted_by, "dbx_hit": self.dbx_hit, "problems": self.problems}


@dataclass(slots=True)
class VerifyResult:
    digest_sha256: bytes                     # EDK2's digest of the file as given
    signatures: list[SignatureCheck]
    table_ok: bool
    accepted: bool | None                    # None when no db/cert was given
    reason: str
    warnings: list[str]

    def to_json(self) -> dict:
        return {"digest": {"sha256": self.digest_sha256.hex()}, "table_ok": self.table_ok,
                "edk2_accepts": self.accepted, "reason": self.reason, "warnings": self.warnings,
                "signatures": [s.to_json() for s in self.signatures]}


def _name(cert_der: bytes) -> str:
    from asn1crypto import x509
    return x509.Certificate.load(cert_der).subject.human_friendly


def edk2_hash_alg(der: bytes) -> HashAlg | None:
    """HashPeImageByType: the OID memcmp at fixed offset 32 of the PKCS#7 DER."""
    if len(der) < 2 or der[1] != 0x82:
        return None
    for alg, oid in ac.DIGEST_OIDS.items():
        enc = ac.core.ObjectIdentifier(oid).dump()[2:]
        if der[32:32 + len(enc)] == enc:
            return alg
    return None


def idc_digest_as_edk2(idc_der: bytes, size: int) -> bytes | None:
    """AuthenticodeVerify: the last ``size`` bytes of the SpcIndirectDataContent value
    (short or 0x82 length forms only)."""
    b = idc_der[1]
    if b & 0x80 == 0:
        n, start = b & 0x7F, 2
    elif b & 0x82 == 0x82:
        n, start = int.from_bytes(idc_der[2:4], "big"), 4
    else:
        return None
    if n < size or start + n > len(idc_der):
        return None
    return idc_der[start + n - size:start + n]


def check_signer(sig: "ac.AuthenticodeSignature") -> tuple[bytes | None, str | None]:
    """PKCS7_signatureVerify: (signer certificate DER, problem or None)."""
    from cryptography import x509 as cx509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from pcrtool.sign.api import crypto_hash

    signer_der = sig.signer_certificate()
    if signer_der is None:
        return None, "the signer certificate is not embedded"
    alg = sig.signer_digest_algorithm
    if alg is None:
        return signer_der, "unknown signer digest algorithm"
    content = ac.content_octets(sig.idc_der)
    if sig.signed_attrs is not None:
        attrs = sig.attributes
        if attrs.message_digest != alg.digest(content):
            return signer_der, "messageDigest does not match the signed content"
        tbs = sig.signed_attrs
    else:
        tbs = content
    try:
        key = cx509.load_der_x509_certificate(signer_der).public_key()
    except (ValueError, TypeError) as e:
        return signer_der, f"the signer certificate cannot be read: {e}".splitlines()[0]
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig.signature, tbs, padding.PKCS1v15(), crypto_hash(alg))
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig.signature, tbs, ec.ECDSA(crypto_hash(alg)))
        else:
            return signer_der, "unsupported signer key type"
    except InvalidSignature:
        return signer_der, "the signature does not verify with the signer certificate"
    return signer_der, None


def chains_to(signer_der: bytes, untrusted: tuple[bytes, ...], trusted: list[bytes]) -> bytes | None:
    """X509_verify_cert with PARTIAL_CHAIN, NO_CHECK_TIME, purpose any: the trusted certificate
    reached from the signer (the signer itself counts), or None."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not trusted:
        return None
    import warnings

    trusted_set = set(trusted)
    pool = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd serial numbers in real-world CA bundles
        for c in list(trusted) + list(untrusted):
            try:
                pool.append(cx509.load_der_x509_certificate(c))
            except ValueError:
                continue
        try:
            cert = cx509.load_der_x509_certificate(signer_der)
        except ValueError:
            return None
    for _depth in range(10):
        der = cert.public_bytes(Encoding.DER)
        if der in trusted_set:
            return der
        issuer = None
        for cand in pool:
            if cand.subject == cert.issuer and cand != cert:
                try:
                    cert.verify_directly_issued_by(cand)
                except Exception:  # noqa: BLE001 - any failure: not the issuer
                    continue
                issuer = cand
                if cand.public_bytes(Encoding.DER) in trusted_set:
                    break
        if issuer is None:
            return None
        cert = issuer
    return None


def verify_image(data: bytes, *, db: SignatureDb | None = None, dbx: SignatureDb | None = None,
                 sha256_digest: bytes | None = None) -> VerifyResult:
    """Check every signature of ``data``; decide as EDK2 would when ``db`` is given.

    ``sha256_digest``: ``image_digest(PeImage.parse(data), SHA256)`` when the caller has already
    computed it from these very bytes (the CLI hashes its output while writing it).
    """
    image = PeImage.parse(data)
    digest256 = image_digest(image, HashAlg.SHA256) if sha256_digest is None else sha256_digest
    digests: dict[HashAlg, bytes] = {HashAlg.SHA256: digest256}
    warnings = list(image.warnings)
    checks: list[SignatureCheck] = []
    table_ok = True
    try:
        entries = image.certificates()
    except FormatError as e:
        entries, table_ok = [], False
        warnings.append(f"certificate table: {e.message}")

    def digest(alg: HashAlg) -> bytes:
        if alg not in digests:
            digests[alg] = image_digest(image, alg)
        return digests[alg]

    db = db or SignatureDb()
    dbx = dbx or SignatureDb()
    verified, rejected, reason = False, False, ""
    for i, entry in enumerate(entries):
        check = SignatureCheck(i, entry.offset, entry.length, entry.cert_type)
        checks.append(check)
        payload = entry.payload
        if entry.cert_type == WIN_CERT_TYPE_EFI_GUID and payload[:16] == EFI_CERT_TYPE_PKCS7_GUID:
            payload = payload[16:]
        elif entry.cert_type != WIN_CERT_TYPE_PKCS_SIGNED_DATA:
            check.problems.append(f"certificate type {entry.cert_type:#x} is ignored by firmware")
            continue
        if entry.revision != 0x0200:
            check.problems.append(f"wRevision {entry.revision:#x} (firmware does not check it)")
        try:
            sig = ac.parse_pkcs7(payload)
        except FormatError as e:
            check.problems.append(e.message)
            continue
        check.signature = sig
        check.subject, check.issuer = sig.signer_subject, sig.signer_issuer_name
        if sig.attributes and sig.attributes.signing_time:
            check.signing_time = sig.attributes.signing_time.isoformat()
        if sig.idc_type == ac.SPC_PESIGN_TYPE:
            check.problems.append("SpcIndirectDataContent type is 1.3.6.1.4.1.311.2.1.21 (pesign quirk; "
                                  "firmware does not look at it)")
        if sig.signer_count != 1:
            check.problems.append(f"{sig.signer_count} SignerInfos: EDK2 checks dbx against one signer only")
        if sig.nested_signatures:
            check.problems.append(f"{sig.nested_signatures} nested signature(s) (osslsigncode -nest): "
                                  "firmware does not see them")
        alg = edk2_hash_alg(sig.der)
        check.digest_algorithm = alg.bank_name if alg else None
        if alg is None:
            check.problems.append("EDK2 cannot find the digest algorithm at offset 32 of the PKCS#7")
            continue
        embedded = idc_digest_as_edk2(sig.idc_der, alg.digest_size)
        if embedded is None:
            check.problems.append("SpcIndirectDataContent length form is rejected by EDK2")
            continue
        check.digest_matches = embedded == digest(alg)
        if not check.digest_matches:
            check.problems.append("the signed digest is not this image's digest (modified after signing?)")
        signer_der, problem = check_signer(sig)
        check.signature_valid = problem is None
        if problem:
            check.problems.append(problem)
        ok = check.digest_matches and check.signature_valid
        # dbx: revoked certificates (by certificate or TBS hash), then the image hash
        if ok:
            chain_certs = list(sig.certificates)
            for der in dbx.certificates:
                if chains_to(signer_der, sig.certificates, [der]):
                    check.dbx_hit = f"certificate {_name(der)}"
            for halg, h in dbx.cert_hashes:
                for der in chain_certs:
                    try:
                        if tbs_hash(der, halg) == h:
                            check.dbx_hit = f"certificate hash of {_name(der)}"
                    except (ValueError, TypeError):
                        check.problems.append("an embedded certificate cannot be read")
        for halg, h in dbx.image_hashes:
            if h == digest(halg):
                check.dbx_hit = f"image {halg.bank_name} hash"
        if check.dbx_hit:
            rejected, reason = True, f"signature {i}: forbidden by dbx ({check.dbx_hit})"
            break
        if ok:
            anchor = chains_to(signer_der, sig.certificates, db.certificates)
            if anchor:
                check.trusted_by = _name(anchor)
                if not verified:
                    verified, reason = True, f"signature {i} chains to {check.trusted_by}"
        if not verified:
            for halg, h in db.image_hashes:
                if h == digest(halg):
                    verified, reason = True, f"image {halg.bank_name} hash is in db"
    if not entries and table_ok:
        for halg, h in dbx.image_hashes:
            if h == digest(halg):
                rejected, reason = True, "unsigned image hash is in dbx"
        if not rejected:
            for halg, h in db.image_hashes:
                if h == digest(halg):
                    verified, reason = True, f"unsigned image: {halg.bank_name} hash is in db"
    if not table_ok:
        verified, rejected, reason = False, True, "the certificate table walk does not tile the directory"
    if rejected:
        accepted = False
    elif db.certificates or db.image_hashes:
        accepted = verified
        if not verified and not reason:
            reason = "no signature chains to a db certificate and the image hash is not in db" if entries \
                else "unsigned, and the image hash is not in db"
    else:
        accepted = None
        reason = reason or "no db/certificate given: signatures listed, trust not decided"
    return VerifyResult(digest256, checks, table_ok, accepted, reason, warnings)
