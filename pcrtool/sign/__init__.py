"""Signing: the Signer interface (api.py), message builders, and key backends (adapters).

``load_signer("file:/k.pem" | "pkcs11:…" | "offline", certificate=…)`` returns a ``Signer``.
"""

from __future__ import annotations

from pcrtool.sign.api import KeyRef, KeyScheme, KeyType, Padding, Signer, SignerBase

__all__ = ["KeyRef", "KeyScheme", "KeyType", "Padding", "Signer", "SignerBase", "load_signer"]


def load_signer(ref: "str | KeyRef", *, certificate: str | None = None) -> SignerBase:
    """Open the key a reference names.

    - file keys: ``pcrtool.sign.keyfile.FileSigner`` (certificate from ``certificate`` or the file);
    - PKCS#11 URIs: ``pcrtool.sign.pkcs11.Pkcs11Signer`` (certificate from the token when present);
    - ``offline``: ``pcrtool.sign.offline.OfflineSigner``, which knows only the public half (from
      ``certificate``, a certificate or public-key file) and refuses to sign: the caller writes a
      signing request instead (``signer.is_offline``).
    """
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
