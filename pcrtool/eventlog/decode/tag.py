"""EV_EVENT_TAG: TCG_PCClientTaggedEvent (PFP §10.4.2) — id u32, size u32, data.

Known ids: Linux EFI stub initrd 0x8F3B22EC and LoadOptions 0x8F3B22ED (PCR 9), systemd
loader.conf 0xF5BC582A and devicetree add-on 0x6C46F751; Windows SIPA containers on PCR 12–14.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.eventlog.decode.base import Decoded, decode_ascii, decode_utf16
from pcrtool.eventlog.decode.firmware import Bytes
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg.constants import (
    LINUX_INITRD_TAG,
    LINUX_LOAD_OPTIONS_TAG,
    SYSTEMD_DEVICETREE_ADDON_TAG,
    SYSTEMD_LOADER_CONF_TAG,
)

TAG_NAMES = {
    LINUX_INITRD_TAG: "linux-initrd",
    LINUX_LOAD_OPTIONS_TAG: "linux-load-options",
    SYSTEMD_LOADER_CONF_TAG: "systemd-loader-conf",
    SYSTEMD_DEVICETREE_ADDON_TAG: "systemd-devicetree-addon",
}


@dataclass(frozen=True, slots=True)
class TaggedEvent(Decoded):
    tag: int
    name: str | None
    text: str | None
    data: bytes
    kind = "event-tag"

    def to_json(self) -> dict:
        out = {"kind": self.kind, "tag": f"0x{self.tag:08x}", "name": self.name, "text": self.text}
        if self.text is None:
            out["data"] = self.data.hex()
        return out

    def describe(self) -> str:
        label = self.name or f"tag 0x{self.tag:08x}"
        if self.text is not None:
            return f"{label}: {self.text}"
        return f"{label} ({len(self.data)} bytes)"


def decode_event_tag(event: Event, log: EventLog | None):
    data = event.data
    if len(data) >= 8:
        tag, size = struct.unpack_from("<II", data, 0)
        if size == len(data) - 8:
            from pcrtool.eventlog.decode.windows import CONTAINER, decode_sipa
            if tag not in TAG_NAMES and (tag & 0x000F0000 == CONTAINER or event.pcr in (12, 13, 14)):
                sipa = decode_sipa(data)
                if sipa is not None:
                    return sipa
            payload = data[8:]
            text = decode_ascii(payload) or decode_utf16(payload)
            return TaggedEvent(tag, TAG_NAMES.get(tag), text, payload)
    from pcrtool.eventlog.decode.windows import decode_sipa
    sipa = decode_sipa(data)
    if sipa is not None:
        return sipa
    return Bytes(data, note="untagged")
