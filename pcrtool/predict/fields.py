"""Field validation shared by release manifests, allowlists and predictions files (internal).

Every check raises :class:`ManifestError` with the file, the field and what was expected.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any, Mapping

from pcrtool.errors import FormatError
from pcrtool.model import PCR_COUNT, HashAlg

_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
_VERSION = re.compile(r"^[A-Za-z0-9.~^_+-]{1,64}$")
_BANK_NAMES = ("sha1", "sha256", "sha384", "sha512")


class ManifestError(FormatError):
    """A release manifest, allowlist or predictions file has a bad or missing field."""


def _where(source: str, key: str) -> str:
    return f"{source}: field {key!r}"


def _req(doc: Mapping, key: str, source: str) -> Any:
    if key not in doc:
        raise ManifestError(f"{source}: missing required field {key!r}", hint=_HINT)
    return doc[key]


_HINT = "see `pcrtool predict release --help` for the manifest format"


def _str(value: Any, key: str, source: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{_where(source, key)} must be a non-empty string", hint=_HINT)
    if pattern is not None and not pattern.match(value):
        raise ManifestError(f"{_where(source, key)} has invalid characters: {value!r}",
                            hint="letters, digits and . _ + - (versions also ~ ^)")
    return value


def _int(value: Any, key: str, source: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ManifestError(f"{_where(source, key)} must be an integer {lo}…{hi}, not {value!r}", hint=_HINT)
    return value


def _banks(value: Any, source: str) -> tuple[HashAlg, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{_where(source, 'banks')} must be a non-empty list", hint='e.g. ["sha256"]')
    out = []
    for b in value:
        if not isinstance(b, str) or b.lower() not in _BANK_NAMES:
            raise ManifestError(f"{_where(source, 'banks')}: unknown bank {b!r}",
                                hint="use sha1, sha256, sha384, sha512")
        out.append(HashAlg.from_name(b))
    return tuple(dict.fromkeys(out))


def _pcr_list(value: Any, source: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{_where(source, 'pcrs')} must be a non-empty list of PCR indices", hint="e.g. [7, 11]")
    return tuple(sorted({_int(p, "pcrs", source, 0, PCR_COUNT - 1) for p in value}))


def _hex(value: Any, key: str, source: str, size: int | None = None) -> bytes:
    try:
        data = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        data = None
    if data is None or (size is not None and len(data) != size):
        raise ManifestError(f"{_where(source, key)} must be {'%d-byte ' % size if size else ''}hex, not {str(value)[:40]!r}")
    return data


def parse_document(text: str | bytes, *, source: str) -> dict:
    """TOML or JSON (by content: JSON starts with ``{``) into a dict, with a located error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{source}: not UTF-8 text (byte {e.start})") from None
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{source}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(f"{source}: bad TOML: {e}", hint="or give JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: top level must be a table/object")
    return doc
