"""Substitution engine: identity on every corpus log, family replacement, reports."""

from __future__ import annotations

import pytest

from helpers_corpus_predict import corpus_logs
from pcrtool.errors import PcrtoolError
from pcrtool.model import HashAlg
from pcrtool.predict.cmdline import stub_cmdline_measurement
from pcrtool.predict.emulate import event_log_bytes
from tests.support.firmware import demo_firmware_measurements
from pcrtool.predict.events import Measurement, replay_measurements
from pcrtool.predict.pe import application_measurement
from pcrtool.predict.substitute import substitute_log
from pcrtool.predict.uki import phase_measurements, section_measurements
from pcrtool.tcg.constants import EventType

BANKS = [HashAlg.SHA1, HashAlg.SHA256]


@pytest.mark.parametrize("name", corpus_logs())
def test_empty_release_reproduces_the_replay_of_every_corpus_log(corpus, name):
    from pcrtool.eventlog import parse_event_log, replay

    try:
        log = parse_event_log((corpus / "logs" / name).read_bytes())
    except PcrtoolError as e:
        pytest.skip(f"log does not parse: {e.message}")
    rep = replay(log)
    result = substitute_log(log, [], log.banks)
    assert not result.replaced
    for v in rep.pcrs:
        if not rep.gapped(v.alg, v.pcr):
            assert result.values.get(v.alg, v.pcr) == v.value, (v.alg.bank_name, v.pcr)


def _digest_app(tag: bytes):
    return {alg: alg.digest(tag) for alg in BANKS}


def _boot(apps, sections, cmdline=None):
    before, at_boot = demo_firmware_measurements(BANKS)
    ms = before + at_boot + [application_measurement(_digest_app(a), BANKS, name=a.hex()) for a in apps]
    ms += section_measurements(sections, BANKS)
    if cmdline is not None:
        ms.append(stub_cmdline_measurement(cmdline, BANKS))
    return ms


def test_release_replaces_its_families_and_keeps_the_rest():
    old = _boot([b"shim 15.7", b"sd-boot 252", b"uki 1"], {".linux": b"K1"}, "quiet")
    new = _boot([b"shim 15.8", b"sd-boot 252", b"uki 2"], {".linux": b"K2", ".initrd": b"I2"}, "rw")
    release = [m for m in new if m.pcr in (4, 11, 12) and m.event_type not in
               (EventType.EV_SEPARATOR, EventType.EV_EFI_ACTION)]
    result = substitute_log(event_log_bytes(old, BANKS), release, BANKS)
    assert result.values == replay_measurements(new, BANKS)
    # 3 applications + 2 section events + 1 cmdline replaced; separators/actions kept from the log
    assert len(result.replaced) == 6
    assert [e.source for e in result.events if e.pcr == 4] == ["log", "log", "release", "release", "release"]


def test_families_missing_from_the_log_are_appended_and_noted():
    old = _boot([b"uki 1"], {})
    release = section_measurements({".linux": b"K"}, BANKS) + phase_measurements("enter-initrd", BANKS)
    result = substitute_log(event_log_bytes(old, BANKS), release, BANKS)
    assert result.values.get(HashAlg.SHA256, 11) == replay_measurements(release, BANKS).get(HashAlg.SHA256, 11)
    assert any("PCR 11: the reference log has no ipl event" in n for n in result.notes)


def test_unknown_event_kinds_are_kept_and_reported():
    old = _boot([b"uki 1"], {})
    result = substitute_log(event_log_bytes(old, BANKS), [], BANKS)
    kinds = " ".join(result.notes)
    assert "EV_POST_CODE" in kinds and "EV_S_CRTM_VERSION" in kinds and len(result.unknown) >= 3


def test_bank_missing_from_the_log_is_a_usage_error():
    from pcrtool.errors import UsageError

    log = event_log_bytes(_boot([b"x"], {}), [HashAlg.SHA256])
    with pytest.raises(UsageError, match="no sha1 bank"):
        substitute_log(log, [], [HashAlg.SHA1])


def test_events_without_a_digest_leave_that_pcr_unpredicted():
    from pcrtool.eventlog import parse_event_log

    log = parse_event_log(event_log_bytes(_boot([b"x"], {}), BANKS))
    ev = next(e for e in log.events if e.pcr == 6 and e.is_extended)
    del ev.digests[HashAlg.SHA1]
    result = substitute_log(log, [], BANKS)
    assert result.values.get(HashAlg.SHA1, 6) is None and (HashAlg.SHA1, 6) in result.gaps
    assert result.values.get(HashAlg.SHA256, 6) is not None


def test_measurement_requires_every_bank():
    with pytest.raises(PcrtoolError, match="no sha1 digest"):
        replay_measurements([Measurement(4, {HashAlg.SHA256: bytes(32)}, EventType.EV_IPL, "x")], BANKS)


from hypothesis import given, settings, strategies as st  # noqa: E402

_apps = st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=4)
_sections = st.dictionaries(st.sampled_from([".linux", ".osrel", ".cmdline", ".initrd", ".uname"]),
                            st.binary(min_size=1, max_size=16), min_size=1)


@settings(deadline=None, max_examples=40)
@given(apps_a=_apps, apps_b=_apps, secs_a=_sections, secs_b=_sections,
       cmd_a=st.text(st.characters(blacklist_categories=("Cs",)), max_size=10),
       cmd_b=st.text(st.characters(blacklist_categories=("Cs",)), max_size=10))
def test_predicting_b_from_the_log_of_a_equals_booting_b(apps_a, apps_b, secs_a, secs_b, cmd_a, cmd_b):
    boot_a = _boot(apps_a, secs_a, cmd_a)
    boot_b = _boot(apps_b, secs_b, cmd_b)
    release_b = [m for m in boot_b if m.pcr in (4, 11, 12)
                 and m.event_type not in (EventType.EV_SEPARATOR, EventType.EV_EFI_ACTION)]
    result = substitute_log(event_log_bytes(boot_a, BANKS), release_b, BANKS)
    assert result.values == replay_measurements(boot_b, BANKS)
