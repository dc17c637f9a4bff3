"""The Signer interface every pcrtool signature goes through, and key references.

A key reference is one string:
  - ``file:/path/key.pem`` or a plain path: a PEM/DER private key (``cryptography``); an encrypted
    key takes its passphrase from ``file:/path/key.pem?passphrase-file=/path/pass``, the file named
    by ``$PCRTOOL_KEY_PASSPHRASE_FILE`` or ``$PCRTOOL_KEY_PASSPHRASE`` (never from argv);
  - ``pkcs11:token=…;object=…?pin-source=file:…`` (RFC 7512 URI): a PKCS#11 token;
  - ``offline``: no key here; the command writes a signing request instead.

Pure: parsing, fingerprints, verification and consumer checks only. Backends live in
``keyfile.py``, ``pkcs11.py`` and ``offline.py``; ``pcrtool.sign.load_signer`` picks one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
# Encoding and PublicFormat are defined here; the public ``serialization`` package re-exports them
# but also loads the SSH key code (~10 ms), which nothing in this module needs
# (tests/pe/test_x509_der.py holds the identity).
try:
    from cryptography.hazmat.primitives import _serialization as serialization
except ImportError:  # pragma: no cover - a cryptography release that moved them: the public names
    from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding as asym_padding, rsa, utils

from pcrtool.errors import SignatureError, UnsupportedError, UsageError
from pcrtool.model import HashAlg


class KeyType(StrEnum):
    RSA = "rsa"
    EC = "ec"


class Padding(StrEnum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"


# Curves pcrtool signs with (FIPS 186-4 names as cryptography spells them).
SUPPORTED_CURVES = {"secp256r1": 256, "secp384r1": 384}


@runtime_checkable
class Signer(Protocol):
    """Something that can produce a raw signature with one private key.

    ``sign`` returns the raw signature: PKCS#1 v1.5 (or PSS, salt length = digest length) bytes
    for RSA, DER-encoded ECDSA-Sig-Value for EC — the form PKCS#7/CMS and TPM2 tooling consume.
    Every backend derives from ``SignerBase`` and therefore also offers ``fingerprint()``,
    ``require_rsa(consumer=…)``, ``require(consumer=…, …)`` and ``verify(…)``.
    """

    @property
    def key_type(self) -> KeyType: ...

    @property
    def key_size(self) -> int: ...

    def public_key(self):  # -> cryptography public key object
        ...

    def certificate(self):  # -> cryptography x509.Certificate | None
        ...

    def sign(self, data: bytes, hash_alg: HashAlg, padding: Padding = Padding.PKCS1V15) -> bytes:
        """Sign ``data`` (hashing it with ``hash_alg``)."""
        ...


# --- helpers on public keys (pure) -----------------------------------------------------------

def crypto_hash(alg: HashAlg) -> hashes.HashAlgorithm:
    """The ``cryptography`` hash object for a signing hash."""
    table = {HashAlg.SHA1: hashes.SHA1, HashAlg.SHA256: hashes.SHA256,
             HashAlg.SHA384: hashes.SHA384, HashAlg.SHA512: hashes.SHA512}
    if alg not in table:
        raise UnsupportedError(f"{alg.bank_name} cannot be used as a signature hash",
                               hint="use sha256, sha384 or sha512")
    return table[alg]()


def spki_der(public_key) -> bytes:
    """DER SubjectPublicKeyInfo (RFC 5280 §4.1) of a public key."""
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_fingerprint(public_key) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex (what ``openssl pkey -pubin
    -outform DER | sha256sum`` prints). Not systemd's ``.pcrsig`` ``pkfp``: that one hashes the
    i2d_PublicKey DER and lives in ``pcrtool.policy.digests.public_key_fingerprint``."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


def certificate_fingerprint(certificate) -> str:
    """SHA-256 of the certificate DER, lowercase hex (systemd verity-sig ``certificateFingerprint``)."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def describe_public_key(public_key) -> tuple[KeyType, int]:
    """(key type, size in bits) of an RSA or EC public key; other types are refused."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyType.RSA, public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in SUPPORTED_CURVES:
            raise UnsupportedError(f"EC curve {public_key.curve.name} is not supported",
                                   hint="use P-256 (ec256) or P-384 (ec384)")
        return KeyType.EC, public_key.curve.key_size
    raise UnsupportedError(f"key type {type(public_key).__name__.lstrip('_')} is not supported",
                           hint="use an RSA or ECDSA P-256/P-384 key")


def key_label(key_type: KeyType, key_size: int) -> str:
    """Short name as ``pcrtool key generate --type`` spells it: ``rsa2048``, ``ec256``."""
    return f"{key_type.value}{key_size}"


def pss_padding(hash_alg: HashAlg, *, verify_any_salt: bool = False) -> asym_padding.PSS:
    """RSASSA-PSS with MGF1 over the same hash and salt length = digest length (RFC 8017 §9.1;
    the choice of CMS/RFC 4056 and of PKCS#11 tokens). Verification may accept any salt length."""
    salt = asym_padding.PSS.AUTO if verify_any_salt else hash_alg.digest_size
    return asym_padding.PSS(mgf=asym_padding.MGF1(crypto_hash(hash_alg)), salt_length=salt)


def verify_signature(public_key, data: bytes, signature: bytes, hash_alg: HashAlg,
                     padding: Padding = Padding.PKCS1V15, *, prehashed: bool = False,
                     what: str = "signature") -> None:
    """Check a raw signature over ``data`` (or over its digest with ``prehashed=True``).

    Raises ``SignatureError`` naming the likely cause: for RSA PKCS#1 v1.5 the public-key
    operation tells "made by another key" from "made over other bytes".
    """
    algo = utils.Prehashed(crypto_hash(hash_alg)) if prehashed else crypto_hash(hash_alg)
    fp = public_key_fingerprint(public_key)[:16]
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            pad = (asym_padding.PKCS1v15() if padding is Padding.PKCS1V15
                   else pss_padding(hash_alg, verify_any_salt=True))
            public_key.verify(signature, data, pad, algo)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            if padding is not Padding.PKCS1V15:
                raise UnsupportedError("PSS padding does not apply to ECDSA keys")
            public_key.verify(signature, data, ec.ECDSA(algo))
        else:
            describe_public_key(public_key)
    except InvalidSignature:
        cause = _diagnose_rsa_failure(public_key, signature, hash_alg, padding)
        raise SignatureError(f"{what} does not verify with key {fp}…: {cause}",
                             hint="sign exactly the request's bytes with the key the request names"
                             ) from None


def _diagnose_rsa_failure(public_key, signature: bytes, hash_alg: HashAlg, padding: Padding) -> str:
    """Why an RSA PKCS#1 v1.5 signature failed: recover EM = s^e mod n (RFC 8017 §8.2.2)."""
    if not isinstance(public_key, rsa.RSAPublicKey) or padding is not Padding.PKCS1V15:
        return "made by another key or over other bytes"
    numbers = public_key.public_numbers()
    k = (numbers.n.bit_length() + 7) // 8
    if len(signature) != k:
        return f"it has {len(signature)} bytes, a signature of this {numbers.n.bit_length()}-bit key has {k}"
    s = int.from_bytes(signature, "big")
    if s >= numbers.n:
        return "made by another key (value out of range for this key)"
    em = pow(s, numbers.e, numbers.n).to_bytes(k, "big")
    if not em.startswith(b"\x00\x01"):
        return "made by another key (no PKCS#1 v1.5 padding under this public key)"
    sep = em.find(b"\x00", 2)
    if sep < 10 or set(em[2:sep]) != {0xFF}:
        return "made by another key (no PKCS#1 v1.5 padding under this public key)"
    digest_info = em[sep + 1:]
    if not digest_info.startswith(DIGEST_INFO_PREFIX[hash_alg]):
        return "made with this key but with another hash algorithm or a wrong DigestInfo"
    return "made with this key but over other bytes"


# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): prefix || digest is what RSA PKCS#1 v1.5 signs.
DIGEST_INFO_PREFIX = {
    HashAlg.SHA1: bytes.fromhex("3021300906052b0e03021a05000414"),
    HashAlg.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashAlg.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashAlg.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}


def ecdsa_signature_to_der(signature: bytes, curve_bits: int) -> bytes:
    """Accept an ECDSA signature as DER (RFC 3279 ECDSA-Sig-Value) or as raw r||s (PKCS#11
    CKM_ECDSA, ``pkcs11-tool --sign``, IEEE P1363) and return DER."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    size = (curve_bits + 7) // 8
    try:
        r, s = decode_dss_signature(signature)
        return utils.encode_dss_signature(r, s)  # canonical re-encoding of valid DER
    except ValueError:
        pass
    if len(signature) != 2 * size:
        raise SignatureError(f"ECDSA signature of {len(signature)} bytes is neither DER nor raw r||s "
                             f"for a {curve_bits}-bit curve")
    return utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                      int.from_bytes(signature[size:], "big"))


def digest_info(hash_alg: HashAlg, digest: bytes) -> bytes:
    """DER DigestInfo for a digest (the input of a raw CKM_RSA_PKCS signature)."""
    if len(digest) != hash_alg.digest_size:
        raise UsageError(f"{hash_alg.bank_name} digest must have {hash_alg.digest_size} bytes")
    return DIGEST_INFO_PREFIX[hash_alg] + digest


def require_key(public_key, *, consumer: str,
                key_types: tuple[KeyType, ...] = (KeyType.RSA, KeyType.EC),
                min_rsa_bits: int = 2048, max_rsa_bits: int | None = None,
                padding: Padding = Padding.PKCS1V15,
                paddings: tuple[Padding, ...] = (Padding.PKCS1V15,)) -> None:
    """Refuse (UnsupportedError, with the reason) a key ``consumer`` cannot verify."""
    kt, size = describe_public_key(public_key)
    padding = Padding(padding)
    if kt not in key_types:
        allowed = " or ".join(t.value.upper() for t in key_types)
        raise UnsupportedError(f"{consumer} accepts only {allowed} keys, not {key_label(kt, size)}",
                               hint=f"use an {allowed} key (pcrtool key generate --type rsa2048)")
    if kt is KeyType.RSA and size < min_rsa_bits:
        raise UnsupportedError(f"{consumer}: RSA-{size} is too small (minimum {min_rsa_bits} bits)",
                               hint="use rsa2048 or larger")
    if kt is KeyType.RSA and max_rsa_bits is not None and size > max_rsa_bits:
        raise UnsupportedError(f"{consumer}: RSA-{size} is larger than {max_rsa_bits} bits",
                               hint=f"use rsa{max_rsa_bits}")
    if kt is KeyType.EC and padding is not Padding.PKCS1V15:
        raise UnsupportedError("PSS padding applies to RSA keys only",
                               hint="ECDSA signatures have no padding choice")
    if kt is KeyType.RSA and padding not in paddings:
        raise UnsupportedError(f"{consumer} cannot verify RSA {padding.value} signatures",
                               hint="use pkcs1v15 padding")


class SignerBase:
    """Shared behaviour of all backends: fingerprints, verification, consumer checks.

    Subclasses provide ``public_key()``, ``certificate()`` and ``_sign(data, hash_alg, padding)``.
    """

    #: how the key is referred to in messages (never contains a PIN or passphrase)
    description: str = "key"
    #: True only for the offline placeholder, which knows the public key but cannot sign
    is_offline: bool = False

    def public_key(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def certificate(self):
        return None

    @property
    def key_type(self) -> KeyType:
        return describe_public_key(self.public_key())[0]

    @property
    def key_size(self) -> int:
        return describe_public_key(self.public_key())[1]

    @property
    def label(self) -> str:
        return key_label(self.key_type, self.key_size)

    def fingerprint(self) -> str:
        """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex."""
        return public_key_fingerprint(self.public_key())

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)

    def require(self, *, consumer: str, key_types: tuple[KeyType, ...] = (KeyType.RSA, KeyType.EC),
                min_rsa_bits: int = 2048, max_rsa_bits: int | None = None,
                padding: Padding = Padding.PKCS1V15,
                paddings: tuple[Padding, ...] = (Padding.PKCS1V15,)) -> None:
        """Refuse (UnsupportedError, with the reason) a key the consumer cannot verify."""
        require_key(self.public_key(), consumer=consumer, key_types=key_types,
                    min_rsa_bits=min_rsa_bits, max_rsa_bits=max_rsa_bits, padding=padding,
                    paddings=paddings)

    def require_rsa(self, consumer: str = "this format", *, max_bits: int | None = None) -> None:
        """Refuse non-RSA keys, e.g. ``require_rsa(consumer="systemd signed PCR policy")``:
        systemd hard-codes RSASSA for PolicyAuthorize through v259 (systemd-reference §1.6)."""
        self.require(consumer=consumer, key_types=(KeyType.RSA,), max_rsa_bits=max_bits)

    def sign(self, data: bytes, hash_alg: HashAlg = HashAlg.SHA256,
             padding: Padding = Padding.PKCS1V15) -> bytes:
        padding = Padding(padding)
        crypto_hash(hash_alg)  # refuses non-signing hashes early
        if self.key_type is KeyType.EC and padding is not Padding.PKCS1V15:
            raise UnsupportedError("PSS padding applies to RSA keys only",
                                   hint="ECDSA signatures have no padding choice")
        return self._sign(bytes(data), hash_alg, padding)

    def _sign(self, data: bytes, hash_alg: HashAlg, padding: Padding) -> bytes:  # pragma: no cover
        raise NotImplementedError

    def verify(self, data: bytes, signature: bytes, hash_alg: HashAlg = HashAlg.SHA256,
               padding: Padding = Padding.PKCS1V15) -> None:
        verify_signature(self.public_key(), data, signature, hash_alg, padding)

    def close(self) -> None:
        """Release the backend (PKCS#11 session); file keys need nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


# --- key references ----------------------------------------------------------------------------

class KeyScheme(StrEnum):
    FILE = "file"
    PKCS11 = "pkcs11"
    OFFLINE = "offline"


_SECRET_QUERY = ("pin-value",)


def redact_uri(uri: str) -> str:
    """A pkcs11 URI with any ``pin-value`` replaced by ``***`` (for messages and logs)."""
    if "?" not in uri:
        return uri
    base, _, query = uri.partition("?")
    parts = []
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        parts.append(f"{name}=***" if name in _SECRET_QUERY else part)
    return base + "?" + "&".join(parts)


@dataclass(frozen=True, slots=True)
class KeyRef:
    scheme: KeyScheme
    target: str  # file path (may carry ?passphrase-file=…), the full pkcs11 URI, or "" for offline

    @classmethod
    def parse(cls, text: str) -> "KeyRef":
        text = text.strip()
        if not text:
            raise UsageError("empty key reference", hint="use file:PATH, a pkcs11: URI, or offline")
        if text == "offline":
            return cls(KeyScheme.OFFLINE, "")
        if text.startswith("pkcs11:"):
            return cls(KeyScheme.PKCS11, text)
        if text.startswith("file:"):
            path = text[len("file:"):]
            if not path or path.startswith("?"):
                raise UsageError("file: key reference without a path", hint="use file:/path/key.pem")
            return cls(KeyScheme.FILE, path)
        if ":" in text.split("/", 1)[0] and not text.startswith(("/", ".")):
            scheme = text.split(":", 1)[0]
            raise UsageError(f"unknown key scheme {scheme!r}", hint="use file:PATH, a pkcs11: URI, or offline")
        return cls(KeyScheme.FILE, text)

    def __str__(self) -> str:
        """Display form; a PIN given as ``pin-value`` is redacted."""
        if self.scheme is KeyScheme.OFFLINE:
            return "offline"
        if self.scheme is KeyScheme.PKCS11:
            return redact_uri(self.target)
        return f"file:{self.target}"
