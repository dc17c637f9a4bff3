"""Event families (pcr-oracle's model): what each kind of event is and how its digest is made.

A :class:`Family` knows how to *describe* an event of its kind (its decoder in
``eventlog/decode/``) and how its digest is *rehashed*: from the logged data alone
(``payloads``: TCG PFP 1.05 §10.4.4 and what firmware and boot loaders really hash), or not at
all, because the digest covers an artefact the log does not hold (``artefact`` names it: a PE
image's Authenticode hash, a file, a section); ``rehash_artefact`` then gives the digests of
a future artefact (pcr-oracle's rehash from a new image), and ``measure`` the whole event a
measurer makes of one (:class:`ArtefactRule`: its PCR, the data it logs, the digest it extends:
systemd-stub's PCR 11 sections, shim's PCR 14 MOK lists, the Linux EFI stub's PCR 9 tags). It also
gives the key under which substitution swaps a release's events in for the log's (``key``).

``decode_event``, payload verification (``verify_payload_digests``, as tpm2-tools
``verify_digests`` and systemd-pcrlock check payloads), prediction (``Measurement.of_event``) and
substitution all ask :func:`family_of`; a new event type is one row of ``FAMILIES``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from pcrtool.errors import FormatError
from pcrtool.eventlog.model import EventLog
from pcrtool.eventlog.quirks import SHIM_AUTHORITY_TRAILING_BYTES
from pcrtool.model import HashAlg
from pcrtool.tcg.constants import LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG, STUB_PROFILE_TAG, EventType

#: What GRUB logs before a PCR 8 string it hashes (``grub_cmd: …``).
GRUB_PREFIXES = ("grub_cmd", "kernel_cmdline", "grub_kernel_cmdline", "module_cmdline")
_GRUB_PREFIXES = tuple(p.encode() for p in GRUB_PREFIXES)
#: PCR 12 EV_IPL descriptions systemd-stub uses for initrds (each is its own substitution family).
STUB_INITRD_DESCRIPTIONS = ("Credentials initrd", "Global credentials initrd", "System extension initrd",
                            "Configuration extension initrd")


def _data(pcr: int, event_type: EventType, data: bytes) -> list[bytes]:
    return [data]


def _not_from_data(pcr: int, event_type: EventType, data: bytes) -> None:
    return None


def _no_key(pcr: int, event_type: EventType, data: bytes, description: str) -> None:
    return None


def _variable_payloads(pcr: int, event_type: EventType, data: bytes) -> list[bytes] | None:
    """EV_EFI_VARIABLE_BOOT hashes the variable's data (some firmware the whole
    UEFI_VARIABLE_DATA); the other variable events the whole UEFI_VARIABLE_DATA, but shim's
    authority for its built-in certificate (a quirk)."""
    if event_type not in (EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_AUTHORITY):
        return [data]
    from pcrtool.eventlog.decode.variables import parse_variable_data
    try:
        _guid, _name, value, rest = parse_variable_data(data)
    except FormatError:
        return [data]
    if event_type == EventType.EV_EFI_VARIABLE_BOOT:
        return [value, data]
    return None if SHIM_AUTHORITY_TRAILING_BYTES.apply(rest) else [data]


def _variable_key(pcr: int, event_type: EventType, data: bytes, description: str) -> tuple:
    from pcrtool.eventlog.decode.variables import parse_variable_data
    try:
        _guid, name, _value, _rest = parse_variable_data(data)
    except FormatError:
        return (pcr, int(event_type), "undecodable")
    # db's authority vs shim's own (Shim, MokList, SbatLevel …) are told apart by the name
    return (pcr, "authority" if event_type == EventType.EV_EFI_VARIABLE_AUTHORITY else "variable", name)


def _ipl_payloads(pcr: int, event_type: EventType, data: bytes) -> list[bytes] | None:
    """GRUB's PCR 8 strings hash the text after ``prefix: `` (with or without the NUL);
    systemd-boot's PCR 12 command line hashes the UTF-16 data. PCR 9 (GRUB's files), 11
    (systemd-stub's sections: the name once, the contents once) and 14 (shim's MOK lists) hash
    what the log does not hold (``_IPL_ARTEFACTS``)."""
    if pcr == 8:
        text = data[:-1] if data.endswith(b"\0") else data
        head, sep, value = text.partition(b" ")
        if sep and head.rstrip(b":") in _GRUB_PREFIXES:
            return [value, value + b"\0", data]
        return [data, text]
    if pcr == 12:
        return [data]
    return None


def _ipl_text(data: bytes) -> str:
    try:
        return data.decode("utf-16-le").rstrip("\0") if len(data) % 2 == 0 else data.decode("latin-1")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _ipl_key(pcr: int, event_type: EventType, data: bytes, description: str) -> tuple:
    text = description or _ipl_text(data)
    if pcr == 12 and text.startswith(STUB_INITRD_DESCRIPTIONS):
        return (pcr, "ipl", text)
    return (pcr, "ipl")


def tag_id(data: bytes) -> int | None:
    """The taggedEventID of an EV_EVENT_TAG's data (None when it is too short)."""
    return struct.unpack_from("<I", data)[0] if len(data) >= 4 else None


def _tag_payloads(pcr: int, event_type: EventType, data: bytes) -> list[bytes] | None:
    """systemd-stub's profile tag hashes its payload (the UTF-16 number); the Linux EFI stub's
    load options and initrd tags hash what the log does not hold (``_TAG_ARTEFACTS``)."""
    if tag_id(data) == STUB_PROFILE_TAG and len(data) >= 8:
        return [data[8:]]
    return None


def tagged_event_data(tag: int, data: bytes) -> bytes:
    """TCG_PCClientTaggedEvent: taggedEventID u32, taggedEventDataSize u32, data (TCG PFP §10.4.2.1)."""
    return struct.pack("<II", tag, len(data)) + data


#: An artefact is its bytes, or the digests of it per bank a caller already has.
Artefact = bytes | Mapping[HashAlg, bytes]


def _hash(artefact: bytes, alg: HashAlg) -> bytes:
    return alg.digest(artefact)


@dataclass(frozen=True, slots=True)
class ArtefactRule:
    """How one measurer turns an artefact into an event: the PCR, the data it logs (from the
    event's label: a section's or list's name) and the digest it extends (from the artefact)."""

    kind: str
    pcr: int | None                                  # None: the caller's
    digest: Callable[[bytes, HashAlg], bytes] = _hash
    logged: Callable[[str], bytes] | None = None     # None: the caller builds the event data

    def digests(self, artefact: Artefact, banks: Iterable[HashAlg]) -> dict[HashAlg, bytes]:
        if isinstance(artefact, Mapping):   # precomputed, one per bank
            return {alg: bytes(artefact[alg]) for alg in banks}
        return {alg: self.digest(bytes(artefact), alg) for alg in banks}


@dataclass(frozen=True, slots=True)
class Family:
    """One event family: its event types, decoder, digest rule and substitution key."""

    name: str
    event_types: tuple[EventType, ...]
    decoder: str            # "module.function" in eventlog/decode/ (imported when first used)
    payload_rule: Callable[[int, EventType, bytes], list[bytes] | None] = _not_from_data
    artefact: str = ""      # what the digest covers when it is not the logged data
    key_rule: Callable[[int, EventType, bytes, str], tuple | None] = _no_key
    recomputed: bool = False  # prediction rebuilds this family from artefacts
    artefacts: tuple[ArtefactRule, ...] = ()   # how measurers hash the artefacts ``artefact`` names

    def describe(self, event, log=None):
        """The typed decoding of the event's data (``decode_event`` adds the error handling)."""
        return decoders()[event.event_type](event, log)

    def payloads(self, pcr: int, event_type: EventType, data: bytes) -> list[bytes] | None:
        """The byte strings one of which the digest is a hash of, the one a measurer hashes
        first; None when the digest covers something the event data does not hold."""
        return self.payload_rule(pcr, event_type, data)

    def rehash(self, pcr: int, event_type: EventType, data: bytes,
               banks: Iterable[HashAlg]) -> dict[HashAlg, bytes]:
        """The digests the measurer extends for an event with this data, per bank."""
        payloads = self.payloads(pcr, event_type, data)
        if payloads is None:
            raise FormatError(f"{event_type.name} on PCR {pcr}: the digest covers "
                              f"{self.artefact or 'something the event data does not hold'}",
                              hint="predict it from that artefact")
        return {alg: alg.digest(payloads[0]) for alg in banks}

    def artefact_rule(self, kind: str | None = None) -> ArtefactRule:
        """The rule for artefacts of ``kind`` (None: the family's only one)."""
        rules = [r for r in self.artefacts if kind is None or r.kind == kind]
        if len(rules) != 1:
            raise ValueError(f"{self.name} events have no single artefact rule {kind!r}")
        return rules[0]

    def rehash_artefact(self, artefact: Artefact, banks: Iterable[HashAlg], kind: str | None = None
                        ) -> dict[HashAlg, bytes]:
        """The digests of a future artefact (``artefact`` says which: an image, a section …), per bank."""
        return self.artefact_rule(kind).digests(artefact, banks)

    def measure(self, kind: str, label: str, artefact: Artefact, banks: Iterable[HashAlg]
                ) -> tuple[int, bytes, dict[HashAlg, bytes]]:
        """(PCR, logged data, digests) of the event a measurer makes of ``artefact`` (``label``
        names it in the log: a section's or MOK list's name)."""
        rule = self.artefact_rule(kind)
        if rule.pcr is None or rule.logged is None:
            raise ValueError(f"{self.name} artefact {kind!r} is measured on the caller's PCR and data")
        return rule.pcr, rule.logged(label), rule.digests(artefact, banks)

    def key(self, pcr: int, event_type: EventType, data: bytes, description: str = "") -> tuple | None:
        """The substitution family of an event (None: always kept from the log)."""
        return self.key_rule(pcr, event_type, data, description)


def _authenticode(image: bytes, alg: HashAlg) -> bytes:
    from pcrtool.pe import authenticode_digest   # the hash EDK2's DxeImageVerificationLib computes

    return authenticode_digest(image, alg)


def _utf16z(label: str) -> bytes:
    return (label + "\0").encode("utf-16-le")


def _asciiz(label: str) -> bytes:
    return label.encode() + b"\0"


def _asciiz_hash(name: bytes, alg: HashAlg) -> bytes:
    return alg.digest(name + b"\0")


_IPL_ARTEFACTS = (
    # systemd-stub (src/boot/stub.c): per section, the name (ASCII with its NUL) then the contents
    # as loaded (VirtualSize bytes), both logged as the UTF-16 name with NUL
    ArtefactRule("stub-section-name", 11, _asciiz_hash, _utf16z),
    ArtefactRule("stub-section", 11, _hash, _utf16z),
    # shim (mok.c): the mirrored MOK list, logged as the ASCII name with NUL
    ArtefactRule("mok-list", 14, _hash, _asciiz),
)
_TAG_ARTEFACTS = (
    # the Linux EFI stub (drivers/firmware/efi/libstub): LoadOptions as passed (UTF-16, with the
    # NUL) and the initrd, each under its tag with a fixed description
    ArtefactRule("linux-load-options", 9, _hash,
                 lambda _label: tagged_event_data(LINUX_LOAD_OPTIONS_TAG, b"LOADED_IMAGE::LoadOptions\0")),
    ArtefactRule("linux-initrd", 9, _hash,
                 lambda _label: tagged_event_data(LINUX_INITRD_TAG, b"Linux initrd\0")),
)


def _keyed(label: str):
    return lambda pcr, event_type, data, description: (pcr, label)


FAMILIES: tuple[Family, ...] = (
    Family("no-action", (EventType.EV_NO_ACTION,), "noaction.decode_no_action"),
    Family("separator", (EventType.EV_SEPARATOR,), "firmware.decode_separator", _data, recomputed=True),
    Family("efi-action", (EventType.EV_EFI_ACTION,), "firmware.decode_text", _data, recomputed=True),
    Family("s-crtm-version", (EventType.EV_S_CRTM_VERSION,), "firmware.decode_scrtm_version", _data),
    Family("efi-variable",
           (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_AUTHORITY),
           "variables.decode_variable", _variable_payloads,
           artefact="shim's built-in certificate (an authority with trailing bytes)",
           key_rule=_variable_key, recomputed=True),
    Family("efi-boot-variable", (EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_BOOT2),
           "variables.decode_variable", _variable_payloads),
    Family("efi-application", (EventType.EV_EFI_BOOT_SERVICES_APPLICATION,), "image.decode_image_load",
           artefact="the image's Authenticode (PE/COFF) hash", key_rule=_keyed("application"),
           recomputed=True, artefacts=(ArtefactRule("image", None, _authenticode),)),
    Family("efi-driver", (EventType.EV_EFI_BOOT_SERVICES_DRIVER, EventType.EV_EFI_RUNTIME_SERVICES_DRIVER),
           "image.decode_image_load", artefact="the driver's Authenticode (PE/COFF) hash",
           artefacts=(ArtefactRule("image", None, _authenticode),)),
    Family("efi-gpt", (EventType.EV_EFI_GPT_EVENT,), "gpt.decode_gpt", _data, key_rule=_keyed("gpt"),
           recomputed=True),
    Family("efi-gpt2", (EventType.EV_EFI_GPT_EVENT2,), "gpt.decode_gpt",
           artefact="the GPT as the firmware read it"),
    Family("ipl", (EventType.EV_IPL,), "ipl.decode_ipl", _ipl_payloads,
           artefact="a file (GRUB, PCR 9), a section (systemd-stub, PCR 11) or a MOK list (shim, PCR 14)",
           key_rule=_ipl_key, recomputed=True, artefacts=_IPL_ARTEFACTS),
    Family("event-tag", (EventType.EV_EVENT_TAG,), "tag.decode_event_tag", _tag_payloads,
           artefact="the command line or initrd (Linux EFI stub, PCR 9)",
           key_rule=lambda pcr, event_type, data, description: (pcr, "tag", tag_id(data)), recomputed=True,
           artefacts=_TAG_ARTEFACTS),
    Family("text",
           (EventType.EV_ACTION, EventType.EV_CPU_MICROCODE, EventType.EV_PLATFORM_CONFIG_FLAGS,
            EventType.EV_TABLE_OF_DEVICES, EventType.EV_COMPACT_HASH, EventType.EV_NONHOST_CODE,
            EventType.EV_NONHOST_CONFIG, EventType.EV_OMIT_BOOT_DEVICE_EVENTS, EventType.EV_EFI_HCRTM_EVENT),
           "firmware.decode_text", artefact="firmware code or data"),
    Family("post-code", (EventType.EV_POST_CODE, EventType.EV_POST_CODE2, EventType.EV_S_CRTM_CONTENTS),
           "firmware.decode_text_or_blob", artefact="the firmware code or data"),
    Family("nonhost-info", (EventType.EV_NONHOST_INFO,), "firmware.decode_nonhost_info", artefact="vendor data"),
    Family("firmware-blob", (EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB,), "firmware.decode_blob",
           artefact="the firmware volume in memory"),
    Family("firmware-blob2", (EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB2,), "firmware.decode_blob2",
           artefact="the firmware volume in memory"),
    Family("handoff-tables", (EventType.EV_EFI_HANDOFF_TABLES,), "firmware.decode_handoff",
           artefact="the configuration tables (SMBIOS, ACPI) in memory"),
    Family("handoff-tables2", (EventType.EV_EFI_HANDOFF_TABLES2,), "firmware.decode_handoff2",
           artefact="the configuration tables (SMBIOS, ACPI) in memory"),
)

_BY_TYPE: dict[EventType, Family] = {t: f for f in FAMILIES for t in f.event_types}
_DECODERS: dict[EventType, Callable] = {}
#: Events of no known family: raw data, digest not checkable, always kept by substitution.
UNKNOWN = Family("unknown", (), "")


def decoders() -> dict[EventType, Callable]:
    """event type -> its family's decoder function, for ``decode_event`` (the hot path); the
    decoder modules are imported on first use, so prediction does not load them."""
    if not _DECODERS:
        import importlib

        for event_type, family in _BY_TYPE.items():
            module, function = family.decoder.split(".")
            _DECODERS[event_type] = getattr(importlib.import_module(f"pcrtool.eventlog.decode.{module}"), function)
    return _DECODERS


def family_of(event_type: EventType | int) -> Family:
    """The family of an event type (``UNKNOWN`` for types pcrtool has no decoder for)."""
    return _BY_TYPE.get(event_type, UNKNOWN)


def digests_of(pcr: int, event_type: EventType, data: bytes, banks: Iterable[HashAlg]) -> Mapping[HashAlg, bytes]:
    """``family_of(event_type).rehash(…)``: the digests a measurer extends for this event."""
    return family_of(event_type).rehash(pcr, event_type, data, banks)


# --- payload verification: each extended event against its family's digest rule ------------------

@dataclass(frozen=True, slots=True)
class DigestWarning:
    index: int
    pcr: int
    event_type: EventType
    alg: HashAlg
    message: str

    def __str__(self) -> str:
        return f"event {self.index} (PCR {self.pcr}, {self.event_type.name}): {self.message}"

    def to_json(self) -> dict:
        return {"event": self.index, "pcr": self.pcr, "type": self.event_type.name,
                "bank": self.alg.bank_name, "message": self.message}


def verify_payload_digests(log: EventLog) -> list[DigestWarning]:
    """One warning per (event, bank) whose digest is not the hash of a payload its family's rule
    allows (events whose digest covers an artefact are not checked). Warnings, not errors: real
    firmware gets these wrong (Arch, GDC logs)."""
    warnings: list[DigestWarning] = []
    for event in log.events:
        if not event.is_extended:
            continue
        candidates = family_of(event.event_type).payloads(event.pcr, event.event_type, event.data)
        if candidates is None:
            continue
        for alg, digest in event.digests.items():
            if not any(alg.digest(c) == digest for c in candidates):
                warnings.append(DigestWarning(event.index, event.pcr, event.event_type, alg,
                                              "digest does not match the event data"))
    return warnings
