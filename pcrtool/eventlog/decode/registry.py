"""Event type → decoder function table."""

from __future__ import annotations

from pcrtool.eventlog.decode import firmware, gpt, image, ipl, noaction, tag, variables
from pcrtool.tcg.constants import EventType as T

DECODERS = {
    T.EV_NO_ACTION: noaction.decode_no_action,
    T.EV_SEPARATOR: firmware.decode_separator,
    T.EV_ACTION: firmware.decode_text,
    T.EV_EFI_ACTION: firmware.decode_text,
    T.EV_POST_CODE: firmware.decode_post_code,
    T.EV_POST_CODE2: firmware.decode_post_code,
    T.EV_S_CRTM_VERSION: firmware.decode_scrtm_version,
    T.EV_S_CRTM_CONTENTS: firmware.decode_scrtm_contents,
    T.EV_CPU_MICROCODE: firmware.decode_text,
    T.EV_PLATFORM_CONFIG_FLAGS: firmware.decode_text,
    T.EV_TABLE_OF_DEVICES: firmware.decode_text,
    T.EV_COMPACT_HASH: firmware.decode_text,
    T.EV_NONHOST_INFO: firmware.decode_nonhost_info,
    T.EV_NONHOST_CODE: firmware.decode_text,
    T.EV_NONHOST_CONFIG: firmware.decode_text,
    T.EV_OMIT_BOOT_DEVICE_EVENTS: firmware.decode_text,
    T.EV_EFI_HCRTM_EVENT: firmware.decode_hcrtm,
    T.EV_EFI_PLATFORM_FIRMWARE_BLOB: firmware.decode_blob,
    T.EV_EFI_PLATFORM_FIRMWARE_BLOB2: firmware.decode_blob2,
    T.EV_EFI_HANDOFF_TABLES: firmware.decode_handoff,
    T.EV_EFI_HANDOFF_TABLES2: firmware.decode_handoff2,
    T.EV_EFI_VARIABLE_DRIVER_CONFIG: variables.decode_variable,
    T.EV_EFI_VARIABLE_BOOT: variables.decode_variable,
    T.EV_EFI_VARIABLE_BOOT2: variables.decode_variable,
    T.EV_EFI_VARIABLE_AUTHORITY: variables.decode_variable,
    T.EV_EFI_BOOT_SERVICES_APPLICATION: image.decode_image_load,
    T.EV_EFI_BOOT_SERVICES_DRIVER: image.decode_image_load,
    T.EV_EFI_RUNTIME_SERVICES_DRIVER: image.decode_image_load,
    T.EV_EFI_GPT_EVENT: gpt.decode_gpt,
    T.EV_EFI_GPT_EVENT2: gpt.decode_gpt,
    T.EV_IPL: ipl.decode_ipl,
    T.EV_EVENT_TAG: tag.decode_event_tag,
}
