"""The canonical decoded summary of a request: what ``show`` prints, what ``sign`` prints again and
what ``sign --expect DIGEST`` pins (DIGEST = SHA-256 of the summary's canonical JSON).

The text rendering is terminal-safe: every string that came from the request is escaped to
printable ASCII (``limits.escape``), hashes and fingerprints are wrapped, never cut, and the item
count and signing key fingerprint stand at the top and at the bottom.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pcrtool.sign.request import versions
from pcrtool.sign.request.decode import DecodedItem
from pcrtool.sign.request.limits import escape, quote
WRAP = 64          # characters of a value per line: a SHA-256 hex or fingerprint fits one line
_INDENT = "     "


@dataclass(frozen=True, slots=True)
class ItemView:
    index: int
    file: str
    size: int
    sha256: str
    label: str
    decoded: DecodedItem


@dataclass(frozen=True, slots=True)
class Summary:
    kind: str
    hash: str
    padding: str
    key_fingerprint: str | None     # the key that will sign (None: the request names none, none given)
    items: tuple[ItemView, ...]
    created_by: str | None = None
    version: int = versions.WRITE_VERSION   # the request's format version: its key style

    def canonical(self) -> dict[str, Any]:
        """The summary as JSON in the request's key style: a version-1 request keeps the summary
        (and so the digest) an older pcrtool showed for it."""
        def k(name: str) -> str:
            return versions.key(name, self.version)

        return versions.header(versions.SUMMARY, self.version) | {
            "kind": self.kind, "hash": self.hash, "padding": self.padding,
            "key": self.key_fingerprint, "count": len(self.items),
            "items": [{"file": it.file, "size": it.size, "sha256": it.sha256, "shape": it.decoded.shape,
                       "decoded": {k(n): v for n, v in it.decoded.values.items()},
                       k("label_unverified"): it.label}
                      for it in self.items],
            k("created_by_unverified"): self.created_by}

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    def header(self, bottom: bool = False) -> list[str]:
        n = len(self.items)
        key = self.key_fingerprint
        lines = [f"== {'END: ' if bottom else ''}{n} item{'s' if n != 1 else ''} to sign, kind {self.kind} "
                 f"({self.hash}, {self.padding})", "   signing key (SHA-256 of its public key):"]
        lines += _wrap(escape(key)) if key else [_INDENT + "ANY KEY: the request names none (pass --key to pin it)"]
        return lines

    def text(self, source: str) -> str:
        out = [f"pcrtool signing request {quote(source)}"] + self.header()
        if self.version != versions.WRITE_VERSION:
            out.append(f"   request format version {self.version} (written by an older pcrtool; read as it was)")
        for it in self.items:
            d = it.decoded
            out.append(f"-- item {it.index + 1} of {len(self.items)}: file {quote(it.file)}, {it.size} bytes")
            out += _field("decoded as", d.shape)
            for name, value in d.lines:
                out += _field(name, value)
            out += _field("sha256 of the bytes", it.sha256)
            out += _field("label (unverified, written by the build host)", it.label)
        if self.created_by is not None:
            out += _field("created by (unverified)", self.created_by)
        out += self.header(bottom=True)
        out.append("== summary digest (sign non-interactively with --expect DIGEST):")
        out += _wrap(self.digest())
        return "\n".join(out) + "\n"


def _wrap(value: str) -> list[str]:
    """An already escaped value, WRAP characters per line."""
    return [_INDENT + value[i:i + WRAP] for i in range(0, max(len(value), 1), WRAP)]


def _field(name: str, value: str) -> list[str]:
    name, value = escape(name), escape(value)
    if len(name) + len(value) + 5 <= 78:
        return [f"   {name}: {value}"]
    return [f"   {name}:"] + _wrap(value)
