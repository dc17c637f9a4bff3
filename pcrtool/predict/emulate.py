"""Turn predicted measurements into a TCG crypto-agile event log (boot emulation, tests, demos).

Layout (TCG PC Client PFP 1.05 §10.2–10.4): a TCG_PCR_EVENT header (PCR 0, EV_NO_ACTION, zero
SHA-1 digest) carrying TCG_EfiSpecIDEvent "Spec ID Event03", an optional StartupLocality
EV_NO_ACTION, then one TCG_PCR_EVENT2 per firmware measurement. Userspace measurements
(systemd-pcrextend phases, ``event_type`` None) belong to the userspace log and are left out.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from pcrtool.model import HashAlg
from pcrtool.predict.events import Measurement
from pcrtool.tcg.constants import SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE, EventType
from pcrtool.tcg.structs import TCG_EfiSpecIDEvent, TCG_PCR_EVENT, TCG_PCR_EVENT2


def event_log_bytes(measurements: Iterable[Measurement], banks: Sequence[HashAlg], *,
                    locality: int | None = None) -> bytes:
    """A crypto-agile event log holding ``measurements`` (firmware ones) for ``banks``."""
    sizes = {alg.value: alg.digest_size for alg in banks}
    spec = TCG_EfiSpecIDEvent.build({
        "signature": SPEC_ID_SIGNATURE, "platform_class": 0, "spec_version_minor": 0,
        "spec_version_major": 2, "spec_errata": 0, "uintn_size": 2,
        "digest_sizes": [{"algorithm_id": alg.value, "digest_size": alg.digest_size} for alg in banks],
        "vendor_info": b"",
    })
    out = [TCG_PCR_EVENT.build({"pcr_index": 0, "event_type": int(EventType.EV_NO_ACTION),
                                "digest": bytes(20), "event": spec})]

    def record(pcr: int, event_type: int, digests: dict, data: bytes) -> bytes:
        return TCG_PCR_EVENT2.build({"pcr_index": pcr, "event_type": int(event_type),
                                     "digests": [{"hash_alg": alg.value, "digest": digests[alg]} for alg in banks],
                                     "event": data}, digest_sizes=sizes)

    if locality is not None:
        out.append(record(0, EventType.EV_NO_ACTION, {alg: alg.zero for alg in banks},
                          STARTUP_LOCALITY_SIGNATURE + bytes([locality])))
    for m in measurements:
        if m.event_type is None:
            continue
        data = m.data if m.data else m.description.encode()
        out.append(record(m.pcr, m.event_type, {alg: m.digests[alg] for alg in banks}, data))
    return b"".join(out)

