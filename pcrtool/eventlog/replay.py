"""Replay an event log into PCR values, bank by bank.

PCR_new = H(PCR_old || digest) (TPM 2.0 Part 1 §17). Initial values (TCG PC Client PTP
"PCR Initial and Reset Values"; TPM 2.0 Part 1 §34.3 H-CRTM):
- PCR 0: zeros with the last byte = startup locality (StartupLocality EV_NO_ACTION, 0 or 3), or
  0…04 when the log has an EV_EFI_HCRTM_EVENT on PCR 0 (that event *is* extended);
- PCR 17–22: all 0xFF (SRTM replay); every other PCR: zeros.
EV_NO_ACTION is never extended. PCR indices above 23 (Windows uses 0xFFFFFFFF) are reported,
never extended. An event lacking a digest for a bank is a reported gap in that bank.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from pcrtool.eventlog.model import Event, EventLog
from pcrtool.eventlog.quirks import DUPLICATE_STARTUP_LOCALITY
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues
from pcrtool.tcg.constants import HCRTM_DATA, STARTUP_LOCALITY_SIGNATURE, EventType

DRTM_PCRS = range(17, 23)
HCRTM_LOCALITY = 4


@dataclass(frozen=True, slots=True)
class ReplayGap:
    """Event ``index`` extends ``pcr`` but carries no digest for ``alg``."""

    index: int
    pcr: int
    alg: HashAlg


@dataclass(frozen=True, slots=True)
class NotExtended:
    """An event on a PCR index that does not exist (reported, never extended)."""

    index: int
    pcr: int
    reason: str


@dataclass(slots=True)
class ReplayResult:
    """Replayed values of every PCR the log extends (``pcrs``), plus how they were reached."""

    pcrs: PcrValues
    banks: list[HashAlg]
    locality: int | None = None
    hcrtm: bool = False
    gaps: list[ReplayGap] = field(default_factory=list)
    not_extended: list[NotExtended] = field(default_factory=list)
    contributors: dict[int, list[int]] = field(default_factory=dict)   # pcr -> event indices
    warnings: list[str] = field(default_factory=list)

    def gapped(self, alg: HashAlg, pcr: int) -> bool:
        return any(g.alg == alg and g.pcr == pcr for g in self.gaps)

    def to_json(self) -> dict:
        return {
            "banks": [b.bank_name for b in self.banks],
            "startupLocality": self.locality,
            "hcrtm": self.hcrtm,
            "pcrs": self.pcrs.to_json(),
            "gaps": [{"event": g.index, "pcr": g.pcr, "bank": g.alg.bank_name} for g in self.gaps],
            "notExtended": [{"event": n.index, "pcr": n.pcr, "reason": n.reason}
                            for n in self.not_extended],
            "warnings": list(self.warnings),
        }


def initial_pcr_value(alg: HashAlg, pcr: int, *, locality: int = 0) -> bytes:
    """The value a PCR holds at power-on before any extend (PC Client PTP; locality for PCR 0)."""
    if pcr in DRTM_PCRS:
        return b"\xff" * alg.digest_size
    if pcr == 0:
        return bytes(alg.digest_size - 1) + bytes([locality & 0xFF])
    return bytes(alg.digest_size)


def find_startup_locality(log: EventLog) -> tuple[int | None, bool, list[str]]:
    """(locality, hcrtm, warnings) as replay sees them (see ``Replayer``)."""
    replayer = Replayer(log.banks)
    for ev in log.events:
        replayer.feed(ev)
    return replayer.locality, replayer.hcrtm, replayer.warnings


def _hash_factory(alg: HashAlg):
    name = alg.hashlib_name
    fast = getattr(hashlib, name, None)
    if fast is not None:
        return fast
    return lambda data=b"": hashlib.new(name, data)


class Replayer:
    """Replay events one at a time (a 100,000-event log need not be kept in memory).

    The one PCR replay: log events go through ``feed`` (which knows EV_NO_ACTION, locality and
    H-CRTM), predicted measurements and userspace records straight through ``extend``.
    PCR 0's start value is fixed at its first extend: the locality of a StartupLocality event
    seen before it, or 4 when that first extend is the EV_EFI_HCRTM_EVENT (H-CRTM measurements
    precede everything, TPM 2.0 Part 1 §34.3). StartupLocality after a PCR 0 extend, a duplicate
    one, or an H-CRTM event that is not first are ignored with a warning.
    """

    def __init__(self, banks: list[HashAlg], *, locality: int | None = None, hcrtm: bool = False) -> None:
        self.banks = list(banks)
        self.values: dict[HashAlg, dict[int, bytes]] = {alg: {} for alg in self.banks}
        self.locality = locality
        self.hcrtm = hcrtm
        self.pcr0_started = hcrtm
        self.warnings: list[str] = []
        self.gaps: list[ReplayGap] = []
        self.not_extended: list[NotExtended] = []
        self.contributors: dict[int, list[int]] = {}
        self._bind()

    def _bind(self) -> None:
        self._hashers = [(alg, _hash_factory(alg), self.values.setdefault(alg, {})) for alg in self.banks]

    @classmethod
    def resume(cls, result: "ReplayResult") -> "Replayer":
        """A replayer that goes on from ``result`` and updates it in place (e.g. userspace records
        after the firmware log)."""
        replayer = cls(result.banks, locality=result.locality, hcrtm=result.hcrtm)
        replayer.pcr0_started = True
        replayer.values = result.pcrs.values
        replayer.gaps, replayer.contributors = result.gaps, result.contributors
        replayer.not_extended, replayer.warnings = result.not_extended, result.warnings
        replayer._bind()
        return replayer

    def feed(self, ev: Event) -> None:
        pcr = ev.pcr
        if ev.event_type == EventType.EV_NO_ACTION:
            if pcr == 0 and len(ev.data) == 17 and ev.data[:16] == STARTUP_LOCALITY_SIGNATURE:
                if not DUPLICATE_STARTUP_LOCALITY.apply(self, ev.index):
                    self.locality = ev.data[16]
            return
        if not 0 <= pcr < PCR_COUNT:
            self.not_extended.append(NotExtended(
                ev.index, pcr, "virtual PCR 0xFFFFFFFF" if pcr == 0xFFFFFFFF else "PCR index > 23"))
            return
        if pcr == 0:
            is_hcrtm = ev.event_type == EventType.EV_EFI_HCRTM_EVENT and ev.data[:5] == HCRTM_DATA
            if not self.pcr0_started:
                self.pcr0_started = True
                self.hcrtm = is_hcrtm
            elif is_hcrtm:
                self.warnings.append(f"event {ev.index}: H-CRTM event after other PCR 0 extends")
        self.extend(ev.index, pcr, ev.digests)

    def extend(self, index: int, pcr: int, digests) -> None:
        """TPM2_PCR_Extend of ``digests[alg]`` into ``pcr`` of every bank (TPM 2.0 Part 1 §17),
        from the reset value on first use; a bank without a digest is a gap. ``index`` names the
        event in ``contributors`` and gaps."""
        lst = self.contributors.get(pcr)
        if lst is None:
            lst = self.contributors[pcr] = []
        lst.append(index)
        for alg, new, bank in self._hashers:
            digest = digests.get(alg)
            if digest is None:
                self.gaps.append(ReplayGap(index, pcr, alg))
                continue
            old = bank.get(pcr)
            if old is None:
                old = initial_pcr_value(alg, pcr, locality=self.pcr0_start)
            bank[pcr] = new(old + digest).digest()

    @property
    def pcr0_start(self) -> int:
        return HCRTM_LOCALITY if self.hcrtm else (self.locality or 0)

    def result(self) -> ReplayResult:
        pcrs = PcrValues()
        for alg in self.banks:
            for pcr, value in sorted(self.values[alg].items()):
                pcrs.values.setdefault(alg, {})[pcr] = value
        return ReplayResult(pcrs, self.banks, locality=self.locality, hcrtm=self.hcrtm,
                            gaps=self.gaps, not_extended=self.not_extended,
                            contributors=self.contributors, warnings=self.warnings)


def replay(log: EventLog, *, banks: list[HashAlg] | None = None) -> ReplayResult:
    """Replay ``log`` into every bank it declares (or ``banks``); see the module docstring."""
    replayer = Replayer(list(log.banks if banks is None else banks))
    feed = replayer.feed
    for ev in log.events:
        feed(ev)
    return replayer.result()


def replay_records(buf, log: EventLog, starts) -> ReplayResult:
    """``replay(log)`` of a log given as its buffer and validated record offsets
    (``EventLogStream.record_starts()``), without keeping the events: records that only extend
    PCR 1-23 go straight to ``Replayer.extend``, every other record through ``Replayer.feed``."""
    from pcrtool.eventlog.parse import event_from_record, read_records

    replayer = Replayer(log.banks)
    feed, extend = replayer.feed, replayer.extend
    no_action = int(EventType.EV_NO_ACTION)
    for record in read_records(buf, log, starts):
        pcr, etype = record[2], record[3]
        if etype == no_action or not 0 < pcr < PCR_COUNT:
            feed(event_from_record(buf, record))
        else:
            extend(record[0], pcr, record[4])
    return replayer.result()


def extend(alg: HashAlg, value: bytes, digest: bytes) -> bytes:
    """TPM2_PCR_Extend in software: H(value || digest)."""
    return alg.digest(value + digest)
