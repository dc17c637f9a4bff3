"""Predicted measurements and their replay into PCR values.

A :class:`Measurement` is one event a boot component will extend: PCR index, the digest it extends
per bank, and enough description (event type, payload) to put it into a log or explain it.
Replay follows TPM 2.0 Part 1 §17 (PCR_Extend: ``PCR := H(PCR || digest)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

from pcrtool.eventlog.replay import initial_pcr_value
from pcrtool.model import HashAlg, PcrValues
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
    def of_hasher(cls, pcr: int, event_type: EventType | None, description: str,
                  digest_of: Callable[[HashAlg], bytes], banks: Iterable[HashAlg],
                  *, data: bytes = b"") -> "Measurement":
        return cls(pcr, {alg: digest_of(alg) for alg in banks}, event_type, description, data)


def extend(alg: HashAlg, value: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend in software: H(value || digest)."""
    return alg.digest(value + digest)


# PCR reset values are the event-log replay's (PC Client PTP: 17–22 all 0xFF, PCR 0 the locality).
initial_value = initial_pcr_value


@dataclass(slots=True)
class Replay:
    """Running PCR values; ``extend`` measurements into it, read ``values``."""

    banks: Sequence[HashAlg]
    start: PcrValues | None = None
    values: PcrValues = field(default_factory=PcrValues)

    def __post_init__(self) -> None:
        if self.start is not None:
            for v in self.start:
                self.values.set(v.alg, v.pcr, v.value)

    def current(self, alg: HashAlg, pcr: int) -> bytes:
        value = self.values.get(alg, pcr)
        return initial_value(alg, pcr) if value is None else value

    def extend(self, m: Measurement) -> None:
        for alg in self.banks:
            digest = m.digests.get(alg)
            if digest is None:
                from pcrtool.errors import FormatError
                raise FormatError(f"measurement {m.description!r} on PCR {m.pcr} has no {alg.bank_name} digest",
                                  hint="predict only the banks every measurement covers")
            self.values.set(alg, m.pcr, extend(alg, self.current(alg, m.pcr), digest))

    def extend_all(self, measurements: Iterable[Measurement]) -> "Replay":
        for m in measurements:
            self.extend(m)
        return self


def replay_measurements(measurements: Iterable[Measurement], banks: Sequence[HashAlg] | None = None,
                        *, start: PcrValues | None = None) -> PcrValues:
    """The PCR values after extending ``measurements`` from reset (or from ``start``); without
    ``banks``, every bank all the measurements carry a digest for."""
    if banks is None:
        measurements = list(measurements)
        common = [alg for alg in HashAlg if all(alg in m.digests for m in measurements)]
        banks = common if measurements else []
    return Replay(banks, start).extend_all(measurements).values


def copy_values(values: PcrValues) -> PcrValues:
    out = PcrValues()
    for v in values:
        out.set(v.alg, v.pcr, v.value)
    return out
