"""PCR 12 (systemd-stub / sd-boot) and PCR 9 (Linux EFI stub) command-line and initrd measurements.

systemd ``src/boot/measure.c`` ``tpm_log_load_options``: the command line is measured as UTF-16LE
EV_IPL, hashed *including* the 2-byte NUL (``strsize16``; systemd's docs say "without", the code
wins — ``nul`` is a parameter so a real boot can settle it). The Linux EFI stub
(``drivers/firmware/efi/libstub``) measures LoadOptions as EV_EVENT_TAG 0x8F3B22ED and the initrd
as EV_EVENT_TAG 0x8F3B22EC into PCR 9 (digest over the UTF-16 options incl. NUL / the initrd bytes).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from pcrtool.eventlog.families import family_of, tag_id, tagged_event_data
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.tcg.constants import LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG, STUB_PROFILE_TAG, EventType  # noqa: F401 (re-exported)

PCR_KERNEL_CONFIG = 12
PCR_LINUX_STUB = 9


def utf16_cmdline(text: str, *, nul: bool = True) -> bytes:
    """UTF-16LE bytes of a command line, with the 2-byte NUL when ``nul``."""
    return text.encode("utf-16-le") + (b"\0\0" if nul else b"")


def stub_cmdline_measurement(cmdline: str, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                             nul: bool = True) -> Measurement:
    """systemd-stub/sd-boot EV_IPL of the command line on PCR 12 (UTF-16LE, NUL per ``nul``;
    the EV_IPL family hashes PCR 12 data as logged)."""
    return Measurement.of_event(PCR_KERNEL_CONFIG, EventType.EV_IPL, cmdline, utf16_cmdline(cmdline, nul=nul), banks)


def _linux_stub_measurement(kind: str, description: str, artefact: bytes | Mapping[HashAlg, bytes],
                            banks: Sequence[HashAlg]) -> Measurement:
    pcr, data, digests = family_of(EventType.EV_EVENT_TAG).measure(kind, description, artefact, banks)
    return Measurement(pcr, digests, EventType.EV_EVENT_TAG, description, data)


def linux_load_options_measurement(cmdline: str, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                                   nul: bool = True) -> Measurement:
    """Linux EFI stub: LoadOptions as EV_EVENT_TAG 0x8F3B22ED on PCR 9."""
    return _linux_stub_measurement("linux-load-options", "LOADED_IMAGE::LoadOptions",
                                   utf16_cmdline(cmdline, nul=nul), banks)


def linux_initrd_measurement(initrd: bytes | Mapping[HashAlg, bytes],
                             banks: Sequence[HashAlg] = DEFAULT_BANKS) -> Measurement:
    """Linux EFI stub: the initrd (as handed over by LINUX_EFI_INITRD_MEDIA) as EV_EVENT_TAG 0x8F3B22EC
    (``initrd``: its bytes, or its precomputed digests per bank)."""
    return _linux_stub_measurement("linux-initrd", "Linux initrd", initrd, banks)


def stub_profile_measurement(profile: int, banks: Sequence[HashAlg] = DEFAULT_BANKS) -> Measurement:
    """systemd-stub (v257+): the selected profile number, only when it is not 0, as EV_EVENT_TAG
    0x13aed6db on PCR 12 over the decimal number in UTF-16 with NUL."""
    return Measurement.of_event(PCR_KERNEL_CONFIG, EventType.EV_EVENT_TAG, f"profile {profile}",
                                tagged_event_data(STUB_PROFILE_TAG, utf16_cmdline(str(profile))), banks)


def stub_cmdline_text(section: bytes) -> str:
    """The command line systemd-stub hands to the kernel from a ``.cmdline`` section
    (``mangle_stub_cmdline``): leading and trailing whitespace/control characters dropped, inner
    control characters (≤ 0x20, 0x7F) turned into spaces."""
    text = section.decode("utf-8", "replace").split("\0", 1)[0]
    ws = lambda c: ord(c) <= 0x20 or c == "\x7f"  # noqa: E731
    chars = [" " if ws(c) else c for c in text]
    while chars and chars[0] == " ":
        chars.pop(0)
    while chars and chars[-1] == " ":
        chars.pop()
    return "".join(chars)


def linux_stub_measurements(sections: dict, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                            nul: bool = True, load_options: str | None = None) -> list[Measurement]:
    """PCR 9 events the Linux EFI stub of a UKI's kernel makes: LoadOptions (the command line
    systemd-stub passes: ``load_options`` when it replaced ``.cmdline`` by the boot entry's
    LoadOptions, else the ``.cmdline`` section) and the initrd (``.initrd`` when nothing is
    appended to it). Sections may be bytes or precomputed digests per bank; a precomputed
    ``.cmdline`` gives no text, hence no load-options event unless ``load_options`` is given.

    Checked on real OVMF boots: eventlogs/ovmf-cmdline (.cmdline) and eventlogs/ovmf-loadopts
    (LoadOptions, Secure Boot off): both digests match, NUL included.
    """
    out = []
    cmdline = sections.get(".cmdline")
    if load_options is not None:
        out.append(linux_load_options_measurement(load_options, banks, nul=nul))
    elif cmdline and not isinstance(cmdline, Mapping):
        out.append(linux_load_options_measurement(stub_cmdline_text(cmdline), banks, nul=nul))
    if sections.get(".initrd"):
        out.append(linux_initrd_measurement(sections[".initrd"], banks))
    return out


def tag_of(m: Measurement) -> int | None:
    """The taggedEventID of an EV_EVENT_TAG measurement (None for other events)."""
    return tag_id(m.data) if m.event_type == EventType.EV_EVENT_TAG else None


def kernel_load_options(sections: dict, *, stub: str | None, secure_boot: bool | None) -> tuple[str | None, list[str]]:
    """The command line the kernel gets when systemd-stub was given ``stub`` (the boot entry's
    LoadOptions, measured into PCR 12), or None when it keeps ``.cmdline``; plus notes.

    systemd-stub uses LoadOptions instead of ``.cmdline`` when Secure Boot is off or the UKI has no
    ``.cmdline`` (and then measures them into PCR 12); with Secure Boot on and a ``.cmdline`` it
    ignores them. ``secure_boot`` None = unknown: a stub command line is taken as used (the stub
    measures only options it uses).
    """
    if stub is None:
        return None, []
    if secure_boot and sections.get(".cmdline"):
        return None, ["Secure Boot is on and the UKI has .cmdline: systemd-stub ignores load options, "
                      "so the kernel's PCR 9 load options follow .cmdline, not [cmdline] stub"]
    notes = [] if secure_boot is not None or not sections.get(".cmdline") else [
        "Secure Boot state unknown: the kernel's PCR 9 load options follow [cmdline] stub (as with Secure "
        "Boot off); give [secureboot] SecureBoot or a reference log to settle it"]
    return stub, notes
