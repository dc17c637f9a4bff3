"""The fast ``eventlog show --json=short`` path (fastjson + the multi-process driver) writes exactly
the bytes of the reference path (``iter_log_json``: Event objects, typed decoders, ``json``),
for every corpus log, with --raw and --pcr, over several processes with tiny chunks, and for
mutated logs and arbitrary payloads (hypothesis). No golden files: the reference is the oracle."""

from __future__ import annotations

import dataclasses
import os
import tempfile

import pytest
from helpers_build import agile_log, event2, sha1_event
from helpers_corpus import log_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcrtool.errors import FormatError
from pcrtool.eventlog import decode_event, parse_event_log, replay
from pcrtool.eventlog.export import header_text, iter_log_json, json_text
from pcrtool.eventlog.fastjson import _hot_paths
from pcrtool.eventlog.model import Event
from pcrtool.eventlog.parse import EventLogStream
from pcrtool.eventlog.parallel import show_json
from pcrtool.tcg.constants import EventType

LOGS = log_names()


def reference(data: bytes, *, decode=True, pcrs=None, with_replay=True) -> bytes:
    log = parse_event_log(data)
    events = [e for e in log.events if not pcrs or e.pcr in pcrs]
    extra = {"pcrs": replay(log).pcrs.to_json()} if with_replay else None
    return "".join(iter_log_json(log, events, decode=decode, extra=extra)).encode()


def fast(data: bytes, *, decode=True, pcrs=None, with_replay=True, workers=1, chunk=2000,
         min_events=20_000) -> bytes:
    stream = EventLogStream(data)
    starts = stream.record_starts()
    with tempfile.TemporaryFile() as out:
        show_json(data, stream, starts, decode=decode, pcrs=pcrs, with_replay=with_replay,
                  header=header_text(stream.log), out_fd=out.fileno(), workers=workers,
                  chunk_events=chunk, min_events=min_events)
        out.seek(0)
        return out.read()


def _corpus_data(corpus, name):
    """The log's bytes, or None for the corpus' deliberately corrupt logs (refused by both)."""
    data = (corpus / "logs" / name).read_bytes()
    try:
        parse_event_log(data)
    except FormatError:
        with pytest.raises(FormatError):
            EventLogStream(data).record_starts()
        return None
    return data


@pytest.mark.parametrize("name", LOGS)
def test_corpus_fast_json_equals_reference(corpus, name):
    data = _corpus_data(corpus, name)
    if data is None:
        return
    assert fast(data) == reference(data)
    assert fast(data, decode=False, with_replay=False) == reference(data, decode=False, with_replay=False)
    # pcr filters: some events, none at all (comma placement), the Windows virtual PCR
    for pcrs in ([0, 4, 7], [1234], [0xFFFFFFFF]):
        assert fast(data, pcrs=pcrs) == reference(data, pcrs=pcrs)


@pytest.mark.parametrize("name", LOGS[::6])
def test_corpus_parallel_equals_reference(corpus, name):
    """Two and three renderer processes, chunks of 1 and 5 records: same bytes, same order."""
    data = _corpus_data(corpus, name)
    if data is None:
        return
    ref = reference(data)
    for workers, chunk in ((2, 1), (3, 5), (2, 5000)):
        assert fast(data, workers=workers, chunk=chunk, min_events=0) == ref
    assert fast(data, pcrs=[9], workers=2, chunk=3, min_events=0) == reference(data, pcrs=[9])


def test_big_repeated_log_parallel_equals_reference(corpus):
    """A 20,000-record log built like the benchmark's, through the default driver settings."""
    data = (corpus / "logs" / "guard-oss" / "h12ssl.bios_measurements").read_bytes()
    log = parse_event_log(data)
    first, last = log.events[1], log.events[-1]
    body = data[first.offset:last.offset + last.size]
    big = data[:first.offset] + body * (20_000 // (len(log.events) - 1) + 1)
    assert fast(big, workers=2) == reference(big)


def test_sha1_format_and_padding_equal_reference():
    data = b"".join(sha1_event(p, t, d) for p, t, d in [
        (0, 0x8, b"1.0\0"), (4, 0x80000003, b"\x01" * 40), (8, 0xD, b"grub_cmd: linux /vmlinuz\0"),
        (7, 0x4, b"\0\0\0\0"), (0xFFFFFFFF, 0x3, b"x")]) + bytes(64)
    for workers in (1, 2):
        assert fast(data, workers=workers, chunk=2, min_events=0) == reference(data)


def test_unknown_digest_algorithm_and_types_equal_reference():
    algs = ((0x0004, 20), (0x000B, 32), (0x1234, 8))
    digests = {0x0004: bytes(20), 0x1234: b"\x07" * 8}
    data = agile_log(*[event2(p, t, d, digests=digests, algs=algs) for p, t, d in [
        (8, 0xD, b"kernel_cmdline: ro quiet\0"), (5, 0x7777, b"vendor"), (9, 0xD, b"(hd0)/grub.cfg"),
        (14, 0xD, b"MokList\0"), (12, 0xD, "linux initrd\0".encode("utf-16-le")),
        (8, 0xD, b"grub_cmd: menuentry x {\n\tlinux\n}\0")]], algs=algs)
    assert fast(data) == reference(data)
    assert fast(data, workers=2, chunk=1, min_events=0) == reference(data)


_IPL_TEXT = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "replace")),
    st.sampled_from(["grub_cmd: set x=1", "grub_cmd set", "kernel_cmdline: a b", "MokListX",
                     "(hd0,gpt1)/x", "grub_x", "linux:", "a\tb", "x\0y", "", "\0", "SbatLevel",
                     "module_cmdline: m", "grub_kernel_cmdline q"]).map(str.encode),
    st.text(max_size=20).map(lambda s: s.encode("utf-16-le")),
)


@settings(deadline=None, max_examples=400)
@given(pcr=st.sampled_from([0, 8, 9, 11, 12, 13, 14, 0xFFFFFFFF]), data=_IPL_TEXT,
       nul=st.booleans())
def test_hot_ipl_equals_decoder(pcr, data, nul):
    data = data + (b"\0" if nul else b"")
    text = _hot_paths()[int(EventType.EV_IPL)](pcr, data)
    if text is not None:
        event = Event(1, 0, pcr, EventType.EV_IPL, {}, data, 0)
        assert text == json_text(decode_event(event).to_json())


_SIG_TYPES = [bytes.fromhex("a159c0a5e494a74a87b5ab155c2bf072"),   # x509
              bytes.fromhex("2616c4c14c509240aca941f936934328"),   # sha256
              bytes(16)]


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["db", "dbx", "MokList", "PK", "Boot0001", "SecureBoot"]),
       lists=st.lists(st.tuples(st.sampled_from(_SIG_TYPES), st.binary(max_size=4),
                                st.lists(st.binary(min_size=16, max_size=16), max_size=3),
                                st.integers(16, 40)), max_size=3),
       junk=st.binary(max_size=6), trailing=st.binary(max_size=3),
       etype=st.sampled_from([0x80000001, 0x80000002, 0x8000000C]))
def test_hot_variable_equals_decoder(name, lists, junk, trailing, etype):
    import struct

    value = b""
    for sig_type, header, entries, size in lists:
        body = b"".join((e + bytes(size))[:size] for e in entries)
        value += sig_type + struct.pack("<III", 28 + len(header) + len(body), len(header), size) + header + body
    value += junk
    uname = name.encode("utf-16-le")
    data = (bytes(range(16)) + struct.pack("<QQ", len(name), len(value)) + uname + value + trailing)
    text = _hot_paths()[etype](7, data)
    if text is not None:
        event = Event(1, 0, 7, EventType(etype), {}, data, 0)
        assert text == json_text(decode_event(event).to_json())


@pytest.fixture(scope="module")
def real_log(corpus):
    return (corpus / "logs" / "guard-oss" / "h12ssl.bios_measurements").read_bytes()


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flips=st.lists(st.tuples(st.integers(0, 10 ** 9), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_log_fast_equals_reference(real_log, flips):
    data = bytearray(real_log)
    for at, value in flips:
        data[at % len(data)] = value
    data = bytes(data)
    try:
        ref = reference(data)
    except FormatError:
        with pytest.raises(FormatError):
            EventLogStream(data).record_starts()
        return
    assert fast(data) == ref


def test_worker_failure_is_an_error_not_partial_success(monkeypatch):
    """A renderer process that dies makes the command fail (no silent truncated JSON)."""
    from pcrtool.errors import PcrtoolError
    from pcrtool.eventlog import fastjson

    data = agile_log(*[event2(8, 0xD, b"grub_cmd: x\0") for _ in range(20)])
    pid = os.getpid()
    real = fastjson.RecordRenderer.render

    def render(self, starts, lo, hi, pcrs=None):
        if os.getpid() != pid and lo >= 10:
            raise RuntimeError("boom")
        return real(self, starts, lo, hi, pcrs)

    monkeypatch.setattr(fastjson.RecordRenderer, "render", render)
    with pytest.raises(PcrtoolError):
        fast(data, workers=2, chunk=5, min_events=0)


@pytest.mark.parametrize("name", LOGS)
def test_replay_records_equals_replay(corpus, name):
    from pcrtool.eventlog.replay import replay_records

    data = _corpus_data(corpus, name)
    if data is None:
        return
    stream = EventLogStream(data)
    fast_result = replay_records(data, stream.log, stream.record_starts())
    ref = replay(parse_event_log(data))
    assert fast_result.to_json() == ref.to_json()
    assert fast_result.contributors == ref.contributors


_NODE_KEYS = [(1, 1), (1, 3), (1, 4), (2, 1), (2, 3), (3, 5), (3, 11), (3, 12), (3, 13), (3, 18),
              (3, 23), (3, 24), (4, 1), (4, 2), (4, 4), (4, 6), (4, 8), (5, 1), (0x7F, 0xFF),
              (0x7F, 0x01), (0x7F, 0x05), (9, 9)]


@settings(deadline=None, max_examples=500)
@given(nodes=st.lists(st.tuples(st.sampled_from(_NODE_KEYS), st.binary(max_size=40),
                                st.sampled_from([0, 0, 0, -3, 3, -4])), max_size=6),
       tail=st.binary(max_size=5))
def test_device_path_text_and_nodes_equals_parse(nodes, tail):
    import struct

    from pcrtool.tcg.devicepath import device_path_text_and_nodes, parse_device_path

    data = b""
    for (typ, sub), body, delta in nodes:
        data += struct.pack("<BBH", typ, sub, max(0, len(body) + 4 + delta)) + body
    data += tail
    path = parse_device_path(data)
    assert device_path_text_and_nodes(data) == (path.text, [(n.type, n.subtype) for n in path.nodes])


@settings(deadline=None, max_examples=300)
@given(attributes=st.integers(0, 2 ** 32 - 1), description=st.text(max_size=8),
       path=st.binary(max_size=30), optional=st.binary(max_size=6), path_len_delta=st.integers(-2, 2),
       width=st.sampled_from([4, 8]), junk=st.binary(max_size=3))
def test_hot_load_option_and_image_load_equal_decoders(attributes, description, path, optional,
                                                        path_len_delta, width, junk):
    import struct

    from pcrtool.eventlog.fastjson import _image_load_fast

    path = path + b"\x7f\xff\x04\x00"
    plen = max(0, len(path) + path_len_delta)
    option = struct.pack("<IH", attributes, plen) + description.encode("utf-16-le") + b"\0\0" + path + optional
    name = "Boot0001".encode("utf-16-le")
    data = bytes(16) + struct.pack("<QQ", 8, len(option)) + name + option + junk
    text = _hot_paths()[0x80000002](1, data)
    if text is not None:
        assert text == json_text(decode_event(Event(1, 0, 1, EventType(0x80000002), {}, data, 0)).to_json())
    head = struct.pack("<QIII" if width == 4 else "<QQQQ", 1, 2, 3, plen)
    image = head + path + optional
    log = parse_event_log(agile_log())
    log.spec_id = dataclasses.replace(log.spec_id, uintn_size=1 if width == 4 else 2)
    text = _image_load_fast(width)(4, image)
    if text is not None:
        ev = Event(1, 0, 4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, {}, image, 0)
        assert text == json_text(decode_event(ev, log).to_json())


def test_cli_big_corrupt_log_prints_nothing_and_leaves_no_process(corpus, tmp_path):
    """A log large enough for the early replay process, cut short: one error, empty stdout."""
    import subprocess
    import sys
    from pathlib import Path

    data = (corpus / "logs" / "guard-oss" / "h12ssl.bios_measurements").read_bytes()
    log = parse_event_log(data)
    first, last = log.events[1], log.events[-1]
    body = data[first.offset:last.offset + last.size]
    big = data[:first.offset] + body * 200          # ~6.9 MB, > PARALLEL_MIN_BYTES
    path = tmp_path / "cut.bin"
    path.write_bytes(big[:len(big) - 1000])
    pcrtool = str(Path(sys.executable).with_name("pcrtool"))
    proc = subprocess.run([pcrtool, "eventlog", "show", str(path), "--json=short", "--replay"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"truncated" in proc.stderr or b"runs past" in proc.stderr
    path.write_bytes(big)
    proc = subprocess.run([pcrtool, "eventlog", "show", str(path), "--json=short", "--replay"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stdout == reference(big)


def test_cli_reader_closing_early_is_quiet_with_workers(corpus, tmp_path):
    """`pcrtool eventlog show … | head -c N`: the worker processes stop quietly, no traceback."""
    import subprocess
    import sys
    from pathlib import Path

    data = (corpus / "logs" / "guard-oss" / "h12ssl.bios_measurements").read_bytes()
    log = parse_event_log(data)
    first, last = log.events[1], log.events[-1]
    path = tmp_path / "big.bin"
    path.write_bytes(data[:first.offset] + data[first.offset:last.offset + last.size] * 300)
    pcrtool = str(Path(sys.executable).with_name("pcrtool"))
    for keep in (10, 5_000_000):
        proc = subprocess.Popen([pcrtool, "eventlog", "show", str(path), "--json=short", "--replay"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read(keep)
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
        assert b"Traceback" not in err and b"worker" not in err, err
