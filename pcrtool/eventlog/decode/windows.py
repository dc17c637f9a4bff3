"""Windows SIPA (System Integrity Platform Attestation) TLVs: type u32, size u32, value.

Windows logs them in EV_NO_ACTION on the virtual PCR 0xFFFFFFFF and in EV_EVENT_TAG on PCR 12–14.
Names from Microsoft's wbcl.h as documented by go-attestation ``attest/win_events.go``; unknown
types are named by their category. Containers (bit 0x00010000 with AGGREGATION) nest TLVs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.eventlog.decode.base import Decoded

NONMEASURED = 0x80000000
AGGREGATION = 0x40000000
CONTAINER = 0x00010000

CATEGORIES = {
    0x00010000: "CONTAINER", 0x00020000: "INFORMATION", 0x00030000: "ERROR",
    0x00040000: "PREOSPARAMETER", 0x00050000: "OSPARAMETER", 0x00060000: "AUTHORITY",
    0x00070000: "LOADEDMODULE", 0x00080000: "TRUSTPOINT", 0x00090000: "ELAM", 0x000A0000: "VBS",
    0x000B0000: "KSR", 0x000C0000: "DRTM",
}

NAMES = {
    0x40010001: "TRUSTBOUNDARY", 0x40010002: "ELAM_AGGREGATION", 0x40010003: "LOADEDMODULE_AGGREGATION",
    0xC0010004: "TRUSTPOINT_AGGREGATION", 0x40010005: "KSR_AGGREGATION",
    0x40010006: "KSR_SIGNED_MEASUREMENT_AGGREGATION",
    0x00020001: "INFORMATION", 0x00020002: "BOOTCOUNTER", 0x00020003: "TRANSFER_CONTROL",
    0x00020004: "APPLICATION_RETURN", 0x00020005: "BITLOCKER_UNLOCK", 0x00020006: "EVENTCOUNTER",
    0x00020007: "COUNTERID", 0x00020008: "MORBIT_NOT_CANCELABLE", 0x00020009: "APPLICATION_SVN",
    0x0002000A: "SVN_CHAIN_STATUS", 0x0002000B: "MORBIT_API_STATUS",
    0x00040001: "BOOTDEBUGGING", 0x00040002: "BOOT_REVOCATION_LIST",
    0x00050001: "OSKERNELDEBUG", 0x00050002: "CODEINTEGRITY", 0x00050003: "TESTSIGNING",
    0x00050004: "DATAEXECUTIONPREVENTION", 0x00050005: "SAFEMODE", 0x00050006: "WINPE",
    0x00050007: "PHYSICALADDRESSEXTENSION", 0x00050008: "OSDEVICE", 0x00050009: "SYSTEMROOT",
    0x0005000A: "HYPERVISOR_LAUNCH_TYPE", 0x0005000B: "HYPERVISOR_PATH",
    0x0005000C: "HYPERVISOR_IOMMU_POLICY", 0x0005000D: "HYPERVISOR_DEBUG",
    0x0005000E: "DRIVER_LOAD_POLICY", 0x0005000F: "SI_POLICY",
    0x00050010: "HYPERVISOR_MMIO_NX_POLICY", 0x00050011: "HYPERVISOR_MSR_FILTER_POLICY",
    0x00050012: "VSM_LAUNCH_TYPE", 0x00050013: "OS_REVOCATION_LIST", 0x00050020: "VSM_IDK_INFO",
    0x00050021: "FLIGHTSIGNING", 0x00050022: "PAGEFILE_ENCRYPTION_ENABLED", 0x00050023: "VSM_IDKS_INFO",
    0x00050024: "HIBERNATION_DISABLED", 0x00050025: "DUMPS_DISABLED",
    0x00050026: "DUMP_ENCRYPTION_ENABLED", 0x00050027: "DUMP_ENCRYPTION_KEY_DIGEST",
    0x00050028: "LSAISO_CONFIG",
    0x00060001: "NOAUTHORITY", 0x00060002: "AUTHORITYPUBKEY",
    0x00070001: "FILEPATH", 0x00070002: "IMAGESIZE", 0x00070003: "HASHALGORITHMID",
    0x00070004: "AUTHENTICODEHASH", 0x00070005: "AUTHORITYISSUER", 0x00070006: "AUTHORITYSERIAL",
    0x00070007: "IMAGEBASE", 0x00070008: "AUTHORITYPUBLISHER", 0x00070009: "AUTHORITYSHA1THUMBPRINT",
    0x0007000A: "IMAGEVALIDATED", 0x0007000B: "MODULE_SVN",
    0x80080001: "QUOTE", 0x80080002: "QUOTESIGNATURE", 0x80080003: "AIKID", 0x80080004: "AIKPUBDIGEST",
    0x00090001: "ELAM_KEYNAME", 0x00090002: "ELAM_CONFIGURATION", 0x00090003: "ELAM_POLICY",
    0x00090004: "ELAM_MEASURED",
    0x000A0001: "VBS_VSM_REQUIRED", 0x000A0002: "VBS_SECUREBOOT_REQUIRED",
    0x000A0003: "VBS_IOMMU_REQUIRED", 0x000A0004: "VBS_NX_REQUIRED",
    0x000A0005: "VBS_MSR_FILTERING_REQUIRED", 0x000A0006: "VBS_MANDATORY_ENFORCEMENT",
    0x000A0007: "VBS_HVCI_POLICY", 0x000A0008: "VBS_MICROSOFT_BOOT_CHAIN_REQUIRED",
    0x000B0001: "KSR_SIGNATURE",
}


# UTF-16 string values (go-attestation win_events.go) and integer-valued loaded-module fields.
_STRINGS = frozenset({0x00070001, 0x00070005, 0x00070008, 0x00050009, 0x00090001, 0x00080003})
_INTEGERS = frozenset({0x00070002, 0x00070003, 0x00070007, 0x0007000A, 0x0007000B})


def sipa_name(tlv_type: int) -> str:
    name = NAMES.get(tlv_type)
    if name is None:
        name = NAMES.get(tlv_type & ~NONMEASURED)
    if name is None:
        category = CATEGORIES.get(tlv_type & 0x000F0000, "UNKNOWN")
        name = f"{category}_0x{tlv_type & 0xFFFF:04x}"
    return name


@dataclass(frozen=True, slots=True)
class SipaItem(Decoded):
    type: int
    name: str
    value: object           # int, str, bytes, or tuple[SipaItem, ...] for containers
    kind = "sipa"

    def to_json(self) -> dict:
        value = self.value
        if isinstance(value, tuple):
            value = [v.to_json() for v in value]
        elif isinstance(value, bytes):
            value = value.hex()
        return {"type": f"0x{self.type:08x}", "name": self.name, "value": value}


@dataclass(frozen=True, slots=True)
class Sipa(Decoded):
    items: tuple[SipaItem, ...]
    kind = "windows-sipa"

    def to_json(self) -> dict:
        return {"kind": self.kind, "items": [i.to_json() for i in self.items]}

    def describe(self) -> str:
        names = [i.name for i in self.items]
        return "SIPA " + ",".join(names[:4]) + ("…" if len(names) > 4 else "")


def _parse_tlvs(data: bytes, depth: int = 0) -> tuple[SipaItem, ...] | None:
    items = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 8:
            return None
        tlv_type, size = struct.unpack_from("<II", data, pos)
        pos += 8
        if size > len(data) - pos:
            return None
        value_bytes = data[pos:pos + size]
        pos += size
        value: object = value_bytes
        if tlv_type & 0x000F0000 == CONTAINER and depth < 8:
            nested = _parse_tlvs(value_bytes, depth + 1)
            value = nested if nested is not None else value_bytes
        elif tlv_type & ~NONMEASURED in _STRINGS:
            value = bytes(value_bytes).decode("utf-16-le", "replace").rstrip("\0")
        elif size in (1, 2, 4, 8) and (tlv_type & 0x000F0000 in (0x00020000, 0x00040000, 0x00050000)
                                       or tlv_type in _INTEGERS):
            value = int.from_bytes(value_bytes, "little")
        items.append(SipaItem(tlv_type, sipa_name(tlv_type), value))
    return tuple(items)


def decode_sipa(data: bytes) -> Sipa | None:
    """SIPA TLVs, or None if ``data`` is not a well-formed TLV sequence."""
    if len(data) < 8:
        return None
    items = _parse_tlvs(bytes(data))
    if not items:
        return None
    return Sipa(items)
