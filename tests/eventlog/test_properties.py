"""Property tests: arbitrary and mutated logs raise only pcrtool's FormatError; decoders never
raise; replay of a parsed log never raises."""

from __future__ import annotations


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from helpers_corpus import corpus_root

from pcrtool.errors import FormatError
from pcrtool.eventlog import decode_event, parse_event_log, replay
from pcrtool.eventlog.export import log_to_json

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
SEEDS = ["tpm2-tools/event-moklisttrusted.bin", "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin",
         "python3-uefi-eventlog/ideapad1.bin", "go-attestation/linux_tpm12.json.rawlog.bin",
         "guard-oss/hahuri-invalid-eventlog.values.json.eventlog.bin"]


def _seed(name: str) -> bytes:
    path = corpus_root() / "logs" / name
    return path.read_bytes() if path.is_file() else b""


_SEED_BYTES = {name: _seed(name) for name in SEEDS}


def _exercise(data: bytes) -> None:
    try:
        log = parse_event_log(data)
    except FormatError as e:
        assert e.offset is not None and 0 <= e.offset <= len(data)
        assert e.partial is not None
        log = e.partial
    replay(log)
    log_to_json(log)     # every decoder on every event, JSON-able


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data):
    _exercise(data)


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_a_valid_header(tail):
    _exercise(_SEED_BYTES[SEEDS[0]][:77] + tail)


@SETTINGS
@given(st.sampled_from(SEEDS), st.data())
def test_mutated_real_logs(name, data):
    seed = bytearray(_SEED_BYTES[name])
    if not seed:
        return
    for _ in range(data.draw(st.integers(1, 8))):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "u32"]))
        pos = data.draw(st.integers(0, len(seed) - 1))
        if kind == "flip":
            seed[pos] ^= data.draw(st.integers(1, 255))
        elif kind == "truncate":
            del seed[pos:]
            if not seed:
                break
        elif kind == "insert":
            seed[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        else:  # overwrite a size-like u32 with an extreme value
            value = data.draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000]))
            seed[pos:pos + 4] = value.to_bytes(4, "little")
    _exercise(bytes(seed))


@SETTINGS
@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=200), st.integers(0, 30))
def test_decoders_never_raise(event_type, data, pcr):
    from pcrtool.eventlog import Event, EventType

    value = decode_event(Event(1, 0, pcr, EventType(event_type), {}, data))
    value.to_json()
    value.describe()
