"""Check event payloads against their digests, where the digest is defined over the payload.

Which bytes an event's digest covers is its family's rule (``pcrtool.eventlog.families``:
TCG PFP 1.05 §10.4.4 and firmware/boot-loader practice, as tpm2-tools ``verify_digests`` and
systemd-pcrlock apply them); events whose digest covers an artefact the log does not hold
(images, files, sections, initrds) are not checked. Mismatches are warnings: real firmware gets
these wrong (Arch, GDC logs).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.eventlog.families import family_of
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.model import HashAlg
from pcrtool.tcg.constants import EventType


@dataclass(frozen=True, slots=True)
class DigestWarning:
    index: int
    pcr: int
    event_type: EventType
    alg: HashAlg
    message: str

    def __str__(self) -> str:
        return f"event {self.index} (PCR {self.pcr}, {self.event_type.name}): {self.message}"

    def to_json(self) -> dict:
        return {"event": self.index, "pcr": self.pcr, "type": self.event_type.name,
                "bank": self.alg.bank_name, "message": self.message}


def payload_candidates(event: Event) -> list[bytes] | None:
    """The byte strings one of which the event's digest must be a hash of (None: not checkable)."""
    return family_of(event.event_type).payloads(event.pcr, event.event_type, event.data)


def verify_payload_digests(log: EventLog) -> list[DigestWarning]:
    """One warning per (event, bank) whose digest is not the hash of the payload it covers."""
    warnings: list[DigestWarning] = []
    for event in log.events:
        if not event.is_extended:
            continue
        candidates = payload_candidates(event)
        if candidates is None:
            continue
        for alg, digest in event.digests.items():
            if not any(alg.digest(c) == digest for c in candidates):
                warnings.append(DigestWarning(event.index, event.pcr, event.event_type, alg,
                                              "digest does not match the event data"))
    return warnings
