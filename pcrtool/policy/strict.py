"""Strict, bounded reading of the JSON files pcrtool trusts on a device (pure).

Enrollment and approvals files are attacker-reachable (root on the booted OS, offline disk
access), so every field is checked with its JSON path in the error (``e.json: $.sha256[3].pol:
…``), sizes and counts are bounded before any work is done, and no input ends in a traceback:

- the document: at most ``max_bytes`` (checked before parsing), UTF-8, nesting depth ≤ 8, no
  duplicate keys, no NaN/Infinity, integer literals of more than 20 digits are never converted (an error at their path);
- objects: unknown keys are errors; strings, lists, hex, base64 have explicit size limits.

Limits are documented in README.md ("Device-side input limits").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable

from pcrtool.errors import FormatError

MAX_DEPTH = 8
MAX_INT_DIGITS = 20
_HEX = re.compile(r"[0-9a-f]*")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _no_constants(name: str):
    raise ValueError(f"{name} is not allowed")


class Huge:
    """An integer literal with more than MAX_INT_DIGITS digits: never converted (no quadratic
    int() on megabytes of digits); reported at its JSON path when a field is read."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int(text: str):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return Huge(len(text))
    return int(text)


def _pairs(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def load_device_json(untrusted_data: bytes | str, source: str, *, max_bytes: int, hint: str) -> Any:
    """Parse a bounded JSON document read from the device (attacker-reachable); every failure is
    one FormatError naming ``source``."""
    raw = untrusted_data.encode("utf-8", "surrogatepass") if isinstance(untrusted_data, str) else untrusted_data
    if len(raw) > max_bytes:
        raise FormatError(f"{source}: {len(raw)} bytes, more than the limit of {max_bytes}", hint=hint)
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constants, parse_int=_int,
                         parse_float=lambda s: _no_constants(f"number {s[:20]}"))
    except RecursionError:
        raise FormatError(f"{source}: JSON nested deeper than {MAX_DEPTH} levels", hint=hint) from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise FormatError(f"{source}: not valid JSON: {str(e)[:120]}", hint=hint) from None
    _check_depth(doc, source, hint)
    return doc


def _check_depth(doc: Any, source: str, hint: str) -> None:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FormatError(f"{source}: JSON nested deeper than {MAX_DEPTH} levels", hint=hint)
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


class Node:
    """A JSON value with its path, and checked accessors that raise FormatError at that path."""

    def __init__(self, value: Any, source: str, path: str = "$", hint: str | None = None) -> None:
        self.value, self.source, self.path, self.hint = value, source, path, hint

    def fail(self, what: str, key: str | int | None = None) -> FormatError:
        return FormatError(f"{self.source}: {self._sub(key)}: {what}", hint=self.hint)

    def _sub(self, key) -> str:
        if key is None:
            return self.path
        return f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}"

    def child(self, key) -> "Node":
        return Node(self.value[key], self.source, self._sub(key), self.hint)

    # --- containers ----------------------------------------------------------------------------
    def obj(self, required: set[str] | frozenset[str], optional: set[str] | frozenset[str] = frozenset()) -> "Node":
        if not isinstance(self.value, dict):
            raise self.fail("must be an object")
        unknown = set(self.value) - set(required) - set(optional)
        if unknown:
            raise self.fail(f"unknown key {sorted(unknown)[0]!r}")
        missing = set(required) - set(self.value)
        if missing:
            raise self.fail(f"missing key {sorted(missing)[0]!r}")
        return self

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def items(self, max_count: int) -> list["Node"]:
        if not isinstance(self.value, list):
            raise self.fail("must be a list")
        if len(self.value) > max_count:
            raise self.fail(f"{len(self.value)} items, more than the limit of {max_count}")
        return [self.child(i) for i in range(len(self.value))]

    # --- scalars ---------------------------------------------------------------------------------
    def int_(self, key: str, lo: int, hi: int) -> int:
        v = self.value.get(key) if isinstance(self.value, dict) else None
        if isinstance(v, Huge):
            raise self.fail(f"integer of {v.digits} digits is out of range {lo}…{hi}", key)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail("must be an integer", key)
        if not lo <= v <= hi:
            raise self.fail(f"{v} is out of range {lo}…{hi}", key)
        return v

    def str_(self, key: str, max_len: int, pattern: re.Pattern | None = None, *, what: str = "") -> str:
        v = self.value.get(key) if isinstance(self.value, dict) else None
        if not isinstance(v, str):
            raise self.fail("must be a string", key)
        if len(v) > max_len:
            raise self.fail(f"{len(v)} characters, more than the limit of {max_len}", key)
        if pattern is not None and not pattern.fullmatch(v):
            raise self.fail(f"is not {what or 'in the expected form'}", key)
        return v

    def hex_(self, key: str, size: int | tuple[int, ...]) -> bytes:
        sizes = (size,) if isinstance(size, int) else size
        v = self.str_(key, 2 * max(sizes))
        if not _HEX.fullmatch(v) or len(v) % 2:
            raise self.fail("is not lower-case hex", key)
        b = bytes.fromhex(v)
        if len(b) not in sizes:
            raise self.fail(f"has {len(b)} bytes, expected {' or '.join(map(str, sizes))}", key)
        return b

    def b64_(self, key: str, max_bytes: int) -> bytes:
        v = self.str_(key, 4 * ((max_bytes + 2) // 3))
        if not _B64.fullmatch(v) or len(v) % 4:
            raise self.fail("is not base64", key)
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise self.fail("is not base64", key) from None

    def int_list(self, key: str, lo: int, hi: int, max_count: int) -> tuple[int, ...]:
        node = self.child(key) if self.has(key) else None
        if node is None:
            raise self.fail("missing", key)
        out = []
        for i, item in enumerate(node.items(max_count)):
            if isinstance(item.value, Huge):
                raise node.fail(f"integer of {item.value.digits} digits is out of range {lo}…{hi}", i)
            if isinstance(item.value, bool) or not isinstance(item.value, int) or not lo <= item.value <= hi:
                raise node.fail(f"must be an integer {lo}…{hi}", i)
            out.append(item.value)
        return tuple(out)

    def check(self, ok: bool, what: str, key: str | int | None = None) -> None:
        if not ok:
            raise self.fail(what, key)


def checked(fn: Callable[[], Any], node: Node, key: str, what: str):
    """Run a converter; its PcrtoolError/ValueError becomes a FormatError at ``node.key``."""
    from pcrtool.errors import PcrtoolError

    try:
        return fn()
    except (PcrtoolError, ValueError, TypeError) as e:
        raise node.fail(f"{what}: {getattr(e, 'message', str(e))[:120]}", key) from None
