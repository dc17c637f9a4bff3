"""Predicted measurements and their replay into PCR values.

A :class:`Measurement` is one event a boot component will extend: PCR index, the digest it extends
per bank, and enough description (event type, payload) to put it into a log or explain it.
Replay follows TPM 2.0 Part 1 §17 (PCR_Extend: ``PCR := H(PCR || digest)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from pcrtool.errors import FormatError
from pcrtool.eventlog.families import digests_of
from pcrtool.eventlog.replay import Replayer
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues
from pcrtool.tcg.constants import EventType

DEFAULT_BANKS: tuple[HashAlg, ...] = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)

# Event types (TCG PFP §10.4.1) come from pcrtool.tcg; a userspace record (systemd-pcrextend) has none.
USERSPACE = None  # event_type of a userspace log record (systemd-pcrextend), not a firmware event


@dataclass(frozen=True, slots=True)
class Measurement:
    """One extend: ``digests[alg]`` goes into ``pcr`` of bank ``alg``."""

    pcr: int
    digests: Mapping[HashAlg, bytes]
    event_type: EventType | None = None
    description: str = ""
    data: bytes = field(default=b"", compare=False)  # logged payload; the digests are what count

    @classmethod
    def of_data(cls, pcr: int, event_type: EventType | None, description: str, hashed: bytes,
                banks: Iterable[HashAlg], *, data: bytes | None = None) -> "Measurement":
        """A measurement whose digest is H(hashed) in every bank (``data`` defaults to ``hashed``)."""
        return cls(pcr, {alg: alg.digest(hashed) for alg in banks}, event_type, description,
                   hashed if data is None else data)

    @classmethod
    def of_event(cls, pcr: int, event_type: EventType, description: str, data: bytes,
                 banks: Iterable[HashAlg]) -> "Measurement":
        """A measurement whose digests its event family derives from the logged ``data``
        (``pcrtool.eventlog.families``: e.g. a variable event hashes the whole UEFI_VARIABLE_DATA,
        EV_EFI_VARIABLE_BOOT only the variable's data, GRUB's PCR 8 strings the text after the prefix)."""
        return cls(pcr, digests_of(pcr, event_type, data, banks), event_type, description, data)


def replay_measurements(measurements: Iterable[Measurement],
                        banks: Sequence[HashAlg] | None = None) -> PcrValues:
    """The PCR values after extending ``measurements`` from reset (the event-log replay's
    ``Replayer.extend``); without ``banks``, every bank all the measurements carry a digest for."""
    measurements = list(measurements)
    if banks is None:
        banks = [alg for alg in HashAlg if all(alg in m.digests for m in measurements)] if measurements else []
    replayer = Replayer(list(banks))
    for i, m in enumerate(measurements):
        if not 0 <= m.pcr < PCR_COUNT:
            raise FormatError(f"measurement {m.description!r} is on PCR {m.pcr}", hint="PCRs are 0-23")
        missing = [alg for alg in replayer.banks if alg not in m.digests]
        if missing:
            raise FormatError(f"measurement {m.description!r} on PCR {m.pcr} has no {missing[0].bank_name} digest",
                              hint="predict only the banks every measurement covers")
        replayer.extend(i, m.pcr, m.digests)
    return replayer.result().pcrs
