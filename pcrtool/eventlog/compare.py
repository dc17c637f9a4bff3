"""Compare a replay with PCR values read elsewhere (file, sysfs, TPM) and explain mismatches.

A PCR is compared only where both sides have a value; a PCR the log never extends is reported
as ``not-in-log`` (e.g. PCR 10 holds IMA, which is in another log) unless it still holds its
reset value. For every mismatching PCR the events that fed it are listed (go-attestation's
ReplayError does the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pcrtool.eventlog.replay import ReplayResult, initial_pcr_value
from pcrtool.model import HashAlg, PcrValues


class Status(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    GAP = "gap"                  # the log lacks digests for this bank on this PCR
    NOT_IN_LOG = "not-in-log"    # extended by something the log does not describe
    UNUSED = "unused"            # never extended, still at its reset value


@dataclass(frozen=True, slots=True)
class PcrComparison:
    pcr: int
    alg: HashAlg
    status: Status
    replayed: bytes | None
    actual: bytes
    events: tuple[int, ...] = ()

    def to_json(self) -> dict:
        return {"pcr": self.pcr, "bank": self.alg.bank_name, "status": str(self.status),
                "replayed": self.replayed.hex() if self.replayed is not None else None,
                "actual": self.actual.hex(), "events": list(self.events)}


@dataclass(slots=True)
class Comparison:
    rows: list[PcrComparison] = field(default_factory=list)

    @property
    def mismatches(self) -> list[PcrComparison]:
        return [r for r in self.rows if r.status in (Status.MISMATCH, Status.GAP)]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def mismatching_pcrs(self) -> tuple[int, ...]:
        return tuple(sorted({r.pcr for r in self.mismatches}))

    def to_json(self) -> dict:
        return {"ok": self.ok, "mismatchingPcrs": list(self.mismatching_pcrs()),
                "pcrs": [r.to_json() for r in self.rows]}


def compare_with_pcrs(result: ReplayResult, actual: PcrValues) -> Comparison:
    """Per (bank, PCR) present in ``actual`` and in a bank the log replays: match or not."""
    out = Comparison()
    pcr0_start = 4 if result.hcrtm else (result.locality or 0)
    for value in actual:
        if value.alg not in result.banks:
            continue
        replayed = result.pcrs.get(value.alg, value.pcr)
        feeders = tuple(result.contributors.get(value.pcr, ()))
        if replayed is None:
            reset = initial_pcr_value(value.alg, value.pcr, locality=pcr0_start)
            status = Status.UNUSED if value.value == reset else Status.NOT_IN_LOG
            out.rows.append(PcrComparison(value.pcr, value.alg, status, None, value.value))
            continue
        if replayed == value.value:
            status = Status.MATCH
        elif result.gapped(value.alg, value.pcr):
            status = Status.GAP
        else:
            status = Status.MISMATCH
        out.rows.append(PcrComparison(value.pcr, value.alg, status, replayed, value.value,
                                      feeders if status != Status.MATCH else ()))
    return out
