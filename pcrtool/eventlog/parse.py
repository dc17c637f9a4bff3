"""Parse binary TCG PC Client event logs into untrusted ``Event`` records.

TCG PFP 1.05 §10.2 (TCG_PCClientPCREvent, TCG_PCR_EVENT2) and §10.4.5.1 (TCG_EfiSpecIDEvent).
Record headers are read with ``struct.unpack_from`` (the hot path: a log can hold 100,000 events);
the construct definitions in ``pcrtool.tcg`` are for typed decoding and round-trip tests.

Rules that real logs need (see ../shared/docs/eventlog-reference.md §3(c)):
- crypto-agile iff the first record is EV_NO_ACTION on PCR 0 with a zero digest and data
  starting with "Spec ID Event03"; anything else (e.g. a 17-byte StartupLocality) is SHA1 format;
- digest sizes come from the Spec ID table and digests are keyed by algorithm id, not position;
- no size field is trusted beyond the buffer; a truncated record raises ``FormatError`` with the
  byte offset and the events parsed before it (``partial``);
- trailing all-0x00 / all-0xFF bytes are reported as padding, not parsed.

Everything read here is *untrusted* (named ``untrusted_…``) until a replay is compared with the
TPM's PCRs. ``walk_records`` is the one reader of record headers: the validating walk runs it
over the whole buffer (every size checked, offsets recorded), then events, fast JSON and the
buffer replay run it again over validated ranges (``read_records``).
"""

from __future__ import annotations

import mmap
import struct
from array import array

from pcrtool.errors import FormatError
from pcrtool.eventlog.model import Event, EventLog, LogFormat, SpecIdAlgorithm, SpecIdEvent
from pcrtool.model import HashAlg
from pcrtool.eventlog.quirks import SHORT_NO_ACTION_FIRST, SPECID_VENDORINFO_OUTSIDE_EVENT
from pcrtool.tcg.constants import SPEC_ID_SIGNATURE, SPEC_ID_SIGNATURES, EventType

_U32 = struct.Struct("<I")
_III = struct.Struct("<III")
_H = struct.Struct("<H")
_SHA1_HEADER = struct.Struct("<II20sI")   # TCG_PCClientPCREvent header: 32 bytes
MAX_ALGORITHMS = 64                       # far above any real TPM; bounds a corrupt count
_ZERO20 = bytes(20)
_EVENT_TYPES = {t.value: t for t in EventType}
_NO_ACTION = int(EventType.EV_NO_ACTION)


def parse_event_log(data: bytes, *, source: str = "event log") -> EventLog:
    """Parse a binary_bios_measurements log (either format) into an ``EventLog``.

    Raises ``FormatError`` (``offset``, ``partial`` = EventLog of the records before it) for an
    empty, truncated or corrupt log.
    """
    stream = EventLogStream(data, source=source)
    stream.log.events.extend(stream)
    return stream.log


class EventLogStream:
    """A log read record by record without keeping the records (for very large logs).

    ``log`` holds the header facts (format, Spec ID, banks; ``padding`` once iterated) and an
    empty ``events`` list; iterating yields the events; ``record_starts()`` walks every record header
    without building events, so a caller can refuse a corrupt log before printing anything.
    """

    def __init__(self, data: bytes, *, source: str = "event log") -> None:
        self.source = source
        # An mmap (see pcrtool.system.map_event_log) is used in place: large logs are walked
        # without a copy, and the pages already walked are released as the walk goes on.
        untrusted_log = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self._buf = untrusted_log
        self.log, self._walk = _open(untrusted_log, source)

    def __iter__(self):
        """The events, in order; every record is validated before the first one is built (a
        corrupt record raises FormatError whose ``partial`` log holds the events before it)."""
        starts = array("q")
        try:
            self._walk(starts)
        except FormatError as e:
            if e.partial is self.log:
                self.log.events.extend(_events(self._buf, self.log, starts, 0, len(starts)))
            raise
        return _events(self._buf, self.log, starts, 0, len(starts) - 1)

    def record_starts(self) -> "array":
        """Validate every record and return the byte offset of each record,
        in log order, followed by the end of the last one (where padding starts): record ``i``
        is ``untrusted_log[starts[i]:starts[i + 1]]`` and has index ``i``."""
        starts = array("q")
        self._walk(starts)
        return starts


def _open(untrusted_log: bytes, source: str):
    if len(untrusted_log) == 0:
        raise FormatError(f"{source} is empty", hint="is the TPM event log exposed by the kernel?",
                          offset=0, partial=EventLog(LogFormat.SHA1, [], None, [HashAlg.SHA1], 0))
    if len(untrusted_log) < _SHA1_HEADER.size:
        raise FormatError(f"{source} is truncated: {len(untrusted_log)} bytes, a record header needs "
                          f"{_SHA1_HEADER.size}", hint="the file is cut short or not an event log",
                          offset=0, partial=EventLog(LogFormat.SHA1, [], None, [HashAlg.SHA1], len(untrusted_log)))
    pcr, etype, digest, size = _SHA1_HEADER.unpack_from(untrusted_log, 0)
    spec_id = None
    quirks: list[str] = []
    if etype == EventType.EV_NO_ACTION and pcr == 0 and digest == _ZERO20 and \
            untrusted_log[32:48] in SPEC_ID_SIGNATURES and size <= len(untrusted_log) - 32:
        try:
            spec_id = parse_spec_id(untrusted_log[32:32 + size], offset=32, source=source)
        except FormatError as e:
            spec_id = SPECID_VENDORINFO_OUTSIDE_EVENT.apply(untrusted_log, source=source)
            if spec_id is None:
                e.partial = EventLog(LogFormat.SHA1, [], None, [HashAlg.SHA1], len(untrusted_log))
                raise
            size = len(untrusted_log) - 32
            quirks.append(SPECID_VENDORINFO_OUTSIDE_EVENT.name)
        if spec_id.signature == SPEC_ID_SIGNATURE:
            banks = [a.alg for a in spec_id.algorithms if a.alg is not None]
            log = EventLog(LogFormat.CRYPTO_AGILE, [], spec_id, banks, len(untrusted_log), quirks=quirks)
            return log, lambda starts: _validate(untrusted_log, log, source, starts)
    elif SHORT_NO_ACTION_FIRST.apply(etype, size, untrusted_log[32:48]):
        quirks.append(SHORT_NO_ACTION_FIRST.name)
    log = EventLog(LogFormat.SHA1, [], spec_id, [HashAlg.SHA1], len(untrusted_log), quirks=quirks)
    return log, lambda starts: _validate(untrusted_log, log, source, starts)


def parse_spec_id(data: bytes, *, offset: int = 0, source: str = "event log") -> SpecIdEvent:
    """TCG_EfiSpecIDEvent (TCG PFP §10.4.5.1); Event00/02 headers have no algorithm table."""
    def need(n: int, pos: int, what: str) -> None:
        if pos + n > len(data):
            raise FormatError(f"{source}: Spec ID event truncated in {what}", offset=offset + pos,
                              hint="the log header is corrupt")

    need(24, 0, "header")
    signature = data[:16]
    platform_class = _U32.unpack_from(data, 16)[0]
    minor, major, errata, uintn = data[20], data[21], data[22], data[23]
    algorithms: list[SpecIdAlgorithm] = []
    vendor_info = b""
    if signature != SPEC_ID_SIGNATURE:
        return SpecIdEvent(signature, platform_class, minor, major, errata, uintn, (), data[24:])
    need(4, 24, "numberOfAlgorithms")
    count = _U32.unpack_from(data, 24)[0]
    if count == 0 or count > MAX_ALGORITHMS:
        raise FormatError(f"{source}: Spec ID declares {count} algorithms", offset=offset + 24,
                          hint="the log header is corrupt")
    pos = 28
    need(4 * count, pos, "algorithm table")
    for _ in range(count):
        alg_id, size = struct.unpack_from("<HH", data, pos)
        if size == 0 or size > 256:
            raise FormatError(f"{source}: Spec ID gives algorithm 0x{alg_id:04x} digest size {size}",
                              offset=offset + pos, hint="the log header is corrupt")
        algorithms.append(SpecIdAlgorithm(alg_id, size))
        pos += 4
    if pos < len(data):
        vsize = data[pos]
        need(1 + vsize, pos, "vendorInfo")
        vendor_info = data[pos + 1:pos + 1 + vsize]
    return SpecIdEvent(signature, platform_class, minor, major, errata, uintn, tuple(algorithms),
                       vendor_info)


_FILL_HEADERS = (bytes(8), b"\xff" * 8)


def _is_padding(untrusted_log: bytes, pos: int) -> bool:
    fill = untrusted_log[pos]
    if fill not in (0x00, 0xFF):
        return False
    end = len(untrusted_log)
    step = 1 << 20
    for at in range(pos, end, step):       # chunked: an mmap has no count()
        chunk = untrusted_log[at:min(at + step, end)]
        if chunk.count(fill) != len(chunk):
            return False
    return True


_RELEASE_STEP = 1 << 20


def _release(untrusted_log, upto: int, released: int) -> int:
    """Drop the walked pages of a mapped log from memory (no-op for bytes); returns the new mark."""
    if isinstance(untrusted_log, mmap.mmap):
        start = released - released % mmap.PAGESIZE
        stop = upto - upto % mmap.PAGESIZE
        if stop > start:
            untrusted_log.madvise(mmap.MADV_DONTNEED, start, stop - start)
        return stop
    return upto


def _validate(untrusted_log, log: EventLog, source: str, starts: array) -> None:
    """Check every record of the log against the buffer (``walk_records``, digests not kept);
    append each record's offset to ``starts``, then the end of the last one."""
    append = starts.append
    for record in walk_records(untrusted_log, log, source=source, digests=False):
        append(record[1])
    append(log.padding[0] if log.padding is not None else len(untrusted_log))


def walk_records(untrusted_log, log: EventLog, *, source: str = "event log", start: int = 0,
                 index: int = 0, count: int | None = None, digests: bool = True):
    """The one reader of record headers (TCG_PCClientPCREvent for SHA1 logs and the Spec ID
    header, TCG_PCR_EVENT2 after it): yields ``(index, offset, pcr, event type value,
    {HashAlg: digest}, {alg id: digest} or None, data start, data size)`` per record, from byte
    ``start`` (record ``index``). Every size is checked against the buffer (FormatError with the
    offset, ``partial`` = ``log``). Without ``count`` it reads to the end and stops at trailing
    0x00/0xFF fill, which it records as ``log.padding``; with ``count`` it reads that many
    records (offsets from an earlier walk). ``digests=False`` yields None for both digest maps
    (the validating walk needs only the offsets)."""
    end = len(untrusted_log)
    pos = start
    i = index
    stop = None if count is None else index + count
    released, release_at = 0, _RELEASE_STEP
    unpack_u32 = _U32.unpack_from
    sha1 = HashAlg.SHA1
    if log.format == LogFormat.SHA1:
        unpack = _SHA1_HEADER.unpack_from
        while pos < end and i != stop:
            if count is None and pos > 0 and (end - pos < 32 or untrusted_log[pos:pos + 8] in _FILL_HEADERS) \
                    and _is_padding(untrusted_log, pos):
                log.padding = (pos, end - pos)
                return
            if end - pos < 32:
                raise FormatError(f"{source}: truncated record header ({end - pos} of 32 bytes)",
                                  offset=pos, partial=log, hint="the log is cut short")
            pcr, etype, digest, size = unpack(untrusted_log, pos)
            if size > end - pos - 32:
                raise FormatError(f"{source}: event {i} data size {size} runs past the end of the log",
                                  offset=pos, partial=log, hint="the log is truncated or corrupt")
            yield i, pos, pcr, etype, {sha1: digest} if digests else None, None, pos + 32, size
            pos += 32 + size
            i += 1
            if pos >= release_at:          # a mapped log's pages already read
                released = _release(untrusted_log, pos, released)
                release_at = pos + _RELEASE_STEP
        return
    if i == 0 and i != stop:               # the Spec ID header record (TCG_PCClientPCREvent)
        size = end - 32 if SPECID_VENDORINFO_OUTSIDE_EVENT.name in log.quirks else unpack_u32(untrusted_log, 28)[0]
        yield 0, 0, 0, _NO_ACTION, {sha1: untrusted_log[8:28]} if digests else None, None, 32, size
        pos, i = 32 + size, 1
    # alg id -> (HashAlg or None, digest size), from the Spec ID table only (go-attestation #144).
    table = {a.alg_id: (a.alg, a.digest_size) for a in log.spec_id.algorithms}
    max_count = len(table)
    max_entry = 2 + max(size for _alg, size in table.values())
    unpack_iii = _III.unpack_from
    unpack_h = _H.unpack_from
    while pos < end and i != stop:
        record = pos
        if end - pos < 12:
            if count is None and _is_padding(untrusted_log, pos):
                log.padding = (pos, end - pos)
                return
            raise FormatError(f"{source}: truncated record header ({end - pos} bytes)", offset=pos,
                              partial=log, hint="the log is cut short")
        pcr, etype, n = unpack_iii(untrusted_log, pos)
        if count is None and ((pcr == 0xFFFFFFFF and etype == 0xFFFFFFFF) or (pcr == 0 and etype == 0 and n == 0)) \
                and _is_padding(untrusted_log, pos):
            log.padding = (pos, end - pos)
            return
        if n > max_count:
            raise FormatError(f"{source}: event {i} has {n} digests, the Spec ID declares "
                              f"{max_count} algorithms", offset=pos, partial=log, hint="the log is corrupt")
        pos += 12
        found = {} if digests else None
        unknown = None
        near_end = end - pos < n * max_entry     # else no digest can run past the end
        for _ in range(n):
            if near_end and end - pos < 2:
                raise FormatError(f"{source}: event {i} truncated in its digest list", offset=record,
                                  partial=log, hint="the log is cut short")
            alg_id = unpack_h(untrusted_log, pos)[0]
            entry = table.get(alg_id)
            if entry is None:
                raise FormatError(f"{source}: event {i} has a digest of algorithm 0x{alg_id:04x} "
                                  "that the Spec ID does not declare", offset=pos, partial=log,
                                  hint="its size is unknown, so the log cannot be read further")
            alg, dsize = entry
            pos += 2
            if near_end and end - pos < dsize:
                raise FormatError(f"{source}: event {i} truncated in its digests", offset=record,
                                  partial=log, hint="the log is cut short")
            if digests:
                if alg is not None:
                    found[alg] = untrusted_log[pos:pos + dsize]
                else:
                    if unknown is None:
                        unknown = {}
                    unknown[alg_id] = untrusted_log[pos:pos + dsize]
            pos += dsize
        if end - pos < 4:
            raise FormatError(f"{source}: event {i} truncated before its event size", offset=record,
                              partial=log, hint="the log is cut short")
        size = unpack_u32(untrusted_log, pos)[0]
        pos += 4
        if size > end - pos:
            raise FormatError(f"{source}: event {i} data size {size} runs past the end of the log",
                              offset=record, partial=log, hint="the log is truncated or corrupt")
        yield i, record, pcr, etype, found, unknown, pos, size
        pos += size
        i += 1
        if pos >= release_at:
            released = _release(untrusted_log, pos, released)
            release_at = pos + _RELEASE_STEP


def read_records(untrusted_log, log: EventLog, starts, lo: int = 0, hi: int | None = None):
    """``walk_records`` for records ``lo <= i < hi`` of a buffer whose offsets ``starts`` the
    validating walk produced (``EventLogStream.record_starts``): event building, the fast JSON
    renderer (in chunks) and the buffer replay read records here."""
    if hi is None:
        hi = len(starts) - 1
    if hi <= lo:
        return iter(())
    return walk_records(untrusted_log, log, start=starts[lo], index=lo, count=hi - lo)


def event_from_record(untrusted_log, record) -> Event:
    """An ``Event`` from one ``read_records`` tuple."""
    i, pos, pcr, etype, digests, unknown, data_start, size = record
    t = _EVENT_TYPES.get(etype)
    ev = Event(i, pos, pcr, t if t is not None else EventType(etype), digests,
               untrusted_log[data_start:data_start + size], data_start + size - pos)
    if unknown is not None:
        ev.unknown_digests = unknown
    return ev


def _events(untrusted_log, log: EventLog, starts, lo: int, hi: int):
    for record in read_records(untrusted_log, log, starts, lo, hi):
        yield event_from_record(untrusted_log, record)
