"""Firmware event logs: parse (bytes → untrusted events), decode payloads, replay, verify.

Contract used by the other areas::

    from pcrtool.eventlog import parse_event_log, replay, decode_event
    log = parse_event_log(data)          # EventLog: .events, .spec_id, .banks
    result = replay(log)                 # ReplayResult: .pcrs (PcrValues)
    value = decode_event(log.events[3], log)

Large logs can be walked without keeping events: ``EventLogStream(data)`` (``validate()``, then
iterate) with a ``Replayer`` fed event by event.
"""

from pcrtool.eventlog.model import Event, EventLog, LogFormat, SpecIdEvent
from pcrtool.eventlog.parse import EventLogStream, parse_event_log
from pcrtool.eventlog.replay import Replayer, ReplayResult, initial_pcr_value, replay
from pcrtool.tcg.constants import EventType


def decode_event(event, log=None):
    """Typed value of ``event.data`` (see ``pcrtool.eventlog.decode``)."""
    from pcrtool.eventlog.decode import decode_event as _decode

    return _decode(event, log)


__all__ = ["Event", "EventLog", "EventLogStream", "EventType", "LogFormat", "Replayer", "ReplayResult",
           "SpecIdEvent", "decode_event", "initial_pcr_value", "parse_event_log", "replay"]
