"""Named workarounds for known firmware/tool bugs in event logs (go-attestation keeps the same kind
of table). Each quirk is applied only when its precise trigger matches and is recorded in
``EventLog.quirks`` so a report can say what was tolerated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Quirk:
    name: str
    description: str
    seen_in: str


SPECID_VENDORINFO_OUTSIDE_EVENT = Quirk(
    "specid-vendorinfo-outside-event",
    "The Spec ID event's vendorInfo bytes follow the record instead of being counted in its "
    "eventSize; they are taken as vendorInfo when they exactly fill the rest of the log.",
    "tpm2-tools test fixture specid-vendordata.bin (tpm2_eventlog reads vendorInfo the same way)",
)

DUPLICATE_STARTUP_LOCALITY = Quirk(
    "duplicate-startup-locality",
    "A second StartupLocality EV_NO_ACTION is ignored with a warning (the first one counts).",
    "eventlog-reference §3(c) tolerance policy",
)

SHORT_NO_ACTION_FIRST = Quirk(
    "startup-locality-first",
    "The first record is a 17-byte StartupLocality EV_NO_ACTION instead of the Spec ID event: "
    "the log is SHA1 format (go-attestation #208).",
    "Dell SHA1-format Windows log, go-attestation short_no_action_eventlog",
)

SHIM_AUTHORITY_TRAILING_BYTES = Quirk(
    "shim-authority-trailing-bytes",
    "shim's EV_EFI_VARIABLE_AUTHORITY for its built-in vendor certificate (\"Shim\") carries bytes "
    "after UEFI_VARIABLE_DATA and its digest is not over the event data; it is not checked.",
    "go-attestation sb_cert_eventlog, go-tpm-tools debian-10/cos-85/cos-93, tpm2-tools event-postcode",
)

QUIRKS = (SHIM_AUTHORITY_TRAILING_BYTES, SPECID_VENDORINFO_OUTSIDE_EVENT, DUPLICATE_STARTUP_LOCALITY, SHORT_NO_ACTION_FIRST)
