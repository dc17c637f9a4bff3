"""Differential test against tpm2_eventlog 5.5's decoding (YAML v2 stored next to the keylime
python3-uefi-eventlog logs): Boot#### load options and EFI_SIGNATURE_LISTs, field by field."""

from __future__ import annotations

import pytest
from helpers_corpus import corpus_root, need_module

from pcrtool.eventlog import decode_event, parse_event_log
from pcrtool.eventlog.decode.variables import LoadOption, SignatureList, Variable

DIR = corpus_root() / "logs" / "python3-uefi-eventlog"
PAIRS = sorted(p.stem for p in DIR.glob("*.yml") if (DIR / f"{p.stem}.bin").is_file()) if DIR.is_dir() else []


@pytest.mark.parametrize("name", PAIRS)
def test_variables_equal_tpm2_eventlog_55(corpus, name):
    yaml = need_module("yaml")
    text = (DIR / f"{name}.yml").read_bytes().decode("utf-8", "replace")   # one has a raw 0xAF byte
    doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    log = parse_event_log((DIR / f"{name}.bin").read_bytes())
    boots = lists = 0
    for y in doc["events"]:
        ev = y.get("Event")
        if not isinstance(ev, dict) or "UnicodeName" not in ev:
            continue
        value = decode_event(log.events[y["EventNum"]], log)
        assert isinstance(value, Variable) and value.name == ev["UnicodeName"]
        data = ev.get("VariableData")
        if isinstance(data, dict) and "Description" in data:           # Boot####
            opt = value.value
            assert isinstance(opt, LoadOption)
            assert opt.description == data["Description"]
            assert opt.active == (data["Enabled"] == "Yes")
            assert opt.device_path.to_bytes().hex() == data["DevicePath"][: 2 * data["FilePathListLength"]]
            boots += 1
        elif isinstance(data, list) and data and "SignatureType" in data[0]:   # signature database
            assert all(isinstance(sl, SignatureList) for sl in value.value)
            assert [sl.signature_type for sl in value.value] == [d["SignatureType"] for d in data]
            mine = [(e.owner, e.data.hex()) for sl in value.value for e in sl.entries]
            theirs = [(k["SignatureOwner"], k["SignatureData"]) for d in data for k in d["Keys"]]
            assert mine == theirs
            lists += 1
    assert boots + lists > 0
