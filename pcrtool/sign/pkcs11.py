"""PKCS#11 tokens (adapter): RFC 7512 URIs, signing through python-pkcs11.

``pkcs11:token=release;object=uki-key?pin-source=file:/run/pin&module-path=/usr/lib/…/p11.so``

- Path attributes: ``token``, ``object``, ``id`` (percent-encoded bytes), ``serial``,
  ``manufacturer``, ``model``, ``type`` (``private``/``cert``/``public``; informational).
- Query attributes: ``pin-source`` (``file:PATH`` or ``PATH``), ``pin-value``, ``module-path``,
  ``module-name``; vendor extension ``x-prehashed=yes`` forces hashing on the host
  (``CKM_RSA_PKCS`` over a DigestInfo, ``CKM_RSA_PKCS_PSS``), which tokens that cannot hash need.
- Without a module in the URI: ``$PCRTOOL_PKCS11_MODULE``, else SoftHSM2.
- Without a PIN in the URI: ``$PCRTOOL_PKCS11_PIN`` (never argv). PINs never reach messages.

Mechanisms: RSA ``CKM_SHA{256,384,512}_RSA_PKCS`` (or raw ``CKM_RSA_PKCS`` + DigestInfo when the
token lacks them), RSA-PSS (salt = digest length), ECDSA as ``CKM_ECDSA`` over the host digest with
the raw r||s converted to DER (the form CMS and TPM tooling expect).
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pcrtool import fileio
from pcrtool.errors import KeyReferenceError, UnsupportedError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign.api import KeyType, Padding, SignerBase, digest_info, redact_uri

ENV_MODULE = "PCRTOOL_PKCS11_MODULE"
ENV_PIN = "PCRTOOL_PKCS11_PIN"
DEFAULT_MODULES = ("/usr/lib/softhsm/libsofthsm2.so",
                   "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                   "/usr/lib64/pkcs11/libsofthsm2.so")
_MODULE_DIRS = ("/usr/lib/x86_64-linux-gnu/pkcs11", "/usr/lib/pkcs11", "/usr/lib64/pkcs11",
                "/usr/lib/softhsm", "/usr/lib/x86_64-linux-gnu/softhsm",
                "/usr/lib/x86_64-linux-gnu", "/usr/lib")
_PATH_ATTRS = {"token", "object", "id", "serial", "manufacturer", "model", "type",
               "library-manufacturer", "library-description", "library-version",
               "slot-manufacturer", "slot-description", "slot-id"}
_QUERY_ATTRS = {"pin-source", "pin-value", "module-name", "module-path", "x-prehashed"}


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """A parsed RFC 7512 URI; ``pin_value`` is kept out of repr()."""

    path: dict = field(default_factory=dict)      # name -> str (``id`` -> bytes)
    query: dict = field(default_factory=dict)
    text: str = ""

    @classmethod
    def parse(cls, uri: str) -> "Pkcs11Uri":
        if not uri.startswith("pkcs11:"):
            raise UsageError("a PKCS#11 key reference must start with 'pkcs11:'")
        body = uri[len("pkcs11:"):]
        path_part, _, query_part = body.partition("?")
        path: dict = {}
        for piece in filter(None, path_part.split(";")):
            name, eq, value = piece.partition("=")
            if not eq or name not in _PATH_ATTRS:
                raise UsageError(f"PKCS#11 URI: unknown or malformed path attribute {name!r}",
                                 hint="use token=…;object=…;id=%01 (RFC 7512)")
            if name in path:
                raise UsageError(f"PKCS#11 URI: attribute {name!r} given twice")
            path[name] = (urllib.parse.unquote_to_bytes(value) if name == "id"
                          else urllib.parse.unquote(value))
        query: dict = {}
        for piece in filter(None, query_part.split("&")):
            name, eq, value = piece.partition("=")
            if not eq or (name not in _QUERY_ATTRS and not name.startswith("x-")):
                raise UsageError(f"PKCS#11 URI: unknown or malformed query attribute {name!r}",
                                 hint="use pin-source=file:PATH, module-path=PATH (RFC 7512)")
            query[name] = urllib.parse.unquote(value)
        if "pin-source" in query and "pin-value" in query:
            raise UsageError("PKCS#11 URI: give pin-source or pin-value, not both")
        return cls(path, query, redact_uri(uri))

    def __repr__(self) -> str:
        return f"Pkcs11Uri({self.text!r})"


def resolve_module(uri: Pkcs11Uri) -> str:
    path = uri.query.get("module-path")
    if path:
        if not os.path.exists(path):
            raise KeyReferenceError(f"PKCS#11 module {path!r} does not exist",
                            hint="fix module-path= in the URI")
        return path
    name = uri.query.get("module-name")
    if name:
        for d in _MODULE_DIRS:
            for cand in (f"{d}/{name}.so", f"{d}/{name}", f"{d}/lib{name}.so"):
                if os.path.exists(cand):
                    return cand
        raise KeyReferenceError(f"PKCS#11 module named {name!r} not found",
                        hint="use module-path=/full/path/to/module.so")
    env = os.environ.get(ENV_MODULE)
    if env:
        if not os.path.exists(env):
            raise KeyReferenceError(f"PKCS#11 module {env!r} (from ${ENV_MODULE}) does not exist",
                            hint=f"fix ${ENV_MODULE}")
        return env
    for cand in DEFAULT_MODULES:
        if os.path.exists(cand):
            return cand
    raise KeyReferenceError("no PKCS#11 module found (SoftHSM2 is the default)",
                    hint=f"set module-path= in the URI or ${ENV_MODULE}, or apt-get install softhsm2")


def resolve_pin(uri: Pkcs11Uri) -> str | None:
    if "pin-value" in uri.query:
        return uri.query["pin-value"]
    source = uri.query.get("pin-source")
    if source:
        path = source[len("file:"):] if source.startswith("file:") else source
        if path.startswith("//"):  # file:///path
            path = path[2:]
        return fileio.read_bytes(path, what="PIN file").decode("utf-8", "replace").rstrip("\r\n")
    return os.environ.get(ENV_PIN)


_HASH_MECHS = {HashAlg.SHA256: "SHA256", HashAlg.SHA384: "SHA384", HashAlg.SHA512: "SHA512"}


class Pkcs11Signer(SignerBase):
    """A private key on a PKCS#11 token; one logged-in session for the signer's lifetime."""

    _session = None
    _owns_session = True

    def __init__(self, uri: Pkcs11Uri, *, certificate: str | None = None, _opened=None, _key=None) -> None:
        """Open the URI's token and key; ``_opened=(pkcs11, token, session)`` and ``_key`` let
        ``list_keys`` describe every key of one session without owning it."""
        self.uri = uri
        self.description = uri.text
        if _opened is None:
            self._p11, token, self._session = open_session(uri)
        else:
            (self._p11, token, self._session), self._owns_session = _opened, False
        try:
            self._key = _key if _key is not None else self._find_private_key()
            self._certificate = self._load_certificate(certificate)
            self._public = self._load_public_key()
            self._mechanisms = set(token.slot.get_mechanisms())
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_uri(cls, uri: str, *, certificate: str | None = None) -> "Pkcs11Signer":
        return cls(Pkcs11Uri.parse(uri), certificate=certificate)

    # --- lookup ---------------------------------------------------------------------------------

    def _object_filter(self) -> dict:
        """PKCS#11 attributes (CKA_LABEL, CKA_ID) selecting the URI's object."""
        out = {}
        if "object" in self.uri.path:
            out[self._p11.Attribute.LABEL] = self.uri.path["object"]
        if "id" in self.uri.path:
            out[self._p11.Attribute.ID] = self.uri.path["id"]
        return out

    def _object_desc(self) -> str:
        parts = []
        if "object" in self.uri.path:
            parts.append(f"object={self.uri.path['object']}")
        if "id" in self.uri.path:
            parts.append(f"id={self.uri.path['id'].hex()}")
        return ";".join(parts) or "(any)"

    def _find_private_key(self):
        p11 = self._p11
        objs = list(self._session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.PRIVATE_KEY,
                                               **self._object_filter()}))
        if not objs:
            raise KeyReferenceError(f"no private key {self._object_desc()} on PKCS#11 token "
                            f"{self._session.token.label!r}",
                            hint="list objects with: pkcs11-tool --module MODULE --login -O")
        if len(objs) > 1:
            raise KeyReferenceError(f"{len(objs)} private keys match {self._object_desc()} on PKCS#11 token "
                            f"{self._session.token.label!r}", hint="add object=LABEL or id=… to the URI")
        return objs[0]

    def _matching(self, object_class):
        p11 = self._p11
        attrs = {p11.Attribute.CLASS: object_class}
        key_id = self._safe_attr(self._key, p11.Attribute.ID)
        if key_id:
            attrs[p11.Attribute.ID] = key_id
        else:
            attrs.update(self._object_filter())
        return list(self._session.get_objects(attrs))

    @staticmethod
    def _safe_attr(obj, attr):
        try:
            return obj[attr]
        except Exception:  # noqa: BLE001 - attribute missing or sensitive on this token
            return None

    def _load_certificate(self, path: str | None):
        if path:
            from pcrtool.sign.keyfile import load_certificate
            return load_certificate(path)
        for obj in self._matching(self._p11.ObjectClass.CERTIFICATE):
            value = self._safe_attr(obj, self._p11.Attribute.VALUE)
            if value:
                try:
                    return x509.load_der_x509_certificate(bytes(value))
                except ValueError:
                    continue
        return None

    def _load_public_key(self):
        from cryptography.hazmat.primitives import serialization
        p11 = self._p11
        key_type = self._key.key_type
        if key_type == p11.KeyType.RSA:
            n = self._safe_attr(self._key, p11.Attribute.MODULUS)
            e = self._safe_attr(self._key, p11.Attribute.PUBLIC_EXPONENT)
            if n and e:
                public = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
                self._check_cert(public)
                return public
        elif key_type != p11.KeyType.EC:
            raise UnsupportedError(f"PKCS#11 key {self._object_desc()} is a {key_type.name} key",
                                   hint="pcrtool signs with RSA or ECDSA P-256/P-384 keys")
        for obj in self._matching(p11.ObjectClass.PUBLIC_KEY):
            try:
                if key_type == p11.KeyType.RSA:
                    der = p11.util.rsa.encode_rsa_public_key(obj)
                    public = serialization.load_der_public_key(_rsa_spki(der))
                else:
                    public = serialization.load_der_public_key(p11.util.ec.encode_ec_public_key(obj))
            except Exception:  # noqa: BLE001 - malformed public object: try the certificate
                continue
            self._check_cert(public)
            return public
        if self._certificate is not None:
            return self._certificate.public_key()
        raise KeyReferenceError(f"the public half of PKCS#11 key {self._object_desc()} is not on the token",
                        hint="store the public key or certificate with the same id, or pass --certificate")

    def _check_cert(self, public) -> None:
        if self._certificate is not None:
            from pcrtool.sign.keyfile import check_certificate_matches
            check_certificate_matches(self._certificate, public, self._object_desc())

    # --- Signer ---------------------------------------------------------------------------------

    def public_key(self):
        return self._public

    def certificate(self):
        return self._certificate

    @property
    def prehashed_only(self) -> bool:
        """True when signing hashes on the host: forced by ``x-prehashed=yes``, or the token
        lacks CKM_SHA256_RSA_PKCS (checked per hash when signing)."""
        return self._forced_prehash or self._p11.Mechanism.SHA256_RSA_PKCS not in self._mechanisms

    @property
    def _forced_prehash(self) -> bool:
        return self.uri.query.get("x-prehashed", "").lower() in ("1", "yes", "true")

    def _token_hashes(self, mechanism_name: str) -> bool:
        return not self._forced_prehash and getattr(self._p11.Mechanism, mechanism_name) in self._mechanisms

    def _sign(self, data: bytes, hash_alg: HashAlg, padding: Padding) -> bytes:
        """PKCS#11 v2.40 §2.1.6 (CKM_RSA_PKCS), §2.1.7-8 (PSS), §2.3.6 (CKM_ECDSA: raw r||s)."""
        p11 = self._p11
        M = p11.Mechanism
        if hash_alg not in _HASH_MECHS:
            raise UnsupportedError(f"PKCS#11 signing with {hash_alg.bank_name} is not supported",
                                   hint="use sha256, sha384 or sha512")
        h = _HASH_MECHS[hash_alg]
        digest = hash_alg.digest(data)
        try:
            if self.key_type is KeyType.EC:
                raw = self._key.sign(digest, mechanism=M.ECDSA)
                half = len(raw) // 2
                return encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                            int.from_bytes(raw[half:], "big"))
            if padding is Padding.PSS:
                param = (getattr(M, h), getattr(p11.MGF, h), hash_alg.digest_size)
                if self._token_hashes(f"{h}_RSA_PKCS_PSS"):
                    return self._key.sign(data, mechanism=getattr(M, f"{h}_RSA_PKCS_PSS"),
                                          mechanism_param=param)
                return self._key.sign(digest, mechanism=M.RSA_PKCS_PSS, mechanism_param=param)
            if self._token_hashes(f"{h}_RSA_PKCS"):
                return self._key.sign(data, mechanism=getattr(M, f"{h}_RSA_PKCS"))
            return self._key.sign(digest_info(hash_alg, digest), mechanism=M.RSA_PKCS)
        except p11.exceptions.PKCS11Error as e:
            raise KeyReferenceError(f"PKCS#11 token refused to sign with key {self._object_desc()}: "
                            f"{type(e).__name__}",
                            hint="the key may lack CKA_SIGN or the token the mechanism; "
                                 "try ?x-prehashed=yes") from None

    def close(self) -> None:
        if self._session is not None and self._owns_session:
            try:
                self._session.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._session = None

    def __del__(self) -> None:
        self.close()


def open_session(uri: Pkcs11Uri):
    """Load the module, find the one matching token, log in: ``(pkcs11, token, session)``."""
    try:
        import pkcs11
        from pkcs11 import exceptions as p11e
    except ImportError:
        raise KeyReferenceError("PKCS#11 keys need the python-pkcs11 package",
                        hint="pip install 'pcrtool[pkcs11]'") from None
    module = resolve_module(uri)
    try:
        lib = pkcs11.lib(module)
    except p11e.PKCS11Error:
        raise KeyReferenceError(f"cannot load PKCS#11 module {module!r}",
                        hint="is it a PKCS#11 shared library?") from None
    token = _find_token(lib, uri, p11e)
    pin = resolve_pin(uri)
    name = token.label
    if pin is None and token.flags & pkcs11.TokenFlag.LOGIN_REQUIRED \
            and not token.flags & pkcs11.TokenFlag.PROTECTED_AUTHENTICATION_PATH:
        raise KeyReferenceError(f"PKCS#11 token {name!r} needs a PIN",
                        hint=f"add ?pin-source=file:PATH to the URI or set ${ENV_PIN}")
    try:
        try:
            session = token.open(user_pin=pin) if pin is not None else token.open()
        except p11e.UserAlreadyLoggedIn:
            # PKCS#11 login state is per application and token: another signer of this
            # process is logged in already, so this session shares that login.
            session = token.open()
    except (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange):
        raise KeyReferenceError(f"PKCS#11 login to token {name!r} failed: wrong PIN",
                        hint="check the PIN source (repeated failures may lock the token)") from None
    except p11e.PinLocked:
        raise KeyReferenceError(f"PKCS#11 token {name!r} is locked (too many wrong PINs)",
                        hint="unlock it with the SO PIN") from None
    except p11e.PKCS11Error as e:
        raise KeyReferenceError(f"cannot open a session on PKCS#11 token {name!r}: {type(e).__name__}") from None
    return pkcs11, token, session


def _find_token(lib, uri: Pkcs11Uri, p11e):
    path = uri.path
    kwargs = {}
    if "token" in path:
        kwargs["token_label"] = path["token"]
    if "serial" in path:
        kwargs["token_serial"] = path["serial"].encode()
    try:
        tokens = [t for t in lib.get_tokens(**kwargs)
                  if ("manufacturer" not in path or t.manufacturer_id == path["manufacturer"])
                  and ("model" not in path or t.model == path["model"])]
    except p11e.PKCS11Error as e:
        raise KeyReferenceError(f"cannot list PKCS#11 tokens: {type(e).__name__}") from None
    what = ", ".join(f"{k}={v}" for k, v in path.items()
                     if k in ("token", "serial", "manufacturer", "model")) or "any"
    if not tokens:
        raise KeyReferenceError(f"no PKCS#11 token matches {what}",
                        hint="list tokens with: pkcs11-tool --module MODULE -L")
    if len(tokens) > 1:
        raise KeyReferenceError(f"{len(tokens)} PKCS#11 tokens match {what}",
                        hint="add token=LABEL or serial=… to the URI")
    return tokens[0]


def list_keys(uri: "str | Pkcs11Uri") -> list[dict]:
    """Every private key on the URI's token: label, id, type, fingerprint, certificate subject,
    and the URI that selects it (``object``/``id`` of the given URI are ignored)."""
    from urllib.parse import quote

    from pcrtool.errors import PcrtoolError
    from pcrtool.sign.api import certificate_fingerprint

    if isinstance(uri, str):
        uri = Pkcs11Uri.parse(uri)
    p11, token, session = open_session(uri)
    out = []
    try:
        keys = list(session.get_objects({p11.Attribute.CLASS: p11.ObjectClass.PRIVATE_KEY}))
        for key in keys:
            label = Pkcs11Signer._safe_attr(key, p11.Attribute.LABEL) or ""
            key_id = bytes(Pkcs11Signer._safe_attr(key, p11.Attribute.ID) or b"")
            path = {k: v for k, v in uri.path.items() if k not in ("object", "id", "type")}
            path |= ({"object": label} if label else {}) | ({"id": key_id} if key_id else {})
            base = ";".join(f"{k}={quote(v, safe='')}" if k != "id" else "id=" + "".join(f"%{b:02x}" for b in v)
                            for k, v in path.items())
            entry = {"label": label, "id": key_id.hex(), "uri": f"pkcs11:{base}"}
            try:
                signer = Pkcs11Signer(Pkcs11Uri(path, {}, f"pkcs11:{base}"), _opened=(p11, token, session),
                                      _key=key)
                entry |= {"type": signer.label, "fingerprint": signer.fingerprint()}
                cert = signer.certificate()
                if cert is not None:
                    entry |= {"certificate": cert.subject.rfc4514_string(),
                              "certificate_fingerprint": certificate_fingerprint(cert)}
            except PcrtoolError as e:
                entry["error"] = e.message
            out.append(entry)
    finally:
        session.close()
    return sorted(out, key=lambda e: (e["label"], e["id"]))


def _rsa_spki(pkcs1_der: bytes) -> bytes:
    """Wrap a PKCS#1 RSAPublicKey into a SubjectPublicKeyInfo (RFC 3279 §2.3.1)."""
    from asn1crypto import keys
    return keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"},
                               "public_key": keys.RSAPublicKey.load(pkcs1_der)}).dump()

