"""The Signer interface every pcrtool signature goes through, and key references.

A key reference is one string:
  - ``file:/path/key.pem`` or a plain path: a PEM/DER private key (``cryptography``);
  - ``pkcs11:token=…;object=…?pin-source=file:…`` (RFC 7512 URI): a PKCS#11 token;
  - ``offline``: no key here; the command writes a signing request instead.
Pure: parsing only. Backends live in ``keyfile.py``, ``pkcs11.py``, ``offline.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg


class KeyType(StrEnum):
    RSA = "rsa"
    EC = "ec"


class Padding(StrEnum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"


@runtime_checkable
class Signer(Protocol):
    """Something that can produce a raw signature with one private key.

    ``sign`` returns the raw signature: PKCS#1 v1.5 (or PSS) bytes for RSA, DER-encoded
    ECDSA-Sig-Value for EC — the form PKCS#7/CMS and TPM2 tooling consume.
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


class KeyScheme(StrEnum):
    FILE = "file"
    PKCS11 = "pkcs11"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class KeyRef:
    scheme: KeyScheme
    target: str  # file path, the full pkcs11 URI, or "" for offline

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
            if not path:
                raise UsageError("file: key reference without a path", hint="use file:/path/key.pem")
            return cls(KeyScheme.FILE, path)
        if ":" in text.split("/", 1)[0] and not text.startswith(("/", ".")):
            scheme = text.split(":", 1)[0]
            raise UsageError(f"unknown key scheme {scheme!r}", hint="use file:PATH, a pkcs11: URI, or offline")
        return cls(KeyScheme.FILE, text)

    def __str__(self) -> str:
        if self.scheme is KeyScheme.OFFLINE:
            return "offline"
        if self.scheme is KeyScheme.PKCS11:
            return self.target
        return f"file:{self.target}"
