"""Bounds for everything a signing request may contain (documented in README.md, "Keys").

The build host controls every byte of a request; the signing host refuses anything larger or
deeper than these before it decodes a single field, so no request can exhaust memory or time.
"""

from __future__ import annotations

import json
from typing import Any

from pcrtool.errors import FormatError

MAX_MANIFEST_BYTES = 1 << 20          # the JSON manifest
MAX_RESPONSE_BYTES = 4 << 20          # a JSON response: MAX_ITEMS signatures of the largest key, and a certificate
MAX_ITEMS = 1024                      # tbs items per request
MAX_LABEL_CHARS = 256                 # a label, file name, ref or other string shown to a person
MAX_FILE_NAME_CHARS = 200
MAX_JSON_DEPTH = 16                   # nesting of objects/arrays
MAX_JSON_INT_DIGITS = 16              # |n| < 10^16: beyond any size, index or svn a request needs
MAX_IMAGE_BYTES = 1 << 30             # a PE image given with --image
MAX_POLICY_PCRS = 24

# Per kind: the largest bytes-to-sign file that can be of the kind's shape.
MAX_TBS_BYTES = {
    "verity-roothash": 128,           # lowercase hex of a SHA-512 root hash
    "authenticode": 1024,             # DER SET of four signed attributes (~100 bytes in practice)
    "pcr-policy": 64,                 # approvedPolicy (32) || policyRef (32)
}
MAX_SPC_INDIRECT_DATA_BYTES = 512     # SpcIndirectDataContent carried as context (106 for SHA-256)


def _depth(value: Any, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            if d > limit:
                raise FormatError(f"JSON nesting deeper than {limit} levels",
                                  hint="signing requests are flat; this one was not written by pcrtool")
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise FormatError(f"JSON integer with more than {MAX_JSON_INT_DIGITS} digits",
                          hint="sizes, indices and svns are small numbers")
    return int(text)


def _parse_float(text: str) -> float:
    raise FormatError("JSON numbers with a fraction or exponent are not used in signing requests")


def _parse_constant(text: str) -> float:
    raise FormatError(f"JSON constant {text} is not allowed")


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise FormatError(f"JSON object repeats the key {escape(k)!s}",
                              hint="a repeated key could show one value and use another")
        out[k] = v
    return out


def load_json(data: bytes | str, *, source: str, max_bytes: int = MAX_MANIFEST_BYTES) -> Any:
    """Strict, bounded JSON: size, depth, integer digits, no floats/NaN, no repeated keys."""
    if len(data) > max_bytes:
        raise FormatError(f"{source} is larger than {max_bytes} bytes")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FormatError(f"{source} is not UTF-8 (byte {e.start})") from None
    # Depth first on the raw text: json's recursive parser must never see a 100,000-deep document.
    depth = level = 0
    in_string = escaped = False
    for ch in data:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
            if depth > MAX_JSON_DEPTH:
                raise FormatError(f"{source}: JSON nesting deeper than {MAX_JSON_DEPTH} levels",
                                  hint="signing requests are flat; this one was not written by pcrtool")
        elif ch in "]}":
            level -= 1
    try:
        value = json.loads(data, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise FormatError(f"{source}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except FormatError as e:
        raise FormatError(f"{source}: {e.message}", hint=e.hint) from None
    except (ValueError, RecursionError) as e:
        raise FormatError(f"{source}: bad JSON: {type(e).__name__}") from None
    _depth(value, MAX_JSON_DEPTH)
    return value


# --- terminal safety -----------------------------------------------------------------------------

def escape(text: str, *, limit: int = MAX_LABEL_CHARS * 4) -> str:
    """A request string as printable ASCII only: every other character (control characters, ESC,
    newlines, bidi overrides, anything non-ASCII) becomes a visible ``\\xNN``/``\\uNNNN`` escape and
    ``\\`` itself is doubled, so what reaches a terminal is exactly what the bytes say."""
    out = []
    for ch in str(text)[:limit]:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x100:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    if len(str(text)) > limit:
        out.append(f"\\...(+{len(str(text)) - limit} chars)")
    return "".join(out)


def quote(text: str) -> str:
    """``escape`` in quotes, for error messages and labels."""
    return "'" + escape(text).replace("'", "\\x27") + "'"
