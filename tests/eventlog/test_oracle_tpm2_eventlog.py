"""Differential test against the YAML of tpm2_eventlog 5.4 (stored in the corpus): every event's
PCR, type, digests and size, and the fields 5.4 decodes (Spec ID, UEFI variables, image loads,
firmware blobs, EV_IPL strings)."""

from __future__ import annotations

import pytest
from helpers_corpus import corpus_root, log_names, tool_results


from pcrtool.eventlog import decode_event, parse_event_log
from pcrtool.eventlog.decode.firmware import Blob
from pcrtool.eventlog.decode.image import ImageLoad
from pcrtool.eventlog.decode.ipl import IplString
from pcrtool.eventlog.decode.noaction import SpecId
from pcrtool.eventlog.decode.variables import Variable
from pcrtool.model import HashAlg

TOOL = tool_results()
AGILE = [n for n in log_names() if n in TOOL and TOOL[n].ok and TOOL[n].events > 0]


def _has_list_items(name: str) -> bool:
    path = corpus_root() / "tpm2_eventlog-5.4" / f"{name}.yaml"
    return path.is_file() and "- EventNum:" in path.read_text()


LISTED = [n for n in AGILE if _has_list_items(n)]
UNLISTED = [n for n in AGILE if not _has_list_items(n)]


def _yaml_events(path):
    from helpers_corpus import need_module

    yaml = need_module("yaml")
    text = path.read_text()
    if "- EventNum:" not in text:
        return None          # SHA1-format output repeats keys without list items: not loadable
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)["events"]


@pytest.mark.parametrize("name", LISTED)
def test_events_equal_tpm2_eventlog_yaml(corpus, name):
    events = _yaml_events(corpus / "tpm2_eventlog-5.4" / f"{name}.yaml")
    if events is None:
        pytest.skip("SHA1-format YAML (checked by counts in test_corpus)")
    log = parse_event_log((corpus / "logs" / name).read_bytes())
    assert len(events) == len(log.events)
    for y, ev in zip(events, log.events):
        assert y["EventNum"] == ev.index
        assert y["PCRIndex"] == ev.pcr
        if ev.event_type.is_known:
            assert y["EventType"] == ev.event_type.name
        assert y["EventSize"] == len(ev.data) or ev.index == 0
        if ev.index == 0:
            spec = y["SpecID"][0]
            value = decode_event(ev, log)
            assert isinstance(value, SpecId)
            s = value.spec_id
            assert (spec["platformClass"], spec["uintnSize"], spec["numberOfAlgorithms"]) == \
                (s.platform_class, s.uintn_size, len(s.algorithms))
            assert spec["vendorInfoSize"] == len(s.vendor_info)
            continue
        ydigests = {d["AlgorithmId"]: d["Digest"] for d in y.get("Digests", [])}
        mine = {alg.bank_name: d.hex() for alg, d in ev.digests.items()}
        assert ydigests == mine
        yev = y.get("Event")
        value = decode_event(ev, log)
        if isinstance(yev, dict) and "VariableName" in yev:
            assert isinstance(value, Variable)
            assert yev["VariableName"] == value.guid
            assert yev["UnicodeName"] == value.name
            assert yev["VariableDataLength"] == len(value.data)
            if "VariableData" in yev and isinstance(yev["VariableData"], str):
                assert yev["VariableData"] == value.data.hex()
        elif isinstance(yev, dict) and "DevicePath" in yev:
            assert isinstance(value, ImageLoad)
            assert yev["ImageLocationInMemory"] == value.location
            assert yev["ImageLengthInMemory"] == value.length
            assert yev["ImageLinkTimeAddress"] == value.link_time_address
            assert yev["LengthOfDevicePath"] == len(ev.data) - 32 - len(value.trailing)
            # 5.4 prints every byte after the 32-byte header as the device path
            assert yev["DevicePath"] == ev.data[32:].hex()
            assert value.device_path.to_bytes() == ev.data[32:32 + yev["LengthOfDevicePath"]]
        elif isinstance(yev, dict) and "BlobBase" in yev and ev.event_type != 7:
            # (5.4 prints EV_S_CRTM_CONTENTS as a blob even when it is a string; we decode text)
            assert isinstance(value, Blob)
            assert (yev["BlobBase"], yev["BlobLength"]) == (value.base, value.length)
        elif isinstance(yev, dict) and "String" in yev and ev.pcr in (8, 9):
            assert isinstance(value, IplString)
            text = yev["String"]
            if text.startswith('"') and text.endswith('"'):   # 5.4 prints a quoted C string
                text = text[1:-1]
            while text.endswith("\\0"):
                text = text[:-2]
            if "\\" not in text and "\n" not in text:
                assert text == value.text


def test_sha1_digest_keys_are_hashalg(corpus):
    log = parse_event_log((corpus / "logs" / "tpm2-tools/event-uefi-sha1-log.bin").read_bytes())
    assert all(set(e.digests) == {HashAlg.SHA1} for e in log.events)


@pytest.mark.parametrize("name", UNLISTED)
def test_sha1_format_logs_equal_tpm2_eventlog_text(corpus, name):
    """5.4 prints SHA1-format logs as repeated keys without list items: compare the key lines."""
    import re

    text = (corpus / "tpm2_eventlog-5.4" / f"{name}.yaml").read_text()
    pcrs = [int(m) for m in re.findall(r"^  PCRIndex: (\d+)$", text, re.M)]
    types = re.findall(r"^  EventType: (\S+)$", text, re.M)
    digests = re.findall(r'^    Digest: "([0-9a-f]+)"$', text, re.M)
    log = parse_event_log((corpus / "logs" / name).read_bytes())
    assert pcrs == [e.pcr for e in log.events]
    assert types == [e.event_type.name for e in log.events]
    assert digests == [e.digests[HashAlg.SHA1].hex() for e in log.events]
