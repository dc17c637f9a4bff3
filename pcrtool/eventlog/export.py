"""JSON views of a parsed log (the ``eventlog show --json`` document)."""

from __future__ import annotations

from pcrtool.eventlog.decode import decode_event
from pcrtool.eventlog.model import Event, EventLog


def event_to_json(event: Event, log: EventLog, *, decode: bool = True) -> dict:
    out = {
        "index": event.index,
        "offset": event.offset,
        "pcr": event.pcr,
        "type": event.event_type.name,
        "typeValue": int(event.event_type),
        "digests": {alg.bank_name: d.hex() for alg, d in event.digests.items()},
        "size": len(event.data),
        "data": event.data.hex(),
    }
    if event.unknown_digests:
        out["unknownDigests"] = {f"0x{a:04x}": d.hex() for a, d in event.unknown_digests.items()}
    if decode:
        out["decoded"] = decode_event(event, log).to_json()
    return out


def log_to_json(log: EventLog, *, decode: bool = True) -> dict:
    return {
        "format": str(log.format),
        "banks": [b.bank_name for b in log.banks],
        "specId": log.spec_id.to_json() if log.spec_id else None,
        "size": log.size,
        "padding": {"offset": log.padding[0], "length": log.padding[1]} if log.padding else None,
        "quirks": list(log.quirks),
        "events": [event_to_json(e, log, decode=decode) for e in log.events],
    }
