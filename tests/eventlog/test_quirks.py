"""The quirk table: every workaround is a named entry with its PCRs and stage, acts only on its
exact trigger, and the parse/replay/verify results say when it acted."""

from __future__ import annotations

import hashlib
import struct

from helpers_build import agile_log, event2, sha1_event, spec_id_record

from pcrtool.eventlog import LogFormat, parse_event_log, replay
from pcrtool.eventlog.quirks import (
    DUPLICATE_STARTUP_LOCALITY, QUIRKS, SHIM_AUTHORITY_TRAILING_BYTES, SHORT_NO_ACTION_FIRST,
    SPECID_VENDORINFO_OUTSIDE_EVENT,
)
from pcrtool.eventlog.families import verify_payload_digests
from pcrtool.model import HashAlg

SEP = b"\x00\x00\x00\x00"
LOC = b"StartupLocality\x00"


def test_table_entries_are_complete_and_unique():
    assert len({q.name for q in QUIRKS}) == len(QUIRKS) == 4
    for q in QUIRKS:
        assert q.description and q.seen_in and q.pcrs and callable(q.apply)
        assert q.stage in ("header", "replay", "verify")
        assert all(0 <= p < 24 for p in q.pcrs)


def test_vendorinfo_outside_the_spec_id_record_is_taken_only_when_it_fills_the_log():
    header = spec_id_record(vendor_info=b"VEND")
    # the eventSize (last 4 bytes of the 32-byte header) counts the record without vendorInfo
    body = header[32:]
    short = len(body) - 4
    data = header[:28] + struct.pack("<I", short) + body
    log = parse_event_log(data)
    assert SPECID_VENDORINFO_OUTSIDE_EVENT.name in log.quirks
    assert log.spec_id.vendor_info == b"VEND" and log.format == LogFormat.CRYPTO_AGILE
    assert SPECID_VENDORINFO_OUTSIDE_EVENT.apply(data + b"x", source="t") is None


def test_startup_locality_first_makes_a_sha1_log_and_only_on_its_exact_trigger():
    data = sha1_event(0, 3, LOC + b"\x03", bytes(20)) + sha1_event(7, 4, SEP)
    assert SHORT_NO_ACTION_FIRST.name in parse_event_log(data).quirks
    assert not SHORT_NO_ACTION_FIRST.apply(3, 18, LOC)
    assert not SHORT_NO_ACTION_FIRST.apply(4, 17, LOC)


def test_second_startup_locality_is_ignored_with_a_warning():
    log = parse_event_log(agile_log(event2(0, 3, LOC + b"\x03"), event2(0, 3, LOC + b"\x00"), event2(0, 4, SEP)))
    r = replay(log)
    assert r.locality == 3
    assert r.warnings == ["event 2: duplicate StartupLocality ignored"]
    d = HashAlg.SHA256.digest(SEP)
    assert r.pcrs.get(HashAlg.SHA256, 0) == hashlib.sha256(bytes(31) + b"\x03" + d).digest()
    assert DUPLICATE_STARTUP_LOCALITY.pcrs == (0,)


def _variable_data(name: str, value: bytes, trailing: bytes = b"") -> bytes:
    encoded = name.encode("utf-16-le")
    return bytes(16) + struct.pack("<QQ", len(name), len(value)) + encoded + value + trailing


def test_shim_authority_with_trailing_bytes_is_not_checked_but_a_plain_one_is():
    bad = {a: b"\x11" * s for a, s in ((0x4, 20), (0xB, 32))}
    plain = event2(7, 0x800000E0, _variable_data("db", b"cert"), bad)
    shim = event2(7, 0x800000E0, _variable_data("Shim", b"cert", b"trailing"), bad)
    assert [w.index for w in verify_payload_digests(parse_event_log(agile_log(plain, shim)))] == [1, 1]
    assert SHIM_AUTHORITY_TRAILING_BYTES.apply(b"x") and not SHIM_AUTHORITY_TRAILING_BYTES.apply(b"")
