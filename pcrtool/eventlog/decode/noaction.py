"""EV_NO_ACTION payloads (never extended): Spec ID, StartupLocality, SP800-155, NvIndex, and
Windows SIPA TLVs on the virtual PCR 0xFFFFFFFF (TCG PFP 1.05 §10.4.5)."""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.eventlog.decode.base import Decoded
from pcrtool.eventlog.decode.firmware import Bytes
from pcrtool.eventlog.model import Event, EventLog, SpecIdEvent
from pcrtool.tcg import structs
from pcrtool.tcg.constants import (NV_INDEX_DYNAMIC_SIGNATURE, NV_INDEX_INSTANCE_SIGNATURE,
                                   SP800_155_EVENT3_SIGNATURE, SP800_155_SIGNATURE,
                                   SPEC_ID_SIGNATURES, STARTUP_LOCALITY_SIGNATURE)


@dataclass(frozen=True, slots=True)
class SpecId(Decoded):
    spec_id: SpecIdEvent
    kind = "spec-id"

    def to_json(self) -> dict:
        return {"kind": self.kind, **self.spec_id.to_json()}

    def describe(self) -> str:
        s = self.spec_id
        algs = ",".join(a.alg.bank_name if a.alg else f"0x{a.alg_id:04x}" for a in s.algorithms)
        return f"{s.signature.rstrip(bytes(1)).decode('ascii', 'replace')} [{algs}] uintn={s.uintn_size}" + (
            f" vendorInfo={s.vendor_info.hex()}" if s.vendor_info else "")


@dataclass(frozen=True, slots=True)
class StartupLocality(Decoded):
    """TCG_EfiStartupLocalityEvent: the locality TPM2_Startup ran in (PCR 0 starts 0…0<loc>)."""

    locality: int
    kind = "startup-locality"

    def describe(self) -> str:
        return f"StartupLocality {self.locality}"


@dataclass(frozen=True, slots=True)
class Sp800155(Decoded):
    """TCG_Sp800_155_PlatformId_Event (reference manifest identification), Event and Event3."""

    signature: str
    vendor_id: int | None = None
    reference_manifest_guid: str | None = None
    platform_manufacturer: str | None = None
    platform_model: str | None = None
    platform_version: str | None = None
    firmware_manufacturer: str | None = None
    firmware_manufacturer_id: int | None = None
    firmware_version: str | None = None
    rim_locator_type: int | None = None
    rim_locator: bytes = b""
    platform_cert_locator_type: int | None = None
    platform_cert_locator: bytes = b""
    kind = "sp800-155"

    def describe(self) -> str:
        parts = [self.signature] + [p for p in (self.platform_manufacturer, self.platform_model,
                                                 self.firmware_version) if p]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class NvIndex(Decoded):
    signature: str
    data: bytes
    kind = "nv-index"

    def describe(self) -> str:
        return self.signature


def _s(text: str) -> str:
    return text.rstrip("\0")


def decode_no_action(event: Event, log: EventLog | None):
    data = event.data
    if event.pcr == 0xFFFFFFFF or (data[:4] and data[2:4] in (b"\x01\xc0", b"\x01\x40")):
        from pcrtool.eventlog.decode.windows import decode_sipa
        sipa = decode_sipa(data)
        if sipa is not None:
            return sipa
    head = data[:16]
    if head in SPEC_ID_SIGNATURES:
        if log is not None and log.spec_id is not None and event.index == 0:
            return SpecId(log.spec_id)
        from pcrtool.eventlog.parse import parse_spec_id
        return SpecId(parse_spec_id(data))
    if head == STARTUP_LOCALITY_SIGNATURE and len(data) == 17:
        return StartupLocality(data[16])
    if head == SP800_155_SIGNATURE:
        e = structs.TCG_Sp800_155_PlatformId_Event.parse(data)
        return Sp800155("SP800-155 Event", e.vendor_id, str(e.reference_manifest_guid),
                        _s(e.platform_manufacturer_str), _s(e.platform_model), _s(e.platform_version),
                        _s(e.firmware_manufacturer_str), e.firmware_manufacturer_id, _s(e.firmware_version))
    if head == SP800_155_EVENT3_SIGNATURE:
        e = structs.TCG_Sp800_155_PlatformId_Event3.parse(data)
        return Sp800155("SP800-155 Event3", e.vendor_id, str(e.reference_manifest_guid),
                        _s(e.platform_manufacturer_str), _s(e.platform_model), _s(e.platform_version),
                        _s(e.firmware_manufacturer_str), e.firmware_manufacturer_id, _s(e.firmware_version),
                        rim_locator_type=e.rim_locator_type, rim_locator=e.rim_locator,
                        platform_cert_locator_type=e.platform_cert_locator_type,
                        platform_cert_locator=e.platform_cert_locator)
    if head in (NV_INDEX_INSTANCE_SIGNATURE, NV_INDEX_DYNAMIC_SIGNATURE):
        return NvIndex(head.rstrip(b"\0").decode("ascii"), data[16:])
    return Bytes(data)
