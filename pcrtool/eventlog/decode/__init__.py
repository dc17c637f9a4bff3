"""Typed decoding of event data, one module per event family (pcr-oracle's split); which
decoder an event type gets is its family's (``pcrtool.eventlog.families``).

``decode_event(event, log)`` never raises on bad payloads: a payload that does not decode becomes
``Undecodable(reason, raw)``, because event data is untrusted and a report must still be shown.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import construct

from pcrtool.errors import FormatError
from pcrtool.eventlog.model import Event, EventLog


@dataclass(frozen=True, slots=True)
class Raw:
    """Event data pcrtool has no decoder for."""

    data: bytes

    def to_json(self) -> dict:
        return {"raw": self.data.hex()}

    def describe(self) -> str:
        return self.data[:32].hex() + ("…" if len(self.data) > 32 else "")


@dataclass(frozen=True, slots=True)
class Undecodable:
    """Event data that does not match the structure its event type implies."""

    reason: str
    data: bytes

    def to_json(self) -> dict:
        return {"undecodable": self.reason, "raw": self.data.hex()}

    def describe(self) -> str:
        return f"(undecodable: {self.reason})"


_DECODERS: dict | None = None


def decode_event(event: Event, log: EventLog | None = None):
    """Decode ``event.data`` according to its type (and PCR, for EV_IPL/EV_EVENT_TAG)."""
    global _DECODERS
    if _DECODERS is None:
        from pcrtool.eventlog.families import decoders
        _DECODERS = decoders()
    decoder = _DECODERS.get(event.event_type)
    if decoder is None:
        return Raw(event.data)
    try:
        return decoder(event, log)
    except FormatError as e:
        return Undecodable(e.message, event.data)
    except (ValueError, IndexError, UnicodeDecodeError, OverflowError, struct.error,
            construct.ConstructError) as e:  # malformed untrusted payloads
        return Undecodable(f"{type(e).__name__}: {e}", event.data)
