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


def demo_firmware_measurements(banks: Sequence[HashAlg], *, label: bytes = b"pcrtool demo firmware",
                               secure_boot: bool = True) -> tuple[list[Measurement], list[Measurement]]:
    """A plausible firmware part of a boot for demos and tests — not any real machine.

    Returns ``(before_boot, at_boot)``: PCR 0/1/2/3/5/6 code and config events plus the Secure Boot
    variables on PCR 7, then the ReadyToBoot events (PCR 4 EFI action, separators 0–7).
    A boot's full sequence is ``before_boot + at_boot + [its images, authorities, stub events]``.
    """
    import struct

    from pcrtool.predict.pe import CALLING_EFI_APPLICATION, efi_action, image_load_event, separator
    from pcrtool.predict.secureboot import EFI_GLOBAL_VARIABLE, Variable, policy_variables, variable_measurement

    fv, rom = label + b" FV", label + b" ROM"
    boot_order = Variable("BootOrder", EFI_GLOBAL_VARIABLE, b"\x01\x00")
    before = [
        Measurement.of_event(0, EventType.EV_S_CRTM_VERSION, "CRTM version", "1.0".encode("utf-16-le") + b"\0\0",
                             banks),
        Measurement.of_data(0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, "firmware volume", fv, banks,
                            data=struct.pack("<QQ", 0xFFC00000, len(fv))),
        Measurement.of_event(1, EventType.EV_EFI_VARIABLE_BOOT, "BootOrder", boot_order.variable_data(), banks),
        Measurement.of_data(2, EventType.EV_EFI_BOOT_SERVICES_DRIVER, "option ROM", rom, banks,
                            data=image_load_event("rom.efi", len(rom))),
        Measurement.of_data(6, EventType.EV_POST_CODE, "POST CODE", b"POST CODE", banks),
    ]
    sb = policy_variables({"SecureBoot": b"\x01" if secure_boot else b"\x00"})
    before += [variable_measurement(v, banks) for v in sb]
    at_boot = [efi_action(4, CALLING_EFI_APPLICATION, banks)]
    at_boot += [separator(p, banks) for p in range(8)]
    return before, at_boot
