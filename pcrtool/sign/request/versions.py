"""Format versions of the offline-signing documents (requests, responses, the decoded summary).

Version 2, written by default: snake_case keys throughout, as every pcrtool-own document (README
"JSON key style"), and the format named in a ``format`` field::

    {"format": "pcrtool-sign-request/2", …, "created_by": "pcrtool …"}

Version 1, read only (requests from older build hosts): kebab-case keys and the version in a field
named after the format, ``{"pcrtool-sign-request": 1, …, "created-by": "pcrtool …"}``. A version-1
document differs from version 2 only in these key names, so one model serves both: the code names
every field in snake_case and :func:`key` gives the name a document of a version uses.

A version-1 request keeps its version-1 summary (the digest ``sign --expect`` pins is the one an
older pcrtool printed for it) and is answered with a version-1 response (the build host that wrote
it can read the answer). Any other version is refused with one line, before any field is read.
"""

from __future__ import annotations

import re

from pcrtool.errors import FormatError
from pcrtool.sign.request.limits import escape, quote

WRITE_VERSION = 2
READ_VERSIONS = (1, 2)
REQUEST = "pcrtool-sign-request"
RESPONSE = "pcrtool-sign-response"
SUMMARY = "pcrtool-sign-summary"
FORMAT_FIELD = "format"


def key(name: str, version: int) -> str:
    """The key a document of ``version`` uses for the field pcrtool names ``name`` (snake_case)."""
    return name.replace("_", "-") if version == 1 else name


def header(fmt: str, version: int) -> dict:
    """The first field of a document: ``{"format": "FMT/2"}``, or version 1's ``{"FMT": 1}``."""
    return {fmt: 1} if version == 1 else {FORMAT_FIELD: f"{fmt}/{version}"}


def is_document(data: object, fmt: str) -> bool:
    """Does ``data`` (parsed JSON) claim to be a ``fmt`` document of any version?"""
    if not isinstance(data, dict):
        return False
    value = data.get(FORMAT_FIELD)
    return fmt in data or (isinstance(value, str) and value.startswith(fmt + "/"))


def version_of(data: object, fmt: str, *, source: str, what: str, hint: str) -> int:
    """The version of a ``fmt`` document; one-line FormatError for another document or a version
    this pcrtool does not read (version 2 is only ``"format": "FMT/2"``, version 1 only ``"FMT": 1``)."""
    if not is_document(data, fmt):
        has = f"format {escape(repr(data[FORMAT_FIELD]))[:80]}" if isinstance(data, dict) and FORMAT_FIELD in data \
            else f"no {FORMAT_FIELD!r} field {quote(fmt + '/2')}"
        raise FormatError(f"{source} is not a {what} ({has})", hint=hint)
    assert isinstance(data, dict)
    if fmt in data and FORMAT_FIELD in data:
        raise FormatError(f"{source}: has both a {FORMAT_FIELD!r} field and a version-1 {fmt!r} field",
                          hint="prepare it again")
    version = None
    if FORMAT_FIELD in data:
        shown = data[FORMAT_FIELD]
        m = re.fullmatch(re.escape(fmt) + r"/([1-9][0-9]{0,5})", shown)
        if m and int(m.group(1)) in READ_VERSIONS and int(m.group(1)) != 1:
            version = int(m.group(1))
    else:
        shown = data[fmt]
        if type(shown) is int and shown == 1:
            version = 1
    if version is None:
        raise FormatError(f"{source}: unsupported {what} version {escape(repr(shown))[:80]} (this pcrtool reads "
                          f"version 2, {FORMAT_FIELD!r}: {quote(fmt + '/2')}, and version 1, {quote(fmt)}: 1)",
                          hint="prepare it with a pcrtool that writes version 2, or update pcrtool on this host")
    return version


def snake_key(name: str) -> str:
    """``rootHash``, ``image-digest`` → ``root_hash``, ``image_digest``: the version-2 key style."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("-", "_").lower()
