"""Named workarounds for known firmware/tool bugs in event logs, as one table (go-attestation keeps
the same kind): each quirk has an id, the PCRs it affects, where it acts (``header``: telling the
log format; ``replay``; ``verify``: payload digests) and an ``apply`` function that *is* the
workaround. Parse, replay and verify call ``apply`` instead of carrying the workaround inline; a
quirk acts only when its precise trigger matches, and the log records which ones did
(``EventLog.quirks``, ``ReplayResult.warnings``) so a report can say what was tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pcrtool.tcg.constants import SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE, EventType


@dataclass(frozen=True, slots=True)
class Quirk:
    name: str
    description: str
    seen_in: str
    pcrs: tuple[int, ...]
    stage: str                  # header | replay | verify
    apply: Callable


def _specid_vendorinfo_outside_event(untrusted_log: bytes, *, source: str):
    """The Spec ID event parsed with vendorInfo taken from after the record, or None when the
    bytes after the record are not exactly the vendorInfo filling the rest of the log."""
    from pcrtool.errors import FormatError
    from pcrtool.eventlog.parse import parse_spec_id
    try:
        spec_id = parse_spec_id(untrusted_log[32:], offset=32, source=source)
    except FormatError:
        return None
    length = 28 + 4 * len(spec_id.algorithms) + 1 + len(spec_id.vendor_info)
    if spec_id.signature != SPEC_ID_SIGNATURE or length != len(untrusted_log) - 32:
        return None
    return spec_id


def _startup_locality_first(untrusted_event_type: int, untrusted_size: int, untrusted_data: bytes) -> bool:
    """A first record that is a 17-byte StartupLocality EV_NO_ACTION: the log is SHA1 format."""
    return (untrusted_event_type == EventType.EV_NO_ACTION and untrusted_size == 17
            and untrusted_data[:16] == STARTUP_LOCALITY_SIGNATURE)


def _late_startup_locality(replayer, index: int) -> bool:
    """True (and a warning) when a StartupLocality event must be ignored: a second one, or one
    after PCR 0 was first extended (the first one before any PCR 0 extend counts)."""
    if replayer.pcr0_started:
        replayer.warnings.append(f"event {index}: StartupLocality after a PCR 0 extend ignored")
        return True
    if replayer.locality is not None:
        replayer.warnings.append(f"event {index}: duplicate StartupLocality ignored")
        return True
    return False


def _shim_authority_trailing_bytes(untrusted_trailing: bytes) -> bool:
    """True when an EV_EFI_VARIABLE_AUTHORITY record carries bytes after its UEFI_VARIABLE_DATA:
    shim's built-in certificate record, whose digest is over something the log lacks."""
    return bool(untrusted_trailing)


SPECID_VENDORINFO_OUTSIDE_EVENT = Quirk(
    "specid-vendorinfo-outside-event",
    "The Spec ID event's vendorInfo bytes follow the record instead of being counted in its "
    "eventSize; they are taken as vendorInfo when they exactly fill the rest of the log.",
    "tpm2-tools test fixture specid-vendordata.bin (tpm2_eventlog reads vendorInfo the same way)",
    (0,), "header", _specid_vendorinfo_outside_event,
)

DUPLICATE_STARTUP_LOCALITY = Quirk(
    "duplicate-startup-locality",
    "A second StartupLocality EV_NO_ACTION, or one after PCR 0's first extend, is ignored with a "
    "warning (the first one counts).",
    "eventlog-reference §3(c) tolerance policy",
    (0,), "replay", _late_startup_locality,
)

SHORT_NO_ACTION_FIRST = Quirk(
    "startup-locality-first",
    "The first record is a 17-byte StartupLocality EV_NO_ACTION instead of the Spec ID event: "
    "the log is SHA1 format (go-attestation #208).",
    "Dell SHA1-format Windows log, go-attestation short_no_action_eventlog",
    (0,), "header", _startup_locality_first,
)

SHIM_AUTHORITY_TRAILING_BYTES = Quirk(
    "shim-authority-trailing-bytes",
    "shim's EV_EFI_VARIABLE_AUTHORITY for its built-in vendor certificate (\"Shim\") carries bytes "
    "after UEFI_VARIABLE_DATA and its digest is not over the event data; it is not checked.",
    "go-attestation sb_cert_eventlog, go-tpm-tools debian-10/cos-85/cos-93, tpm2-tools event-postcode",
    (7,), "verify", _shim_authority_trailing_bytes,
)

QUIRKS = (SHIM_AUTHORITY_TRAILING_BYTES, SPECID_VENDORINFO_OUTSIDE_EVENT, DUPLICATE_STARTUP_LOCALITY,
          SHORT_NO_ACTION_FIRST)
