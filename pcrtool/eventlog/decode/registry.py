"""Event type → decoder function table."""

from __future__ import annotations

from pcrtool.eventlog.decode import firmware, gpt, image, ipl, noaction, tag, variables
from pcrtool.tcg.constants import EventType

DECODERS = {
    EventType.EV_NO_ACTION: noaction.decode_no_action,
    EventType.EV_SEPARATOR: firmware.decode_separator,
    EventType.EV_ACTION: firmware.decode_text,
    EventType.EV_EFI_ACTION: firmware.decode_text,
    EventType.EV_POST_CODE: firmware.decode_text_or_blob,
    EventType.EV_POST_CODE2: firmware.decode_text_or_blob,
    EventType.EV_S_CRTM_VERSION: firmware.decode_scrtm_version,
    EventType.EV_S_CRTM_CONTENTS: firmware.decode_text_or_blob,
    EventType.EV_CPU_MICROCODE: firmware.decode_text,
    EventType.EV_PLATFORM_CONFIG_FLAGS: firmware.decode_text,
    EventType.EV_TABLE_OF_DEVICES: firmware.decode_text,
    EventType.EV_COMPACT_HASH: firmware.decode_text,
    EventType.EV_NONHOST_INFO: firmware.decode_nonhost_info,
    EventType.EV_NONHOST_CODE: firmware.decode_text,
    EventType.EV_NONHOST_CONFIG: firmware.decode_text,
    EventType.EV_OMIT_BOOT_DEVICE_EVENTS: firmware.decode_text,
    EventType.EV_EFI_HCRTM_EVENT: firmware.decode_text,
    EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB: firmware.decode_blob,
    EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2: firmware.decode_blob2,
    EventType.EV_EFI_HANDOFF_TABLES: firmware.decode_handoff,
    EventType.EV_EFI_HANDOFF_TABLES2: firmware.decode_handoff2,
    EventType.EV_EFI_VARIABLE_DRIVER_CONFIG: variables.decode_variable,
    EventType.EV_EFI_VARIABLE_BOOT: variables.decode_variable,
    EventType.EV_EFI_VARIABLE_BOOT2: variables.decode_variable,
    EventType.EV_EFI_VARIABLE_AUTHORITY: variables.decode_variable,
    EventType.EV_EFI_BOOT_SERVICES_APPLICATION: image.decode_image_load,
    EventType.EV_EFI_BOOT_SERVICES_DRIVER: image.decode_image_load,
    EventType.EV_EFI_RUNTIME_SERVICES_DRIVER: image.decode_image_load,
    EventType.EV_EFI_GPT_EVENT: gpt.decode_gpt,
    EventType.EV_EFI_GPT_EVENT2: gpt.decode_gpt,
    EventType.EV_IPL: ipl.decode_ipl,
    EventType.EV_EVENT_TAG: tag.decode_event_tag,
}
