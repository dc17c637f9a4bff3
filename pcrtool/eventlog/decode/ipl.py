"""EV_IPL strings: grub (PCR 8 ``grub_cmd:``/``kernel_cmdline:``/``grub_kernel_cmdline``, PCR 9
file paths), shim (PCR 14 MokList/MokListX/MokListTrusted/SbatLevel names), systemd-boot
(PCR 12 UTF-16 kernel command line) and systemd-stub (PCR 11 UTF-16 section names)."""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.eventlog.decode.base import Decoded, decode_ascii, decode_utf16
from pcrtool.eventlog.decode.firmware import Bytes
from pcrtool.eventlog.families import GRUB_PREFIXES
from pcrtool.eventlog.model import Event, EventLog

SHIM_NAMES = ("MokList", "MokListX", "MokListTrusted", "SbatLevel", "MokSBState", "MokPolicy")


@dataclass(frozen=True, slots=True)
class IplString(Decoded):
    """``source``: grub-command, grub-file, shim, systemd-boot, systemd-stub, string."""

    source: str
    text: str
    prefix: str | None = None       # grub: grub_cmd / kernel_cmdline …
    value: str | None = None        # grub: text after the first space (what PCR 8 hashes)
    encoding: str = "ascii"
    kind = "ipl"

    def to_json(self) -> dict:   # explicit: the most frequent event of real logs
        return {"kind": "ipl", "source": self.source, "text": self.text, "prefix": self.prefix,
                "value": self.value, "encoding": self.encoding}

    def describe(self) -> str:
        return self.text


def decode_ipl(event: Event, log: EventLog | None):
    data = event.data
    if event.pcr in (11, 12, 13):
        text = decode_utf16(data)
        if text is not None:
            source = {11: "systemd-stub", 12: "systemd-boot", 13: "systemd-stub"}[event.pcr]
            return IplString(source, text, encoding="utf-16le")
    text = decode_ascii(data)
    if text is None:
        head, sep, _rest = data.partition(b"\0")
        text = decode_ascii(head) if sep else None
        if text is None:
            text16 = decode_utf16(data)
            if text16 is not None:
                return IplString("string", text16, encoding="utf-16le")
            return Bytes(data)
    if event.pcr == 14 or text in SHIM_NAMES:
        return IplString("shim", text)
    prefix, sep, value = text.partition(" ")
    if sep and prefix.rstrip(":") in GRUB_PREFIXES:   # "grub_cmd: …", old Red Hat "grub_cmd …"
        return IplString("grub-command", text, prefix=prefix.rstrip(":"), value=value)
    if prefix.endswith(":") or text.startswith("grub_"):
        return IplString("grub-command", text)
    if event.pcr == 9 or text.startswith("("):
        return IplString("grub-file", text)
    return IplString("string", text)
