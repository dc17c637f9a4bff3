"""Parser and replay rules on synthetic logs (TCG PFP 1.05 §10; PC Client PTP initial values)."""

from __future__ import annotations

import hashlib

import pytest
from helpers_build import agile_log, event2, sha1_event, spec_id_record

from pcrtool.errors import FormatError
from pcrtool.eventlog import EventType, LogFormat, parse_event_log, replay
from pcrtool.model import HashAlg

SEP = b"\x00\x00\x00\x00"
LOC3 = b"StartupLocality\x00\x03"
S1, S256 = HashAlg.SHA1.value, HashAlg.SHA256.value


def ext(old: bytes, digest: bytes, h=hashlib.sha256) -> bytes:
    return h(old + digest).digest()


def test_crypto_agile_basic_replay_and_fields():
    data = agile_log(event2(7, 4, SEP), event2(4, 0x80000007, b"Calling EFI Application from Boot Option"))
    log = parse_event_log(data)
    assert log.format == LogFormat.CRYPTO_AGILE
    assert log.banks == [HashAlg.SHA1, HashAlg.SHA256]
    assert [e.index for e in log.events] == [0, 1, 2]
    ev = log.events[1]
    assert (ev.pcr, ev.event_type, ev.data) == (7, EventType.EV_SEPARATOR, SEP)
    assert ev.offset == len(spec_id_record())
    assert ev.digests[HashAlg.SHA256] == hashlib.sha256(SEP).digest()
    r = replay(log)
    assert r.pcrs.get(HashAlg.SHA256, 7) == ext(bytes(32), hashlib.sha256(SEP).digest())
    assert r.pcrs.get(HashAlg.SHA1, 7) == ext(bytes(20), hashlib.sha1(SEP).digest(), hashlib.sha1)
    assert r.contributors == {7: [1], 4: [2]}
    assert 0 not in r.pcrs.values[HashAlg.SHA256]    # the Spec ID record is not replayed


def test_startup_locality_3_seeds_pcr0():
    d = hashlib.sha256(b"x").digest()
    log = parse_event_log(agile_log(event2(0, 3, LOC3, {S1: bytes(20), S256: bytes(32)}),
                                    event2(0, 8, b"x")))
    r = replay(log)
    assert r.locality == 3
    assert r.pcrs.get(HashAlg.SHA256, 0) == ext(bytes(31) + b"\x03", d)


def test_startup_locality_after_pcr0_extend_is_ignored_with_warning():
    log = parse_event_log(agile_log(event2(0, 8, b"x"), event2(0, 3, LOC3, {S1: bytes(20), S256: bytes(32)})))
    r = replay(log)
    assert r.locality is None and r.warnings
    assert r.pcrs.get(HashAlg.SHA256, 0) == ext(bytes(32), hashlib.sha256(b"x").digest())


def test_hcrtm_starts_pcr0_at_4_and_is_extended():
    d = hashlib.sha256(b"the H-CRTM measurement").digest()
    log = parse_event_log(agile_log(event2(0, 0x80000010, b"HCRTM", {S1: bytes(20), S256: d}),
                                    event2(0, 8, b"v")))
    r = replay(log)
    assert r.hcrtm
    expected = ext(ext(bytes(31) + b"\x04", d), hashlib.sha256(b"v").digest())
    assert r.pcrs.get(HashAlg.SHA256, 0) == expected


def test_hcrtm_wins_over_startup_locality():
    d = hashlib.sha256(b"h").digest()
    log = parse_event_log(agile_log(event2(0, 3, LOC3, {S1: bytes(20), S256: bytes(32)}),
                                    event2(0, 0x80000010, b"HCRTM", {S1: bytes(20), S256: d})))
    assert replay(log).pcrs.get(HashAlg.SHA256, 0) == ext(bytes(31) + b"\x04", d)


def test_drtm_pcrs_start_at_ff():
    log = parse_event_log(agile_log(event2(17, 4, SEP), event2(22, 4, SEP), event2(23, 4, SEP)))
    r = replay(log)
    d = hashlib.sha256(SEP).digest()
    assert r.pcrs.get(HashAlg.SHA256, 17) == ext(b"\xff" * 32, d)
    assert r.pcrs.get(HashAlg.SHA256, 22) == ext(b"\xff" * 32, d)
    assert r.pcrs.get(HashAlg.SHA256, 23) == ext(bytes(32), d)


def test_no_action_never_extended_and_odd_pcrs_reported():
    log = parse_event_log(agile_log(event2(5, 3, b"SP800-155 Event3anything"),
                                    event2(0xFFFFFFFF, 6, b"tag"), event2(24, 4, SEP), event2(5, 4, SEP)))
    r = replay(log)
    assert r.pcrs.get(HashAlg.SHA256, 5) == ext(bytes(32), hashlib.sha256(SEP).digest())
    assert [(n.index, n.pcr) for n in r.not_extended] == [(2, 0xFFFFFFFF), (3, 24)]
    assert set(r.pcrs.values[HashAlg.SHA256]) == {5}


def test_missing_digest_is_a_reported_gap():
    d = hashlib.sha256(b"only256").digest()
    log = parse_event_log(agile_log(event2(12, 6, b"only256", {S256: d})))
    r = replay(log)
    assert [(g.index, g.pcr, g.alg) for g in r.gaps] == [(1, 12, HashAlg.SHA1)]
    assert r.gapped(HashAlg.SHA1, 12) and not r.gapped(HashAlg.SHA256, 12)
    assert r.pcrs.get(HashAlg.SHA256, 12) == ext(bytes(32), d)


def test_digests_keyed_by_algorithm_not_position():
    d1, d256 = hashlib.sha1(b"a").digest(), hashlib.sha256(b"a").digest()
    log = parse_event_log(agile_log(event2(1, 5, b"a", {S256: d256, S1: d1})))
    assert log.events[1].digests == {HashAlg.SHA256: d256, HashAlg.SHA1: d1}


def test_unknown_algorithm_skipped_by_spec_id_size():
    algs = ((S256, 32), (0x7777, 5))
    data = agile_log(event2(1, 5, b"a", {0x7777: b"\x01" * 5, S256: hashlib.sha256(b"a").digest()}, algs=algs),
                     event2(2, 5, b"b", algs=((S256, 32),)), algs=algs)
    log = parse_event_log(data)
    assert log.banks == [HashAlg.SHA256]
    assert log.events[1].unknown_digests == {0x7777: b"\x01" * 5}
    assert log.events[2].pcr == 2


def test_sm3_bank_replays():
    algs = ((HashAlg.SM3_256.value, 32),)
    d = HashAlg.SM3_256.digest(SEP)
    r = replay(parse_event_log(agile_log(event2(7, 4, SEP, {HashAlg.SM3_256.value: d}, algs=algs), algs=algs)))
    assert r.pcrs.get(HashAlg.SM3_256, 7) == hashlib.new("sm3", bytes(32) + d).digest()


def test_sha1_format_log_with_startup_locality_first():
    data = sha1_event(0, 3, LOC3, bytes(20)) + sha1_event(0, 8, b"v") + sha1_event(7, 4, SEP)
    log = parse_event_log(data)
    assert log.format == LogFormat.SHA1 and log.spec_id is None
    assert "startup-locality-first" in log.quirks
    r = replay(log)
    assert r.locality == 3
    assert r.pcrs.get(HashAlg.SHA1, 0) == ext(bytes(19) + b"\x03", hashlib.sha1(b"v").digest(), hashlib.sha1)


@pytest.mark.parametrize("fill", [b"\x00", b"\xff"])
def test_trailing_padding_reported(fill):
    body = agile_log(event2(7, 4, SEP))
    log = parse_event_log(body + fill * 300)
    assert log.padding == (len(body), 300)
    assert len(log.events) == 2


@pytest.mark.parametrize("fill, n", [(b"\x00", 5), (b"\xff", 100)])
def test_sha1_format_trailing_padding(fill, n):
    body = sha1_event(0, 8, b"v") + sha1_event(7, 4, SEP)
    log = parse_event_log(body + fill * n)
    assert log.format == LogFormat.SHA1 and log.padding == (len(body), n) and len(log.events) == 2


def test_truncated_record_gives_offset_and_partial():
    body = agile_log(event2(7, 4, SEP), event2(4, 5, b"x" * 40))
    cut = body[:-10]
    with pytest.raises(FormatError) as info:
        parse_event_log(cut)
    e = info.value
    assert e.offset == len(agile_log(event2(7, 4, SEP)))
    assert [ev.index for ev in e.partial.events] == [0, 1]
    assert "offset" in e.message


def test_huge_size_field_is_not_trusted():
    body = agile_log() + b"\x07\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\x7f"
    with pytest.raises(FormatError, match="runs past the end"):
        parse_event_log(body)


def test_digest_count_above_spec_id_rejected():
    bad = agile_log() + (7).to_bytes(4, "little") + (4).to_bytes(4, "little") + (1000).to_bytes(4, "little")
    with pytest.raises(FormatError, match="1000 digests"):
        parse_event_log(bad + bytes(64))


@pytest.mark.parametrize("data", [b"", b"\x00" * 10, b"\x01" * 31])
def test_empty_and_tiny_inputs(data):
    with pytest.raises(FormatError) as info:
        parse_event_log(data)
    assert info.value.partial is not None


def test_unknown_event_type_kept_as_pseudo_member():
    log = parse_event_log(agile_log(event2(1, 0x1234, b"?")))
    t = log.events[1].event_type
    assert t == 0x1234 and t.name == "EV_0x00001234" and not t.is_known


def test_spec_id_vendor_info_parsed():
    log = parse_event_log(spec_id_record(vendor_info=b"\xde\xad"))
    assert log.spec_id.vendor_info == b"\xde\xad"
    assert log.uintn_bytes == 8
    assert parse_event_log(spec_id_record(uintn_size=1)).uintn_bytes == 4


def test_real_hcrtm_log_reproduces_the_tpm2_tss_pcr0():
    """tpm2-tss asserts SHA-1 PCR 0 = 15f4e6ca… for this H-CRTM machine (fapi-eventlog.c)."""
    import base64
    from pathlib import Path

    raw = base64.b64decode((Path(__file__).parent / "vectors" / "tpm2-tss-hcrtm-head.b64").read_text())
    log = parse_event_log(raw)
    assert log.banks == [HashAlg.SHA1, HashAlg.SHA256, HashAlg.SM3_256]
    assert log.events[1].event_type == EventType.EV_EFI_HCRTM_EVENT
    r = replay(log)
    assert r.hcrtm
    assert r.pcrs.get(HashAlg.SHA1, 0).hex() == "15f4e6ca457d1af6bc49511a93ba3500ad69acc5"
    assert HashAlg.SM3_256 in r.pcrs.values
