"""Event types and well-known signatures of TCG PC Client event logs (TCG PFP 1.05 §10.4.1, Table 9)."""

from __future__ import annotations

from enum import IntEnum

SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
SPEC_ID_SIGNATURES = (b"Spec ID Event03\x00", b"Spec ID Event02\x00", b"Spec ID Event00\x00")
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
SP800_155_SIGNATURE = b"SP800-155 Event\x00"
SP800_155_EVENT3_SIGNATURE = b"SP800-155 Event3"
NV_INDEX_INSTANCE_SIGNATURE = b"NvIndexInstance\x00"
NV_INDEX_DYNAMIC_SIGNATURE = b"NvIndexDynamic\x00\x00"
HCRTM_DATA = b"HCRTM"

# EV_EVENT_TAG ids (TCG_PCClientTaggedEvent.taggedEventID) of the Linux EFI stub and systemd
LINUX_INITRD_TAG = 0x8F3B22EC
LINUX_LOAD_OPTIONS_TAG = 0x8F3B22ED
SYSTEMD_LOADER_CONF_TAG = 0xF5BC582A
SYSTEMD_DEVICETREE_ADDON_TAG = 0x6C46F751
STUB_PROFILE_TAG = 0x13AED6DB
PCR_NONE = 0xFFFFFFFF  # Windows "virtual PCR" for SIPA events: never extended


class EventType(IntEnum):
    """TCG PFP event types. Unknown values become pseudo-members named ``EV_0x…`` (never an error)."""

    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_UNUSED = 0x00000002
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_IPL_PARTITION_DATA = 0x0000000E
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_POST_CODE2 = 0x00000013
    EV_EFI_EVENT_BASE = 0x80000000
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_GPT_EVENT2 = 0x8000000D
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2
    EV_EFI_SPDM_DEVICE_POLICY = 0x800000E3
    EV_EFI_SPDM_DEVICE_AUTHORITY = 0x800000E4

    @classmethod
    def _missing_(cls, value: object):
        if not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
            return None
        member = _PSEUDO.get(value)
        if member is None:
            member = int.__new__(cls, value)
            member._name_ = f"EV_0x{value:08X}"
            member._value_ = value
            _PSEUDO[value] = member
        return member

    @property
    def is_known(self) -> bool:
        return self._name_ in type(self).__members__


_PSEUDO: dict[int, EventType] = {}
