"""Check event payloads against their digests, where the digest is defined over the payload.

Rules (TCG PFP 1.05 §10.4.4 and firmware/boot-loader practice, as tpm2-tools ``verify_digests``
and systemd-pcrlock apply them): EV_SEPARATOR, EV_S_CRTM_VERSION, EV_EFI_VARIABLE_DRIVER_CONFIG,
EV_EFI_GPT_EVENT, EV_EFI_ACTION, EV_EFI_VARIABLE_BOOT2 and EV_EFI_VARIABLE_AUTHORITY hash the
event data exactly; EV_EFI_VARIABLE_BOOT hashes the variable data (some firmware the whole
UEFI_VARIABLE_DATA); grub's PCR 8 EV_IPL hashes the text after ``prefix: `` (with or without the
NUL); systemd-boot's PCR 12 EV_IPL hashes the UTF-16 data. Other events (images, shim variables, initrd tags) hash things the log
does not contain. Mismatches are warnings: real firmware gets these wrong (Arch, GDC logs).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.eventlog.model import Event, EventLog
from pcrtool.eventlog.quirks import SHIM_AUTHORITY_TRAILING_BYTES
from pcrtool.model import HashAlg
from pcrtool.tcg.constants import EventType

GRUB_PREFIXES = (b"grub_cmd", b"kernel_cmdline", b"grub_kernel_cmdline", b"module_cmdline")
STRICT = frozenset({EventType.EV_SEPARATOR, EventType.EV_S_CRTM_VERSION,
                    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_GPT_EVENT,
                    EventType.EV_EFI_ACTION, EventType.EV_EFI_VARIABLE_BOOT2,
                    EventType.EV_EFI_VARIABLE_AUTHORITY})


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
    t = event.event_type
    data = event.data
    if t == EventType.EV_EFI_VARIABLE_AUTHORITY:
        from pcrtool.eventlog.decode.variables import parse_variable_data
        try:
            _guid, _name, _value, rest = parse_variable_data(data)
        except Exception:  # noqa: BLE001
            return [data]
        return None if SHIM_AUTHORITY_TRAILING_BYTES.apply(rest) else [data]
    if t in STRICT:
        return [data]
    if t == EventType.EV_EFI_VARIABLE_BOOT:
        from pcrtool.eventlog.decode.variables import parse_variable_data
        try:
            _guid, _name, value, _rest = parse_variable_data(data)
        except Exception:  # noqa: BLE001 - undecodable payload: compare the whole data only
            return [data]
        return [value, data]
    if t == EventType.EV_IPL:
        if event.pcr == 8:
            text = data[:-1] if data.endswith(b"\0") else data
            head, sep, value = text.partition(b" ")
            if sep and head.rstrip(b":") in GRUB_PREFIXES:
                return [value, value + b"\0", data]
            return [data, text]
        if event.pcr == 12:
            return [data]
        # PCR 11 (systemd-stub) logs each section twice with the same description: once hashing
        # the name, once the contents — the latter is not in the log, so PCR 11 is not checked.
    return None


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
