"""Value types of a parsed event log. Everything in a log is *untrusted* until a replay matches PCRs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Mapping

from pcrtool.model import HashAlg
from pcrtool.tcg.constants import EventType


_NO_DIGESTS: Mapping[int, bytes] = MappingProxyType({})   # shared: most events have none


class LogFormat(StrEnum):
    CRYPTO_AGILE = "crypto-agile"   # TCG_PCR_EVENT2 records after a Spec ID Event03 header
    SHA1 = "sha1"                   # TCG 1.2 style TCG_PCR_EVENT records only


@dataclass(frozen=True, slots=True)
class SpecIdAlgorithm:
    alg_id: int
    digest_size: int

    @property
    def alg(self) -> HashAlg | None:
        return HashAlg.from_id(self.alg_id)


@dataclass(frozen=True, slots=True)
class SpecIdEvent:
    """TCG_EfiSpecIDEvent (TCG PFP 1.05 §10.4.5.1), the data of the log's first record."""

    signature: bytes
    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int                 # 1 = 32-bit UINTN, 2 = 64-bit UINTN
    algorithms: tuple[SpecIdAlgorithm, ...]
    vendor_info: bytes

    @property
    def uintn_bytes(self) -> int:
        return 4 if self.uintn_size == 1 else 8

    def to_json(self) -> dict:
        return {
            "signature": self.signature.rstrip(b"\0").decode("ascii", "replace"),
            "platformClass": self.platform_class,
            "specVersion": f"{self.spec_version_major}.{self.spec_version_minor}.{self.spec_errata}",
            "uintnSize": self.uintn_size,
            "algorithms": [{"algorithmId": (a.alg.bank_name if a.alg else f"0x{a.alg_id:04x}"),
                            "digestSize": a.digest_size} for a in self.algorithms],
            "vendorInfo": self.vendor_info.hex(),
        }


class Event:
    """One record of the log: PCR index, type, digests keyed by algorithm, raw event data.

    ``data`` is the untrusted payload exactly as logged; typed decoding is ``decode_event``.
    ``unknown_digests`` keeps digests of algorithms pcrtool has no HashAlg for, by TPM_ALG_ID.
    ``size`` is the whole record's length in the log. (A plain slotted class: a log may hold
    100,000 of them.)
    """

    __slots__ = ("index", "offset", "pcr", "event_type", "digests", "data", "size", "unknown_digests")

    def __init__(self, index: int, offset: int, pcr: int, event_type: EventType,
                 digests: dict[HashAlg, bytes], data: bytes, size: int = 0,
                 unknown_digests: Mapping[int, bytes] = _NO_DIGESTS) -> None:
        self.index = index
        self.offset = offset
        self.pcr = pcr
        self.event_type = event_type
        self.digests = digests
        self.data = data
        self.size = size
        self.unknown_digests = unknown_digests

    def __repr__(self) -> str:
        return (f"Event(index={self.index}, offset={self.offset}, pcr={self.pcr}, "
                f"type={self.event_type.name}, digests={{{', '.join(a.bank_name for a in self.digests)}}}, "
                f"size={len(self.data)})")

    @property
    def is_extended(self) -> bool:
        """Whether replay extends this record into a PCR (TCG PFP §10.3.1: EV_NO_ACTION never)."""
        return self.event_type != EventType.EV_NO_ACTION and 0 <= self.pcr <= 23

    @property
    def type_name(self) -> str:
        return self.event_type.name


@dataclass(slots=True, eq=False)
class EventLog:
    """A parsed event log. ``padding`` is (offset, length) of trailing 0x00/0xFF fill, if any."""

    format: LogFormat
    events: list[Event]
    spec_id: SpecIdEvent | None
    banks: list[HashAlg]
    size: int
    padding: tuple[int, int] | None = None
    quirks: list[str] = field(default_factory=list)   # names from pcrtool.eventlog.quirks

    @property
    def uintn_bytes(self) -> int:
        """Width of UINTN in image-load and GPT events; 8 when the log does not say."""
        return self.spec_id.uintn_bytes if self.spec_id is not None else 8

    @property
    def digest_sizes(self) -> dict[int, int]:
        if self.spec_id is None:
            return {HashAlg.SHA1.value: 20}
        return {a.alg_id: a.digest_size for a in self.spec_id.algorithms}

    def __len__(self) -> int:
        return len(self.events)
