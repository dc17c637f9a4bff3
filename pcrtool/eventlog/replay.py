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
    """(locality, hcrtm, warnings): StartupLocality must precede PCR 0 extends; H-CRTM wins."""
    locality: int | None = None
    hcrtm = False
    warnings: list[str] = []
    pcr0_extended = False
    for ev in log.events:
        if ev.pcr != 0:
            continue
        if ev.event_type == EventType.EV_NO_ACTION:
            if len(ev.data) == 17 and ev.data[:16] == STARTUP_LOCALITY_SIGNATURE:
                if pcr0_extended:
                    warnings.append(f"event {ev.index}: StartupLocality after a PCR 0 extend ignored")
                elif locality is not None:
                    warnings.append(f"event {ev.index}: duplicate StartupLocality ignored")
                else:
                    locality = ev.data[16]
            continue
        if ev.event_type == EventType.EV_EFI_HCRTM_EVENT and ev.data[:5] == HCRTM_DATA:
            hcrtm = True
        pcr0_extended = True
    return locality, hcrtm, warnings


def _hash_factory(alg: HashAlg):
    name = alg.hashlib_name
    fast = getattr(hashlib, name, None)
    if fast is not None:
        return fast
    return lambda data=b"": hashlib.new(name, data)


def replay(log: EventLog, *, banks: list[HashAlg] | None = None) -> ReplayResult:
    """Replay ``log`` into every bank it declares (or ``banks``); see the module docstring."""
    banks = list(log.banks if banks is None else banks)
    locality, hcrtm, warnings = find_startup_locality(log)
    pcr0_start = HCRTM_LOCALITY if hcrtm else (locality or 0)
    values: dict[HashAlg, dict[int, bytes]] = {alg: {} for alg in banks}
    result = ReplayResult(PcrValues(), banks, locality=locality, hcrtm=hcrtm, warnings=warnings)
    contributors: dict[int, list[int]] = {}
    hashers = [(alg, _hash_factory(alg), values[alg]) for alg in banks]
    no_action = EventType.EV_NO_ACTION
    gaps = result.gaps
    for ev in log.events:
        if ev.event_type == no_action:
            continue
        pcr = ev.pcr
        if not 0 <= pcr < PCR_COUNT:
            result.not_extended.append(NotExtended(
                ev.index, pcr, "virtual PCR 0xFFFFFFFF" if pcr == 0xFFFFFFFF else "PCR index > 23"))
            continue
        lst = contributors.get(pcr)
        if lst is None:
            lst = contributors[pcr] = []
        lst.append(ev.index)
        digests = ev.digests
        for alg, new, bank in hashers:
            digest = digests.get(alg)
            if digest is None:
                gaps.append(ReplayGap(ev.index, pcr, alg))
                continue
            old = bank.get(pcr)
            if old is None:
                old = initial_pcr_value(alg, pcr, locality=pcr0_start)
            bank[pcr] = new(old + digest).digest()
    # Untouched PCRs in a bank that has gaps only: keep the bank's table consistent.
    for alg in banks:
        for pcr, value in sorted(values[alg].items()):
            result.pcrs.values.setdefault(alg, {})[pcr] = value
    result.contributors = contributors
    return result
