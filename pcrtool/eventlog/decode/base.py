"""Shared helpers of the decoders: JSON rendering of decoded values, string guessing."""

from __future__ import annotations

import dataclasses
import uuid
from enum import Enum


def to_jsonable(value):
    if hasattr(value, "to_json") and not isinstance(value, type):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.name.startswith("_")}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_PLAIN = (str, int, bool, float)


class Decoded:
    """Mixin for decoded event values: ``kind``, ``to_json()``, ``describe()``."""

    kind = "raw"
    __slots__ = ()

    def to_json(self) -> dict:
        cls = type(self)
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(self))
        out = {"kind": self.kind}
        for name in names:
            value = getattr(self, name)
            out[name] = value if value is None or type(value) in _PLAIN else to_jsonable(value)
        return out

    def describe(self) -> str:
        return self.kind


def decode_utf16(data: bytes) -> str | None:
    """A UTF-16LE string (NUL-terminated or not), or None if it does not look like one."""
    if len(data) < 2 or len(data) % 2:
        return None
    try:
        text = bytes(data).decode("utf-16-le")
    except UnicodeDecodeError:
        return None
    text = text.split("\0", 1)[0] if "\0" in text else text
    if not text or not text.isprintable():
        return None
    return text


_CONTROL_OK = str.maketrans("", "", "\t\r\n")


def decode_ascii(data: bytes) -> str | None:
    """A printable ASCII string (optionally NUL-terminated; tabs/newlines allowed), or None."""
    raw = bytes(data)
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    if not raw or not raw.isascii():
        return None
    text = raw.decode("ascii")
    if text.isprintable() or text.translate(_CONTROL_OK).isprintable():
        return text
    return None
