"""systemd's userspace measurement log (``/run/log/systemd/tpm2-measure.log``) and merging it
with the firmware log.

Framing is RFC 7464 JSON-SEQ: each record is 0x1E, one JSON object, a newline. Records carry
``pcr``, ``digests`` [{hashAlg, digest}], ``content_type`` "systemd" and ``content``
{string, bootId, timestamp, eventType}; the digest is H(content.string) (systemd-pcrextend).
Userspace records come after every firmware event, so replay continues from the firmware values.
A record may name an NV index (``nv_index``, systemd ≥ 259's NvPCRs) instead of a PCR: it is kept
(CEL export) but extends no PCR.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pcrtool.errors import FormatError, UsageError
from pcrtool.eventlog.replay import Replayer, ReplayResult
from pcrtool.model import PCR_COUNT, HashAlg

RS = b"\x1e"


@dataclass(frozen=True, slots=True)
class UserspaceRecord:
    index: int                  # position in the userspace log
    pcr: int | None             # None for an NV-index record
    digests: dict[HashAlg, bytes]
    content_type: str | None
    content: dict = field(default_factory=dict)
    nv_index: int | None = None

    @property
    def string(self) -> str | None:
        value = self.content.get("string") if isinstance(self.content, dict) else None
        return value if isinstance(value, str) else None

    def digest_valid(self) -> bool | None:
        """H(content.string) == digest for every bank (None if the record has no string)."""
        text = self.string
        if text is None:
            return None
        return all(alg.digest(text.encode()) == d for alg, d in self.digests.items())


def parse_userspace_log(data: bytes, *, source: str = "userspace log") -> list[UserspaceRecord]:
    """Parse a JSON-SEQ userspace log. A torn last record (no newline) is an error with offset."""
    records: list[UserspaceRecord] = []
    pos = 0
    if data and not data.startswith(RS):
        raise FormatError(f"{source}: not JSON-SEQ (no 0x1E record separator)", offset=0,
                          partial=records, hint="expected systemd's tpm2-measure.log")
    while pos < len(data):
        nxt = data.find(RS, pos + 1)
        end = len(data) if nxt < 0 else nxt
        chunk = data[pos + 1:end]
        if not chunk.strip():
            pos = end
            continue
        try:
            obj = json.loads(chunk.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{source}: record {len(records)} is not JSON ({e})", offset=pos,
                              partial=records, hint="the log may be torn (written while read)") from None
        records.append(_record(obj, len(records), pos, source, records))
        pos = end
    return records


def _record(obj, index: int, offset: int, source: str, partial) -> UserspaceRecord:
    def bad(what: str) -> FormatError:
        return FormatError(f"{source}: record {index}: {what}", offset=offset, partial=partial)

    if not isinstance(obj, dict):
        raise bad("not an object")
    pcr, nv_index = obj.get("pcr"), obj.get("nv_index")
    if pcr is not None and nv_index is not None:
        raise bad("both 'pcr' and 'nv_index'")
    if nv_index is not None:
        if type(nv_index) is not int or not 0 <= nv_index < 0xFFFFFFFF:
            raise bad(f"bad nv_index {nv_index!r}")
    elif type(pcr) is not int or not 0 <= pcr < PCR_COUNT:
        raise bad(f"bad pcr {pcr!r}")
    digests: dict[HashAlg, bytes] = {}
    for d in obj.get("digests") or []:
        if not isinstance(d, dict):
            raise bad("bad digests entry")
        try:
            alg = HashAlg.from_name(str(d.get("hashAlg")))
            value = bytes.fromhex(str(d.get("digest")))
        except (UsageError, ValueError):
            raise bad(f"bad digest {d!r:.60}") from None
        if len(value) != alg.digest_size:
            raise bad(f"{alg.bank_name} digest has {len(value)} bytes")
        digests[alg] = value
    content = obj.get("content")
    return UserspaceRecord(index, pcr, digests, obj.get("content_type"),
                           content if isinstance(content, dict) else {}, nv_index)


def extend_with_userspace(result: ReplayResult, records: list[UserspaceRecord]) -> ReplayResult:
    """Continue ``result`` (a firmware replay) with the userspace records, in place (a record's
    index in ``contributors`` and gaps is ``-1 - record index``)."""
    replayer = Replayer.resume(result)
    for rec in records:
        if rec.pcr is not None:  # None: an NV index, not a PCR
            replayer.extend(-1 - rec.index, rec.pcr, rec.digests)
    return result
