"""Export the (combined) log as TCG Canonical Event Log JSON (TCG CEL v1.0 §5.3).

Each record: ``recnum`` (0-based position), ``pcr``, ``digests`` [{hashAlg, digest}], then
``content_type`` ``pcclient_std`` with ``content`` {event_type (TCG name), event_data (hex)} for
firmware events, or ``systemd`` with the userspace record's own ``content`` — the same shape
``systemd-pcrlock cel`` writes. EV_NO_ACTION events and PCR indices above 23 are not records
of any PCR and are left out.
"""

from __future__ import annotations

from pcrtool.eventlog.model import EventLog
from pcrtool.eventlog.userspace import UserspaceRecord


def _digests(digests) -> list[dict]:
    return [{"hashAlg": alg.bank_name, "digest": value.hex()}
            for alg, value in sorted(digests.items(), key=lambda kv: kv[0].value)]


def to_cel_json(log: EventLog, userspace: list[UserspaceRecord] | None = None) -> list[dict]:
    records: list[dict] = []
    for ev in log.events:
        if not ev.is_extended:
            continue
        records.append({
            "recnum": len(records),
            "pcr": ev.pcr,
            "digests": _digests(ev.digests),
            "content_type": "pcclient_std",
            "content": {"event_type": ev.event_type.name if ev.event_type.is_known else int(ev.event_type),
                        "event_data": ev.data.hex()},
        })
    for rec in userspace or ():
        records.append({
            "recnum": len(records),
            "pcr": rec.pcr,
            "digests": _digests(rec.digests),
            "content_type": rec.content_type or "systemd",
            "content": rec.content,
        })
    return records
