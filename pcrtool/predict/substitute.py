"""Substitution engine (pcr-oracle's model): a reference log with a release's events swapped in.

The reference log of the target machine is the truth for everything a release does not change
(firmware, option ROMs, boot variables …). Each measurement the release predicts belongs to an
event *family* (PCR + kind: boot application, Secure Boot variable by name, authority by variable
name, stub EV_IPL,
tagged event by id, GPT, userspace phase). For every family the release describes, the log's
events of that family are removed and the release's events go where the first of them stood (or
after the PCR's last event if the log had none); all other events are kept and, when their kind
is not one pcrtool knows, reported. Separators and EV_EFI_ACTIONs always come from the log.
Replay then follows TPM 2.0 Part 1 §17 from the log's initial values (startup locality, H-CRTM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.eventlog.families import STUB_INITRD_DESCRIPTIONS, family_of
from pcrtool.model import HashAlg, PcrValues
from pcrtool.predict.events import Measurement
from pcrtool.tcg.constants import EventType

def family(pcr: int, event_type: EventType | None, data: bytes, description: str = "") -> tuple | None:
    """The substitution key of an event (its family's ``key``), or None when it is always kept
    (separators, actions, unknown kinds); a userspace measurement has no event type."""
    if event_type is None:
        return (pcr, "userspace")
    return family_of(event_type).key(pcr, event_type, data, description)


def measurement_family(m: Measurement) -> tuple | None:
    """The key of a predicted measurement: only systemd-stub's initrd EV_IPL on PCR 12 are told
    apart by their description."""
    stub_initrd = m.event_type == EventType.EV_IPL and m.pcr == 12 and \
        m.description.startswith(STUB_INITRD_DESCRIPTIONS)
    return family(m.pcr, m.event_type, m.data, m.description if stub_initrd else "")


@dataclass(frozen=True, slots=True)
class PlannedEvent:
    """One extend of the substituted boot: from the log or from the release."""

    pcr: int
    digests: dict
    event_type: EventType | None
    description: str
    source: str  # "log" | "release"


@dataclass(slots=True)
class SubstitutionResult:
    values: PcrValues
    events: list[PlannedEvent]
    replaced: list[int] = field(default_factory=list)       # log event indices replaced
    unknown: list[int] = field(default_factory=list)        # kept log events of unknown kinds
    gaps: set[tuple[HashAlg, int]] = field(default_factory=set)  # (bank, PCR) an event lacks a digest for
    notes: list[str] = field(default_factory=list)

    def measurements(self, pcrs: Sequence[int] | None = None) -> list[Measurement]:
        """The planned extends as Measurements (e.g. to boot-emulate them into a TPM)."""
        return [Measurement(e.pcr, e.digests, e.event_type, e.description) for e in self.events
                if pcrs is None or e.pcr in pcrs]


def logged_secure_boot(reference_log: bytes | object) -> bool | None:
    """The SecureBoot variable as the log's PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG shows it (None: absent)."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.predict.secureboot import Variable

    log = parse_event_log(reference_log) if isinstance(reference_log, (bytes, bytearray)) else reference_log
    for e in log.events:
        if e.pcr == 7 and e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG:
            try:
                var = Variable.from_variable_data(e.data)
            except FormatError:
                continue
            if var.name == "SecureBoot":
                return bool(var.data[:1] == b"\x01")
    return None


def substitute_log(reference_log: bytes | object, release: Sequence[Measurement],
                   banks: Sequence[HashAlg], *, if_present: Sequence[Measurement] = ()) -> SubstitutionResult:
    """Replay ``reference_log`` (bytes or a parsed EventLog) with ``release`` substituted in.

    ``if_present`` measurements replace their family only when the log has it, and are otherwise
    dropped (e.g. the Linux EFI stub's PCR 9 events: older kernels do not measure).
    """
    from pcrtool.eventlog import parse_event_log
    from pcrtool.eventlog.replay import Replayer, find_startup_locality

    log = parse_event_log(reference_log) if isinstance(reference_log, (bytes, bytearray)) else reference_log
    missing = [b for b in banks if b not in log.banks]
    if missing:
        raise UsageError(f"reference log has no {missing[0].bank_name} bank",
                         hint=f"its banks: {', '.join(b.bank_name for b in log.banks)}")

    release_families: dict[tuple, list[Measurement]] = {}
    for m in release:
        key = measurement_family(m)
        if key is None:
            continue  # separators/actions: the log's own are the truth
        release_families.setdefault(key, []).append(m)
    logged = {family(e.pcr, e.event_type, e.data) for e in log.events if e.is_extended}
    for m in if_present:
        key = measurement_family(m)
        if key is not None and key in logged:
            release_families.setdefault(key, []).append(m)

    planned: list[PlannedEvent] = []
    inserted: set[tuple] = set()
    result = SubstitutionResult(PcrValues(), planned)
    for ev in log.events:
        if not ev.is_extended:
            continue
        key = family(ev.pcr, ev.event_type, ev.data)
        if key is not None and key in release_families:
            result.replaced.append(ev.index)
            if key not in inserted:
                inserted.add(key)
                planned += [PlannedEvent(m.pcr, dict(m.digests), m.event_type, m.description, "release")
                            for m in release_families[key]]
            continue
        if not family_of(ev.event_type).recomputed:
            result.unknown.append(ev.index)
        planned.append(PlannedEvent(ev.pcr, dict(ev.digests), ev.event_type, ev.event_type.name, "log"))
    # families the log lacks go after the last event of their PCR (userspace phases: at the end)
    for key, ms in release_families.items():
        if key in inserted:
            continue
        pcr = ms[0].pcr
        last = max((i for i, e in enumerate(planned) if e.pcr == pcr), default=len(planned) - 1)
        new = [PlannedEvent(m.pcr, dict(m.digests), m.event_type, m.description, "release") for m in ms]
        planned[last + 1:last + 1] = new
        if key[1] != "userspace":
            result.notes.append(f"PCR {pcr}: the reference log has no {key[1]} event; "
                                f"the release's {len(ms)} event(s) were appended")

    locality, hcrtm, _warnings = find_startup_locality(log)
    replayer = Replayer(list(banks), locality=locality, hcrtm=hcrtm)
    for i, e in enumerate(planned):
        replayer.extend(i, e.pcr, e.digests)
    result.gaps = {(g.alg, g.pcr) for g in replayer.gaps}  # e.g. Windows' SHA-256-only events: no value
    for v in replayer.result().pcrs:
        if (v.alg, v.pcr) not in result.gaps:
            result.values.set(v.alg, v.pcr, v.value)
    for alg, pcr in sorted(result.gaps):
        result.notes.append(f"PCR {pcr} has events without a {alg.bank_name} digest: no {alg.bank_name} value")
    if result.unknown:
        kinds = sorted({log.events[i].event_type.name for i in result.unknown if i < len(log.events)})
        result.notes.append(f"kept {len(result.unknown)} reference-log event(s) of kinds pcrtool does not "
                            f"recompute: {', '.join(kinds[:6])}")
    return result
