"""TCG and UEFI wire formats: event types, construct definitions of the structures in event logs.

Spec references: TCG PC Client Platform Firmware Profile (PFP) 1.05 §10, UEFI 2.10 §10 (device
paths), §5.3 (GPT), §32.4 (EFI_SIGNATURE_LIST).
"""

from pcrtool.tcg.constants import EventType, SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE

__all__ = ["EventType", "SPEC_ID_SIGNATURE", "STARTUP_LOCALITY_SIGNATURE"]
