"""Boot emulation: replay a parsed event log into a TPM, one TPM2_PCR_Extend per event.

After ``replay_log_into_tpm`` a freshly started TPM holds the PCRs the logged machine had, except
where that is impossible, which the report says instead of faking it:
- PCR 0 of a log with StartupLocality 3 on a TPM started at locality 0 (its initial value is
  0…03 there and 0…00 here; ``emulate_boot`` / ``Swtpm.reboot(startup_locality=3)`` fix that on
  swtpm),
- PCR 0 of an H-CRTM log (the TPM hashed data the log only has the digest of),
- a bank for which an event carries no digest (the TPM must not get a made-up one),
- log banks the TPM does not have active.
Events of type EV_NO_ACTION and events on PCR indices above 23 are never extended (as in replay).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcrtool.errors import UsageError
from pcrtool.eventlog import EventLog, initial_pcr_value, replay
from pcrtool.eventlog.replay import HCRTM_LOCALITY
from pcrtool.model import PCR_COUNT, HashAlg, PcrSelection, PcrValues
from pcrtool.tcg.constants import EventType


@dataclass(slots=True)
class TpmReplayReport:
    """What ``replay_log_into_tpm`` did and how the TPM ended up compared with the pure replay."""

    banks: list[HashAlg]                      # banks extended in the TPM
    missing_banks: list[HashAlg]              # banks of the log the TPM does not have active
    extends: int                              # TPM2_PCR_Extend commands issued
    expected: PcrValues                       # pure replay of the log (pcrtool.eventlog.replay)
    actual: PcrValues                         # read back from the TPM afterwards
    unreproducible: dict[tuple[HashAlg, int], str] = field(default_factory=dict)
    not_extended: list[int] = field(default_factory=list)  # event indices with PCR > 23
    startup_locality: int | None = None
    hcrtm: bool = False

    def mismatches(self) -> list[tuple[HashAlg, int]]:
        """(bank, PCR) pairs whose TPM value differs from the replay and are not explained."""
        out = []
        for v in self.expected:
            if v.alg not in self.banks or (v.alg, v.pcr) in self.unreproducible:
                continue
            if self.actual.get(v.alg, v.pcr) != v.value:
                out.append((v.alg, v.pcr))
        return out

    def to_json(self) -> dict:
        return {
            "banks": [b.bank_name for b in self.banks],
            "missingBanks": [b.bank_name for b in self.missing_banks],
            "extends": self.extends,
            "startupLocality": self.startup_locality,
            "hcrtm": self.hcrtm,
            "unreproducible": [{"bank": a.bank_name, "pcr": p, "reason": r}
                               for (a, p), r in sorted(self.unreproducible.items())],
            "notExtended": self.not_extended,
            "mismatches": [{"bank": a.bank_name, "pcr": p} for a, p in self.mismatches()],
            "pcrs": self.actual.to_json(),
            "expected": self.expected.to_json(),
        }


def replay_log_into_tpm(tpm, log: EventLog, *, banks: list[HashAlg] | None = None,
                        require_reset: bool = True) -> TpmReplayReport:
    """Extend every measured event of ``log`` into ``tpm`` (TPM2_PCR_Extend, Part 3 §22.2; one
    command per event carrying the digests of all replayed banks), then read the PCRs back.

    With ``require_reset`` the PCRs the log touches must hold their reset values first (a freshly
    started TPM), else UsageError: replaying on top of other measurements proves nothing.
    """
    active = tpm.banks()
    wanted = list(log.banks if banks is None else banks)
    use = [alg for alg in wanted if alg in active]
    missing = [alg for alg in wanted if alg not in active]
    pure = replay(log, banks=use)
    touched = sorted({ev.pcr for ev in log.events
                      if ev.event_type != EventType.EV_NO_ACTION and 0 <= ev.pcr < PCR_COUNT})
    report = TpmReplayReport(use, missing, 0, pure.pcrs, PcrValues(),
                             startup_locality=pure.locality, hcrtm=pure.hcrtm)
    if not use or not touched:
        return report
    selection = PcrSelection({alg: tuple(touched) for alg in use})
    before = tpm.read_pcrs(selection)

    log_pcr0_start = HCRTM_LOCALITY if pure.hcrtm else (pure.locality or 0)
    for alg in use:
        for pcr in touched:
            value = before.get(alg, pcr)
            if pcr == 0:
                if pure.hcrtm:
                    report.unreproducible[(alg, 0)] = (
                        "H-CRTM: the firmware's H-CRTM sequence hashed data the log holds only the "
                        "digest of")
                elif value != initial_pcr_value(alg, 0, locality=log_pcr0_start):
                    here = _startup_locality_of(value)
                    if here is None and require_reset:
                        raise UsageError(f"PCR 0 ({alg.bank_name}) is not at its reset value",
                                         hint="replay into a freshly started TPM (reboot the swtpm first)")
                    report.unreproducible[(alg, 0)] = (
                        f"StartupLocality {log_pcr0_start}: PCR 0 starts at 0…0{log_pcr0_start} on that "
                        f"machine, but this TPM "
                        + (f"was started at locality {here}" if here is not None else "has other measurements"))
                continue
            if require_reset and value != initial_pcr_value(alg, pcr):
                raise UsageError(f"PCR {pcr} ({alg.bank_name}) is not at its reset value",
                                 hint="replay into a freshly started TPM (reboot the swtpm first)")
    for gap in pure.gaps:
        report.unreproducible.setdefault((gap.alg, gap.pcr), f"event {gap.index} has no {gap.alg.bank_name} digest")
    report.not_extended = [n.index for n in pure.not_extended]

    for ev in log.events:
        if ev.event_type == EventType.EV_NO_ACTION or not 0 <= ev.pcr < PCR_COUNT:
            continue
        digests = {alg: ev.digests[alg] for alg in use if alg in ev.digests}
        if not digests:
            continue
        tpm.extend(ev.pcr, digests)
        report.extends += 1
    report.actual = tpm.read_pcrs(selection)
    return report


def _startup_locality_of(value: bytes | None) -> int | None:
    """The locality a PCR 0 reset value encodes (0…0L), or None when PCR 0 was extended."""
    if value is None or any(value[:-1]) or value[-1] > 4:
        return None
    return value[-1]


def emulate_boot(swtpm, tpm, log: EventLog, *, banks: list[HashAlg] | None = None) -> TpmReplayReport:
    """Power-cycle a swtpm the way that machine started (TPM2_Startup from locality 3 when the log
    has StartupLocality 3, else 0), then ``replay_log_into_tpm``: PCR 0 is reproduced too, except
    for H-CRTM logs. ``swtpm`` is a ``pcrtool.swtpm.Swtpm`` (anything with ``reboot``)."""
    from pcrtool.eventlog.replay import find_startup_locality

    locality, hcrtm, _ = find_startup_locality(log)
    swtpm.reboot(startup_locality=3 if locality == 3 and not hcrtm else 0)
    return replay_log_into_tpm(tpm, log, banks=banks)
