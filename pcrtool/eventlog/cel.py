"""Export the (combined) log as TCG Canonical Event Log JSON (TCG CEL v1.0 §5.3), exactly as
``systemd-pcrlock cel`` (systemd 262) writes it.

Each record: ``pcr``, ``recnum`` (numbered from 1), ``digests`` [{hashAlg, digest}] in the
reverse of the order the record lists them (systemd prepends each digest to its list), then
``content_type`` ``pcclient_std`` with ``content`` {event_type, event_data (hex)} for firmware
events, or ``systemd`` with the userspace record's own ``content``. ``event_type`` is the TCG name
systemd knows for the type, else the type's decimal number as a string. EV_NO_ACTION events and
PCR indices above 23 are not records of any PCR and are left out. A userspace record carries
content_type/content only when it is a ``systemd`` record of an event type systemd knows
(otherwise systemd writes just pcr, recnum and digests). An NV-index record has ``nv_index``
where the others have ``pcr``.
"""

from __future__ import annotations

from pcrtool.eventlog.model import EventLog
from pcrtool.eventlog.userspace import UserspaceRecord
from pcrtool.tcg.constants import EventType

# The firmware event types systemd's tpm2_log_event_type table names (262); others print as numbers.
_SYSTEMD_NAMED = frozenset(EventType(v) for v in (
    *range(0x00, 0x02), *range(0x03, 0x13),
    *range(0x80000001, 0x8000000D), 0x80000010, 0x800000E0, 0x800000E1, 0x800000E2))

# systemd's Tpm2UserspaceEventType names (262).
USERSPACE_EVENT_TYPES = frozenset((
    "phase", "filesystem", "volume-key", "machine-id", "product-id", "keyslot", "nvpcr-init",
    "nvpcr-separator", "dm-verity", "imds-userdata", "os-separator", "login"))


def _digests(digests) -> list[dict]:
    return [{"hashAlg": alg.bank_name, "digest": value.hex()} for alg, value in reversed(list(digests.items()))]


def event_type_name(event_type: EventType) -> str:
    """The CEL ``event_type`` string systemd writes for a firmware event type."""
    return event_type.name if event_type in _SYSTEMD_NAMED else str(int(event_type))


def to_cel_json(log: EventLog, userspace: list[UserspaceRecord] | None = None) -> list[dict]:
    records: list[dict] = []
    for ev in log.events:
        if not ev.is_extended:
            continue
        records.append({
            "pcr": ev.pcr,
            "recnum": len(records) + 1,
            "digests": _digests(ev.digests),
            "content_type": "pcclient_std",
            "content": {"event_type": event_type_name(ev.event_type), "event_data": ev.data.hex()},
        })
    for rec in userspace or ():
        where = {"pcr": rec.pcr} if rec.pcr is not None else {"nv_index": rec.nv_index}
        out = {**where, "recnum": len(records) + 1, "digests": _digests(rec.digests)}
        if rec.content_type == "systemd" and rec.content.get("eventType") in USERSPACE_EVENT_TYPES:
            out["content_type"] = "systemd"
            out["content"] = rec.content
        records.append(out)
    return records
