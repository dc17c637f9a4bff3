"""JSON views of a parsed log (the ``eventlog show --json`` document)."""

from __future__ import annotations

import itertools
import json
from typing import Callable, Iterable, Iterator

from pcrtool.eventlog.decode import decode_event
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.model import HashAlg

_BANK_NAMES = {alg: alg.bank_name for alg in HashAlg}


def event_to_json(event: Event, log: EventLog, *, decode: bool = True) -> dict:
    names = _BANK_NAMES
    out = {
        "index": event.index,
        "offset": event.offset,
        "pcr": event.pcr,
        "type": event.event_type._name_,
        "typeValue": int(event.event_type),
        "digests": {names[alg]: d.hex() for alg, d in event.digests.items()},
        "size": len(event.data),
        "data": event.data.hex(),
    }
    if event.unknown_digests:
        out["unknownDigests"] = {f"0x{a:04x}": d.hex() for a, d in event.unknown_digests.items()}
    if decode:
        out["decoded"] = decode_event(event, log).to_json()
    return out


def log_header_json(log: EventLog) -> dict:
    return {
        "format": str(log.format),
        "banks": [b.bank_name for b in log.banks],
        "specId": log.spec_id.to_json() if log.spec_id else None,
        "size": log.size,
        "padding": {"offset": log.padding[0], "length": log.padding[1]} if log.padding else None,
        "quirks": list(log.quirks),
    }


_DUMPS = json.JSONEncoder(separators=(",", ":")).encode


def json_text(value) -> str:
    """Compact JSON text as ``eventlog show --json=short`` writes it."""
    return _DUMPS(value)


def header_text(log: EventLog) -> str:
    """The document up to and including ``"events":[`` (after the log was walked: padding)."""
    return _DUMPS(log_header_json(log))[:-1] + ',"events":['


def iter_log_json(log: EventLog, events: Iterable[Event] | None = None, *, decode: bool = True,
                  extra: dict | Callable[[], dict] | None = None, batch: int = 512) -> Iterator[str]:
    """The ``log_to_json`` document as compact JSON text in chunks, without building it whole
    (a 100,000-event log would otherwise need gigabytes). ``events`` may be a one-pass iterator;
    ``extra`` (or what it returns, called after the last event) adds top-level keys."""
    dumps = _DUMPS
    yield header_text(log)
    events = iter(log.events if events is None else events)
    names = _BANK_NAMES
    first = True
    while True:
        parts = []
        for e in itertools.islice(events, batch):
            # Hand-assembled for speed (names/hex need no escaping); equals dumps(event_to_json(e)).
            digests = ",".join(f'"{names[a]}":"{d.hex()}"' for a, d in e.digests.items())
            text = (f'{{"index":{e.index},"offset":{e.offset},"pcr":{e.pcr},"type":"{e.event_type._name_}",'
                    f'"typeValue":{int(e.event_type)},"digests":{{{digests}}},"size":{len(e.data)},'
                    f'"data":"{e.data.hex()}"')
            if e.unknown_digests:
                text += ',"unknownDigests":' + dumps({f"0x{a:04x}": d.hex() for a, d in e.unknown_digests.items()})
            if decode:
                text += ',"decoded":' + dumps(decode_event(e, log).to_json())
            parts.append(text + "}")
        if not parts:
            break
        part = ",".join(parts)
        yield part if first else "," + part
        first = False
    tail = "]"
    if callable(extra):
        extra = extra()
    for key, value in (extra or {}).items():
        tail += "," + dumps(key) + ":" + dumps(value)
    yield tail + "}\n"


def log_to_json(log: EventLog, *, decode: bool = True) -> dict:
    """The whole ``eventlog show --json`` document (``iter_log_json`` streams the same)."""
    return {**log_header_json(log), "events": [event_to_json(e, log, decode=decode) for e in log.events]}
