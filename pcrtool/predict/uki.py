"""PCR 11: what systemd-stub measures for a UKI, and the boot phases systemd-pcrextend adds.

Algorithm (systemd ``src/boot/stub.c`` / ``src/measure/measure-tool.c``, identical per bank): from
zeroes, for each present non-empty section in canonical order (``UnifiedSection`` enum, ``.pcrsig``
never measured) extend ``H(name || NUL)`` then ``H(content as loaded)`` — the section's
``VirtualSize`` bytes; then each word of a phase path (``enter-initrd:leave-initrd``) as ``H(word)``.

Multi-profile UKIs (systemd v257): the base sections are those before the first ``.profile``; the
selected profile's sections (from its ``.profile`` to the next) override them by name, and the
profile's ``.profile`` section itself is measured. Within one range the first section of a name wins.
``.dtbauto``/``.efifw`` are measured only for the candidate that matches the hardware, so the caller
names it (``hardware_match={".dtbauto": 1}``); none is measured by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.eventlog.families import family_of
from pcrtool.model import HashAlg, PcrValues
from pcrtool.predict.events import DEFAULT_BANKS, USERSPACE, Measurement, replay_measurements
from pcrtool.tcg.constants import EventType

PCR_KERNEL_BOOT = 11

#: systemd ``UnifiedSection`` order ("PLEASE DO NOT REORDER"), src/fundamental/uki.h.
CANONICAL_SECTIONS: tuple[str, ...] = (
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrsig", ".pcrpkey", ".profile", ".dtbauto", ".hwids", ".efifw",
)
MEASURED_SECTIONS: tuple[str, ...] = tuple(s for s in CANONICAL_SECTIONS if s != ".pcrsig")
HARDWARE_MATCHED = (".dtbauto", ".efifw")

#: Sections each systemd-stub release measures (a stub skips names it does not know; checked
#: on a real OVMF boot of Debian's 252 stub: ``.uname`` present in the UKI, not measured).
_SECTIONS_SINCE = {".linux": 0, ".osrel": 0, ".cmdline": 0, ".initrd": 0, ".splash": 0, ".dtb": 0,
                   ".pcrpkey": 0, ".uname": 253, ".sbat": 253, ".ucode": 256, ".profile": 257,
                   ".dtbauto": 257, ".hwids": 257, ".efifw": 258}


def measured_sections(stub_version: int | None = None) -> tuple[str, ...]:
    """Canonical-order sections a systemd-stub of ``stub_version`` measures (None = newest)."""
    if stub_version is None:
        return MEASURED_SECTIONS
    return tuple(s for s in MEASURED_SECTIONS if _SECTIONS_SINCE[s] <= stub_version)


def stub_version(sections: Sequence["UkiSection"]) -> int | None:
    """systemd-stub's major version from ``.sdmagic`` (``#### LoaderInfo: systemd-stub 252.39 ####``)."""
    import re

    for s in sections:
        if s.name == ".sdmagic":
            m = re.search(rb"systemd-stub (\d+)", s.loaded)
            if m:
                return int(m.group(1))
    return None

#: Words systemd's units extend (systemd-pcrphase*.service, v258).
PHASE_WORDS = ("enter-initrd", "leave-initrd", "sysinit", "ready", "shutdown", "final",
               "factory-reset", "storage-target-mode-start", "storage-target-mode-stop")
#: systemd-measure's phase paths when ``--phase`` is not given.
DEFAULT_PHASES: tuple[str, ...] = (
    "enter-initrd",
    "enter-initrd:leave-initrd",
    "enter-initrd:leave-initrd:sysinit",
    "enter-initrd:leave-initrd:sysinit:ready",
)


def phase_words(path: str) -> tuple[str, ...]:
    """Split a phase path at ``:``, dropping empty words (``:`` is the UKI-only state)."""
    words = tuple(w for w in path.split(":") if w)
    for w in words:
        if any(ord(c) < 0x20 or c == "\x7f" for c in w) or w != w.strip():
            raise UsageError(f"invalid boot phase word {w!r} in {path!r}",
                             hint="phase words are printable, e.g. enter-initrd:leave-initrd")
    return words


def normalize_phase(path: str) -> str:
    """Canonical spelling of a phase path: words joined by ``:``, ``""`` for none."""
    return ":".join(phase_words(path))


def normalize_phases(paths: Iterable[str] | None) -> tuple[str, ...]:
    """Sorted, de-duplicated phase paths, as systemd-measure handles ``--phase``."""
    if paths is None:
        return DEFAULT_PHASES
    out = sorted({normalize_phase(p) for p in paths})
    if not out:
        raise UsageError("no boot phase given", hint="use ':' for the state before the initrd")
    return tuple(out)


def section_measurements(sections: Mapping[str, bytes | Mapping[HashAlg, bytes]],
                         banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                         measured: Sequence[str] = MEASURED_SECTIONS) -> list[Measurement]:
    """The stub's EV_IPL events on PCR 11 for these sections (content as loaded, or its digests).

    Names outside ``measured`` (``.text``, ``.pcrsig``, …) are ignored; empty sections count as
    absent. The EV_IPL family's ``stub-section-name``/``stub-section`` rules give each event's data
    (the name in UTF-16 with NUL, as the stub logs it) and digest.
    """
    ipl = family_of(EventType.EV_IPL)
    out: list[Measurement] = []
    for name in MEASURED_SECTIONS:
        content = sections.get(name)
        if not content or name not in measured:
            continue
        for kind, artefact in (("stub-section-name", name.encode()), ("stub-section", content)):
            pcr, logged, digests = ipl.measure(kind, name, artefact, banks)
            out.append(Measurement(pcr, digests, EventType.EV_IPL, name, logged))
    return out


def phase_measurements(path: str, banks: Sequence[HashAlg] = DEFAULT_BANKS) -> list[Measurement]:
    """systemd-pcrextend's userspace measurements for a phase path: H(word), UTF-8, no NUL."""
    return [Measurement.of_data(PCR_KERNEL_BOOT, USERSPACE, f"phase {w}", w.encode(), banks)
            for w in phase_words(path)]


@dataclass(slots=True)
class Pcr11Prediction:
    """PCR 11 per phase path (``""`` = UKI only) and bank, in systemd-measure's order."""

    banks: tuple[HashAlg, ...]
    phases: tuple[str, ...]
    values: dict[str, PcrValues] = field(default_factory=dict)

    def value(self, phase: str, alg: HashAlg) -> bytes:
        return self.values[normalize_phase(phase)].get(alg, PCR_KERNEL_BOOT)  # type: ignore[return-value]

    def to_text(self) -> str:
        """``11:<bank>=<hex>`` lines, phase by phase (systemd-measure calculate)."""
        return "".join(f"{PCR_KERNEL_BOOT}:{alg.bank_name}={self.value(p, alg).hex()}\n"
                       for p in self.phases for alg in self.banks)

    def to_measure_json(self) -> dict:
        """systemd-measure ``calculate --json``: ``{bank: [{"phase"?, "pcr": 11, "hash"}]}``."""
        out: dict[str, list] = {}
        for alg in self.banks:
            entries = []
            for p in self.phases:
                entry: dict = {"phase": p} if p else {}
                entry |= {"pcr": PCR_KERNEL_BOOT, "hash": self.value(p, alg).hex()}
                entries.append(entry)
            out[alg.bank_name] = entries
        return out


def predict_pcr11(sections: Mapping[str, bytes], banks: Sequence[HashAlg] = DEFAULT_BANKS,
                  phases: Iterable[str] | None = None, *,
                  measured: Sequence[str] = MEASURED_SECTIONS) -> Pcr11Prediction:
    """Expected PCR 11 for these UKI sections, per phase path (default: systemd-measure's four).

    ``measured`` narrows the sections to what an older stub knows (:func:`measured_sections`).
    """
    banks = tuple(dict.fromkeys(banks))
    norm = normalize_phases(phases)
    base = section_measurements(sections, banks, measured=measured)
    pred = Pcr11Prediction(banks, norm)
    for p in norm:
        pred.values[p] = replay_measurements(base + phase_measurements(p, banks), banks)
    return pred


# --- UKI files ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UkiSection:
    name: str
    loaded: bytes  # VirtualSize bytes as the stub sees them in memory


def uki_sections(data: bytes) -> list[UkiSection]:
    """The sections of a UKI in file order, with their in-memory (VirtualSize) contents."""
    from pcrtool.pe import PeImage  # PE engineer's parser: sections with .loaded bytes

    image = PeImage.parse(data)
    return [UkiSection(s.name, bytes(s.loaded)) for s in image.sections]


def profile_count(sections: Sequence[UkiSection]) -> int:
    """Number of profiles (a UKI without ``.profile`` has the implied profile 0 only)."""
    return max(1, sum(1 for s in sections if s.name == ".profile"))


def select_sections(sections: Sequence[UkiSection], *, profile: int | None = None,
                    hardware_match: Mapping[str, int] | None = None) -> dict[str, bytes]:
    """The sections the stub measures for ``profile`` (None = @0), as ``{name: content}``.

    ``hardware_match`` picks which ``.dtbauto``/``.efifw`` candidate (0-based, within the measured
    range) matches the hardware; unmatched kinds are not measured.
    """
    hardware_match = dict(hardware_match or {})
    for key in hardware_match:
        if key not in HARDWARE_MATCHED:
            raise UsageError(f"{key} is not a hardware-matched section", hint="use .dtbauto or .efifw")
    starts = [i for i, s in enumerate(sections) if s.name == ".profile"]
    base_end = starts[0] if starts else len(sections)
    ranges = [(0, base_end)]
    index = 0 if profile is None else profile
    if index < 0:
        raise UsageError(f"profile number {index} is negative")
    if starts:
        if index >= len(starts):
            raise UsageError(f"UKI has {len(starts)} profiles, no profile @{index}",
                             hint=f"choose 0…{len(starts) - 1}")
        end = starts[index + 1] if index + 1 < len(starts) else len(sections)
        ranges.append((starts[index], end))
    elif index != 0:
        raise UsageError("UKI has no .profile sections, so only profile @0 exists")
    chosen: dict[str, bytes] = {}
    for lo, hi in ranges:
        found: dict[str, bytes] = {}
        candidates: dict[str, int] = {}
        for s in sections[lo:hi]:
            if s.name in HARDWARE_MATCHED:
                n = candidates.get(s.name, 0)
                candidates[s.name] = n + 1
                if hardware_match.get(s.name) == n and s.name not in found:
                    found[s.name] = s.loaded
                continue
            if s.name in MEASURED_SECTIONS and s.name not in found and s.loaded:
                found[s.name] = s.loaded
        chosen |= found  # the profile's sections override the base ones
    return chosen


def sections_from_uki(data: bytes, *, profile: int | None = None,
                      hardware_match: Mapping[str, int] | None = None,
                      stub: int | None | str = "auto") -> dict[str, bytes]:
    """The sections the UKI's stub measures, ``{name: content as loaded}``.

    ``stub="auto"`` reads the stub's version from ``.sdmagic`` and drops sections that stub does
    not know (a 252 stub ignores ``.uname``/``.sbat``); an int forces a version, None the newest.
    """
    sections = uki_sections(data)
    if not any(s.name == ".linux" for s in sections):
        raise FormatError("PE image has no .linux section, so it is not a UKI",
                          hint="give a unified kernel image (ukify build) or the section files")
    chosen = select_sections(sections, profile=profile, hardware_match=hardware_match)
    version = stub_version(sections) if stub == "auto" else stub
    keep = measured_sections(version)  # type: ignore[arg-type]
    return {k: v for k, v in chosen.items() if k in keep}
