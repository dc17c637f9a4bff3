"""Signing: the Signer interface (api.py), message builders, and key backends (adapters).

``load_signer("file:/k.pem" | "pkcs11:…" | "offline", certificate=…)`` returns a ``Signer``.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pcrtool.sign.api import KeyRef, SignerBase

_API_NAMES = ("KeyRef", "KeyScheme", "KeyType", "Padding", "Signer", "SignerBase")

__all__ = ["KeyMaterial", "KeyRef", "KeyScheme", "KeyType", "Padding", "Signer", "SignerBase",
           "load_key_material", "load_signer"]


def load_signer(ref: "str | KeyRef", *, certificate: str | None = None) -> SignerBase:
    """Open the key a reference names.

    - file keys: ``pcrtool.sign.keyfile.FileSigner`` (certificate from ``certificate`` or the file);
    - PKCS#11 URIs: ``pcrtool.sign.pkcs11.Pkcs11Signer`` (certificate from the token when present);
    - ``offline``: ``pcrtool.sign.offline.OfflineSigner``, which knows only the public half (from
      ``certificate``, a certificate or public-key file) and refuses to sign: the caller writes a
      signing request instead (``signer.is_offline``).
    """
    from pcrtool.sign.api import KeyRef, KeyScheme

    if not isinstance(ref, KeyRef):
        ref = KeyRef.parse(ref)
    if ref.scheme is KeyScheme.FILE:
        from pcrtool.sign.keyfile import FileSigner
        return FileSigner.from_file(ref.target, certificate=certificate)
    if ref.scheme is KeyScheme.PKCS11:
        from pcrtool.sign.pkcs11 import Pkcs11Signer
        return Pkcs11Signer.from_uri(ref.target, certificate=certificate)
    from pcrtool.sign.offline import OfflineSigner
    return OfflineSigner.from_certificate(certificate)


def __getattr__(name: str):
    # The Signer API is imported on first use: ``pcrtool.sign.authenticode_pkcs7`` (pure DER)
    # must not pull in ``cryptography`` with it (``pe sign`` forks its checksum child first).
    if name in _API_NAMES:
        from pcrtool.sign import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    """Whatever a reference names: a signer (private key) or only a public key/certificate."""

    signer: SignerBase | None
    public_key: object
    certificate: object | None
    description: str

    def close(self) -> None:
        if self.signer is not None:
            self.signer.close()


def load_key_material(ref: "str | KeyRef", *, certificate: str | None = None) -> KeyMaterial:
    """Like ``load_signer``, but a file may also be a PEM/DER public key or certificate (for
    checking signatures, fingerprints, ``--public-key`` options); then ``signer`` is None."""
    from pcrtool import fileio
    from pcrtool.errors import KeyReferenceError
    from pcrtool.sign.api import KeyRef, KeyScheme
    from pcrtool.sign.keyfile import load_certificate_bytes, load_public_key_file, split_file_target

    kref = ref if isinstance(ref, KeyRef) else KeyRef.parse(ref)
    if kref.scheme is KeyScheme.FILE:
        path, _ = split_file_target(kref.target)
        data = fileio.read_bytes(path, what="key file")
        is_pem = data.lstrip().startswith(b"-----")
        if is_pem and b"PRIVATE KEY" not in data:
            if b"CERTIFICATE" in data:
                cert = load_certificate_bytes(data, name=path)
                return KeyMaterial(None, cert.public_key(), cert, f"certificate:{path}")
            return KeyMaterial(None, load_public_key_file(path), None, f"public:{path}")
        if not is_pem:
            try:  # a DER certificate or SubjectPublicKeyInfo?
                cert = load_certificate_bytes(data, name=path)
                return KeyMaterial(None, cert.public_key(), cert, f"certificate:{path}")
            except KeyReferenceError:
                pass
            try:
                return KeyMaterial(None, load_public_key_file(path), None, f"public:{path}")
            except KeyReferenceError:
                pass  # a DER private key
    signer = load_signer(kref, certificate=certificate)
    try:
        public = signer.public_key()
    except BaseException:
        signer.close()
        raise
    description = "offline" if signer.is_offline else signer.description
    return KeyMaterial(None if signer.is_offline else signer, public, signer.certificate(), description)
