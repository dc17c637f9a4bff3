"""Firmware event logs: parse (bytes → untrusted events), decode payloads, replay, verify.

Contract used by the other areas::

    from pcrtool.eventlog import parse_event_log, replay, decode_event
    log = parse_event_log(data)          # EventLog: .events, .spec_id, .banks
    result = replay(log)                 # ReplayResult: .pcrs (PcrValues)
    value = decode_event(log.events[3], log)

Large logs can be walked without keeping events: ``EventLogStream(data)`` (``record_starts()``, then
iterate) with a ``Replayer`` fed event by event.
"""

from pcrtool.eventlog.model import Event, EventLog, LogFormat, SpecIdEvent
from pcrtool.eventlog.parse import EventLogStream, parse_event_log
from pcrtool.eventlog.replay import Replayer, ReplayResult, initial_pcr_value, replay
from pcrtool.tcg.constants import EventType


def __getattr__(name: str):
    # ``decode_event`` (pcrtool.eventlog.decode) loads the payload decoders on first use only.
    if name == "decode_event":
        from pcrtool.eventlog.decode import decode_event
        return decode_event
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Event", "EventLog", "EventLogStream", "EventType", "LogFormat", "Replayer", "ReplayResult",
           "SpecIdEvent", "decode_event", "initial_pcr_value", "parse_event_log", "replay"]
