"""A synthetic firmware part of a boot (measurements), to build reference event logs for tests."""

from __future__ import annotations

from typing import Sequence

from pcrtool.model import HashAlg
from pcrtool.predict.events import Measurement
from pcrtool.tcg.constants import EventType


def demo_firmware_measurements(banks: Sequence[HashAlg], *, label: bytes = b"pcrtool demo firmware",
                               secure_boot: bool = True) -> tuple[list[Measurement], list[Measurement]]:
    """A plausible firmware part of a boot for tests — not any real machine.

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
