"""Offline (two-phase) signing: one request/response format for every pcrtool signer.

Phase 1 (build host) writes a request: the exact bytes to sign, one file per item ("tbs"), plus
a JSON manifest (format version 2, snake_case keys throughout; ``pcrtool.sign.request.versions``)::

    {"format": "pcrtool-sign-request/2", "kind": "authenticode" | "verity-roothash" | "pcr-policy",
     "tbs": [{"file": "uki.sattrs.der", "sha256": "<hex>", "size": 402, "label": "…",
              "context": {…kind-specific, what the signing host recomputes…}}, …],
     "hash": "sha256", "padding": "pkcs1v15",
     "key": {"fingerprint": "<sha256 of SPKI DER>", "type": "rsa2048"},      (optional)
     "inputs": {"<name>": "<sha256 hex>"}, "extra": {…kind-specific…}, "created_by": "pcrtool …"}

Version-1 requests (``{"pcrtool-sign-request": 1, …}``, the same fields in kebab-case) are still
read, verified and answered as before (a version-1 response); nothing writes them any more.

Every tbs file is signed as it is — RSASSA-PKCS1-v1_5 (or PSS) / ECDSA over SHA-256 of the file —
so any signer works: ``openssl dgst -sha256 -sign KEY -out F.sig F``,
``pkcs11-tool --sign -m SHA256-RSA-PKCS -i F -o F.sig``, a KMS, or
``pcrtool sign-request sign REQ --key …`` on the air-gapped host. The tbs files keep the formats
systemd uses offline: sbsign's DER signed-attributes SET, the lowercase hex root hash without a
newline, the raw ``pol`` (or ``tbs``) bytes of a ``.pcrsig`` entry.

The signing host (``pcrtool sign-request show|sign``) decodes every item against its ``context``
(``pcrtool.sign.request.decode``): verity ``{"root_hash_algorithm": "sha256"}``; authenticode
``{"spc_indirect_data": "<base64 DER>"}``; pcr-policy ``{"bank": "sha256", "pcrs": {"11": "<hex>"},
"ref": "…"|null}``. Every bound is in ``pcrtool.sign.request.limits``.

Phase 2 (response), either:
  - one raw signature per item, by default ``<tbs file>.sig`` next to the tbs file; or
  - a JSON response ``{"format": "pcrtool-sign-response/2", "kind": …, "key": {…}, "certificate": b64?,
    "signatures": [{"label": …, "sha256": <tbs sha256>, "signature": "<base64>"}], "created_by": …}``
    (version 1, ``{"pcrtool-sign-response": 1, …, "created-by": …}``, answers a version-1 request).
Attach commands call ``read_request`` + ``read_signatures`` + ``check_signatures`` and refuse
signatures by another key, over other bytes, or for a changed request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Mapping, Sequence

from pcrtool import fileio
from pcrtool.errors import FormatError, KeyReferenceError, MismatchError, SignatureError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign.api import (KeyType, Padding, SignerBase, describe_public_key,
                              ecdsa_signature_to_der, key_label, public_key_fingerprint, require_key,
                              verify_signature)
from pcrtool.sign.request import limits, versions
from pcrtool.sign.request.limits import quote
from pcrtool.sign.request.versions import WRITE_VERSION

REQUEST_FORMAT = versions.REQUEST
RESPONSE_FORMAT = versions.RESPONSE
SIGNATURE_SUFFIX = ".sig"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class RequestKind(StrEnum):
    AUTHENTICODE = "authenticode"
    VERITY_ROOTHASH = "verity-roothash"
    PCR_POLICY = "pcr-policy"


# What the consumer of each kind can verify (refused otherwise, with the reason):
#  - pcr-policy: systemd/TPM2_VerifySignature with RSASSA + SHA-256 only (systemd-reference §1.6);
#  - authenticode: UEFI firmware (EDK2 Pkcs7Verify) checks RSA PKCS#1 v1.5 signatures;
#  - verity-roothash: the kernel's PKCS#7 verifier takes RSA PKCS#1 v1.5 and ECDSA.
_CONSUMERS = {
    RequestKind.PCR_POLICY: ("systemd signed PCR policy (TPM2 PolicyAuthorize)", (KeyType.RSA,),
                             (HashAlg.SHA256,)),
    RequestKind.AUTHENTICODE: ("UEFI Authenticode verification", (KeyType.RSA,),
                               (HashAlg.SHA256, HashAlg.SHA384)),
    RequestKind.VERITY_ROOTHASH: ("dm-verity root-hash PKCS#7 (kernel)", (KeyType.RSA, KeyType.EC),
                                  (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)),
}


class SignatureRequired(UsageError):
    """The key reference is ``offline``: write a signing request instead of signing here."""


@dataclass(frozen=True, slots=True)
class TbsItem:
    """One byte string to sign: a file next to the manifest, its SHA-256 and a label."""

    file: str
    sha256: str
    label: str
    size: int | None = None
    context: Mapping[str, object] | None = None   # what the signing host recomputes (see module doc)

    def to_json(self) -> dict:
        out: dict = {"file": self.file, "sha256": self.sha256, "label": self.label}
        if self.size is not None:
            out["size"] = self.size
        if self.context is not None:
            out["context"] = dict(self.context)
        return out


@dataclass(frozen=True, slots=True)
class KeyInfo:
    fingerprint: str
    type: str | None = None

    @classmethod
    def of(cls, public_key) -> "KeyInfo":
        kt, size = describe_public_key(public_key)
        return cls(public_key_fingerprint(public_key), key_label(kt, size))

    def to_json(self) -> dict:
        return {"fingerprint": self.fingerprint} | ({"type": self.type} if self.type else {})


@dataclass(frozen=True, slots=True)
class SignRequest:
    kind: RequestKind
    items: tuple[TbsItem, ...]
    hash_alg: HashAlg = HashAlg.SHA256
    padding: Padding = Padding.PKCS1V15
    key: KeyInfo | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)
    created_by: str | None = None
    version: int = WRITE_VERSION     # the format version read (1: kebab-case keys) or written

    def item(self, which: "int | str") -> tuple[int, TbsItem]:
        """An item by index or label."""
        if isinstance(which, int):
            if not 0 <= which < len(self.items):
                raise UsageError(f"request has {len(self.items)} item(s), no item {which}")
            return which, self.items[which]
        for i, it in enumerate(self.items):
            if it.label == which:
                return i, it
        raise UsageError(f"request has no item labelled {quote(which)}")

    def to_json(self) -> dict:
        out: dict = versions.header(REQUEST_FORMAT, self.version) | {"kind": self.kind.value,
                     "tbs": [it.to_json() for it in self.items],
                     "hash": self.hash_alg.bank_name, "padding": self.padding.value}
        if self.key is not None:
            out["key"] = self.key.to_json()
        out["inputs"] = dict(self.inputs)
        out["extra"] = dict(self.extra)
        if self.created_by:
            out[versions.key("created_by", self.version)] = self.created_by
        return out

    def consumer_check(self, public_key) -> None:
        """Refuse a key (or hash) that the consumer of this kind cannot verify."""
        consumer, key_types, hashes_ok = _CONSUMERS[self.kind]
        if self.hash_alg not in hashes_ok:
            raise FormatError(f"{consumer} cannot use {self.hash_alg.bank_name} signatures",
                              hint=f"use {hashes_ok[0].bank_name}")
        # PSS is refused for every kind: none of the consumers above is known to verify it.
        require_key(public_key, consumer=consumer, key_types=key_types, padding=self.padding,
                    paddings=(Padding.PKCS1V15,))


def _created_by() -> str:
    from pcrtool import __version__
    return f"pcrtool {__version__}"


def new_request(kind: "RequestKind | str", tbs: Sequence[tuple], *,
                hash_alg: HashAlg = HashAlg.SHA256, padding: Padding = Padding.PKCS1V15,
                key=None, inputs: Mapping[str, str] | None = None,
                extra: Mapping[str, object] | None = None) -> tuple[SignRequest, list[bytes]]:
    """Build a request from ``(label, file name, bytes[, context])`` tuples.

    ``key`` may be a Signer, a public key, a certificate or a ``KeyInfo`` (or None: any key).
    The keys of each context and of ``extra`` are written in the format's one style, snake_case
    (a caller's ``rootHash`` or ``image-digest`` becomes ``root_hash``, ``image_digest``).
    """
    kind = RequestKind(kind)
    if not tbs:
        raise UsageError("a signing request needs at least one item to sign")
    items, blobs, seen = [], [], set()
    for entry in tbs:
        label, name, data = entry[:3]
        context = entry[3] if len(entry) > 3 else None
        _check_relative_name(name, "tbs file")
        if name in seen:
            raise UsageError(f"two request items use the file name {quote(name)}")
        seen.add(name)
        data = bytes(data)
        items.append(TbsItem(name, hashlib.sha256(data).hexdigest(), label, len(data),
                             None if context is None else _snake_keys(context, "context")))
        blobs.append(data)
    _check_output_names([it.file for it in items], "tbs file")
    request = SignRequest(kind, tuple(items), hash_alg, Padding(padding), _key_info(key),
                          dict(inputs or {}), _snake_keys(extra or {}, "extra"), _created_by())
    return request, blobs


def _snake_keys(obj: Mapping[str, object], what: str) -> dict:
    out: dict = {}
    for k, v in obj.items():
        name = versions.snake_key(k)
        if name in out:
            raise UsageError(f"request {what} has two keys for {quote(name)}")
        out[name] = v
    return out


def _key_info(key) -> KeyInfo | None:
    if key is None or isinstance(key, KeyInfo):
        return key
    if isinstance(key, SignerBase):
        return KeyInfo.of(key.public_key())
    if hasattr(key, "public_key") and hasattr(key, "fingerprint") and hasattr(key, "subject"):
        return KeyInfo.of(key.public_key())  # x509 certificate
    return KeyInfo.of(key)


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_+=,@%-][A-Za-z0-9._+=,@%-]*$")


def _check_relative_name(name: str, what: str) -> None:
    """A plain file name in the request's directory: no directory part (so no directory symlink
    can lead outside it), no leading dot, printable ASCII only, bounded."""
    if not _PLAIN_NAME.match(name) or len(name) > limits.MAX_FILE_NAME_CHARS:
        raise FormatError(f"{what} {quote(name)} must be a plain file name in the request's directory "
                          f"(letters, digits, ._+=,@%-, at most {limits.MAX_FILE_NAME_CHARS} characters, "
                          "no leading dot)", hint="requests reference their files by plain name only")


def _check_output_names(names: Sequence[str], what: str, manifest: str | None = None) -> None:
    """No item's signature file ``<name>.sig`` may be another item's file (or the manifest)."""
    taken = set(names) | ({manifest} if manifest else set())
    for name in names:
        if name + SIGNATURE_SUFFIX in taken:
            raise FormatError(f"{what} {quote(name)}: its signature {quote(name + SIGNATURE_SUFFIX)} would "
                              "overwrite another file of the request",
                              hint="item file names must not end in another item's name + .sig")


def default_tbs_name(request_path: "str | Path", suffix: str) -> str:
    """``out/uki.sign-request.json`` + ``sattrs.der`` → ``uki.sattrs.der``."""
    name = Path(request_path).name
    for ending in (".sign-request.json", ".json"):
        if name.endswith(ending):
            name = name[: -len(ending)]
            break
    return f"{name}.{suffix}"


def write_request(path: "str | Path", request: SignRequest, tbs_blobs: Sequence[bytes]) -> Path:
    """Write the tbs files (next to ``path``) and then the manifest, each atomically."""
    path = Path(path)
    if len(tbs_blobs) != len(request.items):
        raise UsageError(f"request has {len(request.items)} item(s) but {len(tbs_blobs)} blob(s)")
    for it, blob in zip(request.items, tbs_blobs):
        if hashlib.sha256(blob).hexdigest() != it.sha256:
            raise UsageError(f"blob for request item {it.label!r} does not match its sha256")
    base = path.parent
    for it, blob in zip(request.items, tbs_blobs):
        fileio.write_atomic(base / it.file, blob, what="bytes-to-sign file")
    fileio.write_atomic(path, json.dumps(request.to_json(), indent=2) + "\n", what="signing request")
    return path


# --- reading and validating requests ------------------------------------------------------------

#: Version 2's fields (every other top-level or ``key`` field is refused; version 1 ignores them).
_REQUEST_FIELDS_V2 = {versions.FORMAT_FIELD, "kind", "tbs", "hash", "padding", "key", "inputs", "extra", "created_by"}


def parse_request(untrusted_text: "str | bytes", *, source: str = "signing request") -> SignRequest:
    """Validate a manifest (every byte of it is the build host's) field by field; every problem is
    one FormatError naming the field. Reads format versions 1 and 2 (``sign.request.versions``)."""
    data = limits.load_json(untrusted_text, source=source)
    version = versions.version_of(data, REQUEST_FORMAT, source=source, what="pcrtool signing request",
                                  hint="pass the .json manifest written by a 'prepare' command")

    def fail(fld: str, problem: str):
        raise FormatError(f"{source}: field {fld!r} {problem}")

    if version >= 2:
        unknown = set(data) - _REQUEST_FIELDS_V2
        if unknown:
            fail(sorted(unknown)[0][:80], "is not a field of a version-2 request (keys are snake_case)")

    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in {k.value for k in RequestKind}:
        fail("kind", f"must be one of {', '.join(k.value for k in RequestKind)}, not {quote(str(kind))}")
    hash_name = data.get("hash", "sha256")
    if not isinstance(hash_name, str) or hash_name.lower() not in ("sha256", "sha384", "sha512"):
        fail("hash", f"must be sha256, sha384 or sha512, not {quote(str(hash_name))}")
    pad = data.get("padding", "pkcs1v15")
    if not isinstance(pad, str) or pad not in {p.value for p in Padding}:
        fail("padding", f"must be pkcs1v15 or pss, not {quote(str(pad))}")
    tbs = data.get("tbs")
    if not isinstance(tbs, list) or not tbs:
        fail("tbs", "must be a non-empty list")
    if len(tbs) > limits.MAX_ITEMS:
        fail("tbs", f"has {len(tbs)} items; a request has at most {limits.MAX_ITEMS}")
    items, names = [], set()
    for i, raw in enumerate(tbs):
        fld = f"tbs[{i}]"
        if not isinstance(raw, dict):
            fail(fld, "must be an object")
        name = raw.get("file")
        if not isinstance(name, str):
            fail(f"{fld}.file", "must be a string")
        _check_relative_name(name, f"{source}: {fld}.file")
        if name in names:
            fail(f"{fld}.file", f"repeats {quote(name)}")
        names.add(name)
        digest = raw.get("sha256")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            fail(f"{fld}.sha256", "must be 64 lowercase hex digits")
        label = raw.get("label", name)
        if not isinstance(label, str) or len(label) > limits.MAX_LABEL_CHARS:
            fail(f"{fld}.label", f"must be a string of at most {limits.MAX_LABEL_CHARS} characters")
        size = raw.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            fail(f"{fld}.size", "must be a non-negative integer")
        context = raw.get("context")
        if context is not None and not isinstance(context, dict):
            fail(f"{fld}.context", "must be an object")
        extra_fields = set(raw) - {"file", "sha256", "label", "size", "context"}
        if extra_fields:
            fail(fld, f"has unknown fields {', '.join(sorted(map(quote, extra_fields)))}")
        items.append(TbsItem(name, digest, label, size, context))
    if len({it.label for it in items}) != len(items):
        fail("tbs", "repeats a label")
    _check_output_names([it.file for it in items], f"{source}: tbs file")
    key = None
    if data.get("key") is not None:
        k = data["key"]
        if not isinstance(k, dict) or not isinstance(k.get("fingerprint"), str) \
                or not _HEX64.match(k["fingerprint"]):
            fail("key.fingerprint", "must be 64 lowercase hex digits (SHA-256 of the SPKI DER)")
        if k.get("type") is not None and not isinstance(k["type"], str):
            fail("key.type", "must be a string")
        if version >= 2 and set(k) - {"fingerprint", "type"}:
            fail("key", "has fields other than fingerprint and type")
        key = KeyInfo(k["fingerprint"], k.get("type"))
    inputs = data.get("inputs", {})
    if not isinstance(inputs, dict) or not all(isinstance(v, str) for v in inputs.values()):
        fail("inputs", "must map names to hex digests")
    extra = data.get("extra", {})
    if not isinstance(extra, dict):
        fail("extra", "must be an object")
    created_field = versions.key("created_by", version)
    created = data.get(created_field)
    if isinstance(created, str) and len(created) > limits.MAX_LABEL_CHARS:
        fail(created_field, f"is longer than {limits.MAX_LABEL_CHARS} characters")
    if version >= 2 and created is not None and not isinstance(created, str):
        fail(created_field, "must be a string")
    return SignRequest(RequestKind(kind), tuple(items), HashAlg.from_name(hash_name), Padding(pad),
                       key, inputs, extra, created if isinstance(created, str) else None, version)


def read_request(path: "str | Path") -> tuple[SignRequest, list[bytes]]:
    """Read a manifest and its tbs files once each (regular files in the manifest's directory only,
    bounded per kind), refusing any file whose bytes changed."""
    from pcrtool.sign.host_files import RequestDir

    path = Path(path)
    with RequestDir(path) as rd:
        untrusted_manifest = rd.read(rd.manifest_name, limits.MAX_MANIFEST_BYTES, what="signing request")
        request = parse_request(untrusted_manifest, source=quote(str(path)))
        if any(it.file == rd.manifest_name for it in request.items):
            raise FormatError(f"{quote(str(path))}: a tbs file is the manifest itself")
        _check_output_names([it.file for it in request.items], "tbs file", rd.manifest_name)
        limit = limits.MAX_TBS_BYTES[request.kind.value]
        blobs = []
        for i, it in enumerate(request.items):
            blob = rd.read(it.file, limit, what=f"bytes-to-sign file tbs[{i}]")
            if hashlib.sha256(blob).hexdigest() != it.sha256:
                # Never echo the file's digest: a refused file may be a secret the request points at.
                raise MismatchError(f"{quote(str(path))}: tbs[{i}] file {quote(it.file)} does not match the "
                                    "sha256 the request records: the bytes to sign were changed",
                                    hint="prepare the request again; never edit its files")
            if it.size is not None and it.size != len(blob):
                raise MismatchError(f"{quote(str(path))}: tbs[{i}] file {quote(it.file)} has {len(blob)} bytes, "
                                    f"the request says {it.size}")
            blobs.append(blob)
    return request, blobs


# --- signatures -----------------------------------------------------------------------------------

def check_signature(request: SignRequest, signature: bytes, public_key, *,
                    item: "int | str" = 0, tbs: bytes | None = None) -> None:
    """Refuse a signature for request item ``item`` that another key made, or that covers other
    bytes, or a public key other than the one the request names (all SignatureError).

    With ``tbs`` the given bytes must be the request's bytes; without it the check uses the
    request's recorded SHA-256 (possible because the signature hash is SHA-256 then).
    """
    index, it = request.item(item)
    fp = public_key_fingerprint(public_key)
    if request.key is not None and request.key.fingerprint != fp:
        raise SignatureError(f"the request was prepared for key {request.key.fingerprint}, "
                             f"the signature is checked with key {fp}",
                             hint="attach with the certificate/public key the request names")
    what = f"signature for tbs[{index}] ({quote(it.label)})"
    if tbs is not None:
        if hashlib.sha256(tbs).hexdigest() != it.sha256:
            raise SignatureError(f"{what}: the bytes given are not the request's bytes",
                                 hint="the signed data changed since the request was written")
        verify_signature(public_key, tbs, signature, request.hash_alg, request.padding, what=what)
        return
    if request.hash_alg is not HashAlg.SHA256:
        raise UsageError(f"{what}: checking a {request.hash_alg.bank_name} signature needs the tbs bytes")
    verify_signature(public_key, bytes.fromhex(it.sha256), signature, request.hash_alg,
                     request.padding, prehashed=True, what=what)


def check_signatures(request: SignRequest, signatures: Sequence[bytes], public_key,
                     tbs_blobs: Sequence[bytes] | None = None) -> None:
    if len(signatures) != len(request.items):
        raise SignatureError(f"{len(signatures)} signature(s) for {len(request.items)} request item(s)")
    for i, sig in enumerate(signatures):
        check_signature(request, sig, public_key, item=i,
                        tbs=None if tbs_blobs is None else tbs_blobs[i])


@dataclass(frozen=True, slots=True)
class SignResponse:
    kind: RequestKind
    key: KeyInfo
    signatures: tuple[tuple[TbsItem, bytes], ...]
    certificate_der: bytes | None = None
    version: int = WRITE_VERSION     # the request's: a version-1 request gets a version-1 answer

    def to_json(self) -> dict:
        out: dict = versions.header(RESPONSE_FORMAT, self.version) | {"kind": self.kind.value,
                                                                       "key": self.key.to_json()}
        if self.certificate_der is not None:
            out["certificate"] = base64.b64encode(self.certificate_der).decode()
        out["signatures"] = [{"label": it.label, "file": it.file, "sha256": it.sha256,
                              "signature": base64.b64encode(sig).decode()}
                             for it, sig in self.signatures]
        out[versions.key("created_by", self.version)] = _created_by()
        return out


def sign_request(request: SignRequest, tbs_blobs: Sequence[bytes], signer: SignerBase) -> SignResponse:
    """Sign every item with ``signer`` (the air-gapped side) and check each signature."""
    if signer.is_offline:
        raise UsageError("cannot answer a signing request with the 'offline' key reference",
                         hint="give --key file:… or a pkcs11: URI")
    public_key = signer.public_key()
    fp = public_key_fingerprint(public_key)
    if request.key is not None and request.key.fingerprint != fp:
        raise KeyReferenceError(f"the request asks for key {request.key.fingerprint}, "
                        f"{signer.description} is key {fp}",
                        hint="use the key the request names (pcrtool key fingerprint KEY)")
    request.consumer_check(public_key)
    out = []
    for i, (it, blob) in enumerate(zip(request.items, tbs_blobs)):
        if hashlib.sha256(blob).hexdigest() != it.sha256:
            raise MismatchError(f"tbs[{i}] ({quote(it.label)}) does not match the request's sha256")
        sig = signer.sign(blob, request.hash_alg, request.padding)
        check_signature(request, sig, public_key, item=i, tbs=blob)
        out.append((it, sig))
    cert = signer.certificate()
    cert_der = None
    if cert is not None:
        from cryptography.hazmat.primitives.serialization import Encoding
        cert_der = cert.public_bytes(Encoding.DER)
    return SignResponse(request.kind, KeyInfo.of(public_key), tuple(out), cert_der, request.version)


def write_response(path: "str | Path", response: SignResponse, outputs=None) -> list[Path]:
    """The JSON response; with ``outputs`` (a ``host_files.OutputSet``) only staged, else written."""
    return _write([(Path(path), (json.dumps(response.to_json(), indent=2) + "\n").encode(),
                    "signing response")], outputs)


def write_raw_signatures(request_path: "str | Path", response: SignResponse, outputs=None) -> list[Path]:
    """One raw signature per item, ``<tbs file>.sig`` next to the tbs file: all or none."""
    base = Path(request_path).parent
    _check_output_names([it.file for it, _ in response.signatures], "tbs file", Path(request_path).name)
    return _write([(base / (it.file + SIGNATURE_SUFFIX), sig, "signature") for it, sig in response.signatures],
                  outputs)


def _write(files: list[tuple[Path, bytes, str]], outputs) -> list[Path]:
    from pcrtool.sign.host_files import OutputSet

    own = outputs is None
    outputs = OutputSet() if own else outputs
    with outputs:
        for p, data, what in files:
            outputs.add(p, data, what=what)
        if own:
            outputs.commit()
    return [p for p, _, _ in files]


def parse_response(untrusted_text: str | bytes, request: SignRequest, *, source: str = "signing response"
                   ) -> tuple[list[bytes], bytes | None]:
    """Signatures (in request order) and the certificate DER (if any) of a JSON response (format
    version 1 or 2, whichever the request has); every signature is still checked by the caller.
    Read with the same bounded, strict JSON loader as requests (size, depth, no repeated keys)."""
    data = limits.load_json(untrusted_text, source=source, max_bytes=limits.MAX_RESPONSE_BYTES)
    versions.version_of(data, RESPONSE_FORMAT, source=source, what="pcrtool signing response",
                        hint="pass the JSON response 'pcrtool sign-request sign -o' wrote, or a raw signature")
    if data.get("kind") != request.kind.value:
        raise MismatchError(f"{source} answers a {data.get('kind')!r} request, not {request.kind.value!r}")
    entries = data.get("signatures")
    if not isinstance(entries, list):
        raise FormatError(f"{source}: field 'signatures' must be a list")
    by_sha: dict[str, bytes] = {}
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not isinstance(e.get("sha256"), str) \
                or not isinstance(e.get("signature"), str):
            raise FormatError(f"{source}: signatures[{i}] needs 'sha256' and base64 'signature'")
        try:
            by_sha[e["sha256"]] = base64.b64decode(e["signature"], validate=True)
        except binascii.Error:
            raise FormatError(f"{source}: signatures[{i}].signature is not base64") from None
    sigs = []
    for i, it in enumerate(request.items):
        if it.sha256 not in by_sha:
            raise MismatchError(f"{source} has no signature for tbs[{i}] ({quote(it.label)}) with sha256 "
                                f"{it.sha256}", hint="was it made for another request?")
        sigs.append(by_sha[it.sha256])
    cert = None
    if isinstance(data.get("certificate"), str):
        try:
            cert = base64.b64decode(data["certificate"], validate=True)
        except binascii.Error:
            raise FormatError(f"{source}: field 'certificate' is not base64") from None
    return sigs, cert


def read_signatures(request_path: "str | Path", request: SignRequest,
                    response: "str | Path | None" = None) -> list[bytes]:
    """The signatures answering a request, in item order.

    ``response`` may be a JSON response or (for a one-item request) a raw signature file; without
    it each item's raw signature is read from ``<tbs file>.sig`` next to the request. For a request
    naming an EC key, raw r||s signatures (``pkcs11-tool --sign -m ECDSA``) are converted to DER.
    """
    if response is None:
        base = Path(request_path).parent
        sigs = [fileio.read_bytes(base / (it.file + SIGNATURE_SUFFIX), what=f"signature for {quote(it.label)}")
                for it in request.items]
    else:
        data = fileio.read_bytes(response, what="signing response")
        if _is_json_response(data):
            sigs = parse_response(data, request, source=str(response))[0]
        elif len(request.items) != 1:
            raise UsageError(f"{response} is a raw signature but the request has {len(request.items)} items",
                             hint="give a JSON response, or one <tbs file>.sig per item next to the request")
        else:
            sigs = [data]
    key_type = request.key.type if request.key is not None else None
    if key_type in ("ec256", "ec384"):
        sigs = [ecdsa_signature_to_der(s, int(key_type[2:])) for s in sigs]
    return sigs


def _is_json_response(data: bytes) -> bool:
    """A JSON response, not a raw signature that happens to start with 0x7B ('{')?

    One raw RSA signature in 256 starts with that byte, so the first byte alone cannot decide:
    a response is UTF-8 JSON naming the response format; anything else is a raw signature.
    """
    if not data.lstrip().startswith(b"{"):
        return False
    try:
        doc = limits.load_json(data, source="signing response", max_bytes=limits.MAX_RESPONSE_BYTES)
    except FormatError:
        return False
    return versions.is_document(doc, RESPONSE_FORMAT)


# --- the offline placeholder signer --------------------------------------------------------------

class OfflineSigner(SignerBase):
    """The ``offline`` key reference: knows the public key (from a certificate or public-key file)
    so requests can name it, but never signs."""

    is_offline = True
    description = "offline"

    def __init__(self, public_key=None, certificate=None) -> None:
        self._public_key = public_key if public_key is not None else (
            certificate.public_key() if certificate is not None else None)
        self._certificate = certificate

    @classmethod
    def from_certificate(cls, path: str | None) -> "OfflineSigner":
        if not path:
            return cls()
        from pcrtool.sign.keyfile import load_certificate_bytes, load_public_key_file
        data = fileio.read_bytes(path, what="certificate")
        if b"CERTIFICATE" in data or not data.startswith(b"-----"):
            try:
                return cls(certificate=load_certificate_bytes(data, name=path))
            except KeyReferenceError:
                pass
        return cls(public_key=load_public_key_file(path))

    def public_key(self):
        if self._public_key is None:
            raise KeyReferenceError("offline signing needs the public key or certificate of the signing key",
                            hint="pass --certificate CERT (or a public key PEM)")
        return self._public_key

    def certificate(self):
        return self._certificate

    def _sign(self, data: bytes, hash_alg: HashAlg, padding: Padding) -> bytes:
        raise SignatureRequired("the key is offline: no signature can be made here",
                                hint="write a signing request (prepare) and sign it on the signing host")


# --- the signing host's decoded summary -----------------------------------------------------------

def summarize_request(request: SignRequest, tbs_blobs: Sequence[bytes], key_fingerprint: str | None, *,
                      image_digest: bytes | None = None):
    """Decode every item (refusing any that is not of its kind's shape or disagrees with its context)
    into the canonical ``Summary`` that ``sign-request show`` prints and ``sign --expect`` pins."""
    from pcrtool.sign.request.decode import decode_item
    from pcrtool.sign.request.summary import ItemView, Summary

    if request.key is not None and key_fingerprint is not None and request.key.fingerprint != key_fingerprint:
        raise KeyReferenceError(f"the request asks for key {request.key.fingerprint}, the key given is {key_fingerprint}",
                        hint="use the key the request names (pcrtool key fingerprint KEY)")
    if key_fingerprint is None and request.key is not None:
        key_fingerprint = request.key.fingerprint
    views = []
    for i, (it, blob) in enumerate(zip(request.items, tbs_blobs)):
        decoded = decode_item(request.kind.value, blob, it.context, signature_hash=request.hash_alg,
                              image_digest=image_digest, where=f"tbs[{i}] ({quote(it.file)})",
                              version=request.version)
        views.append(ItemView(i, it.file, len(blob), hashlib.sha256(blob).hexdigest(), it.label, decoded))
    return Summary(request.kind.value, request.hash_alg.bank_name, request.padding.value, key_fingerprint,
                   tuple(views), request.created_by, request.version)
