"""Image load events: UEFI_IMAGE_LOAD_EVENT (TCG PFP §10.2.3) in EV_EFI_BOOT_SERVICES_APPLICATION,
_DRIVER and EV_EFI_RUNTIME_SERVICES_DRIVER, with the device path as UEFI text. The UINTN width
comes from the Spec ID (uintnSize)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.errors import FormatError
from pcrtool.eventlog.decode.base import Decoded
from pcrtool.eventlog.model import Event, EventLog
from pcrtool.tcg.devicepath import DevicePath, parse_device_path


@dataclass(frozen=True, slots=True)
class ImageLoad(Decoded):
    location: int
    length: int
    link_time_address: int
    device_path: DevicePath
    trailing: bytes = b""
    kind = "image-load"

    def to_json(self) -> dict:
        out = {"kind": self.kind, "imageLocationInMemory": self.location,
               "imageLengthInMemory": self.length, "imageLinkTimeAddress": self.link_time_address,
               "devicePath": self.device_path.text,
               "devicePathNodes": [[n.type, n.subtype] for n in self.device_path.nodes]}
        if self.trailing:
            out["trailing"] = self.trailing.hex()
        return out

    @property
    def file_path(self) -> str | None:
        return self.device_path.file_path

    def describe(self) -> str:
        return self.device_path.text or f"image at 0x{self.location:x} (no device path)"


def decode_image_load(event: Event, log: EventLog | None) -> ImageLoad:
    width = log.uintn_bytes if log is not None else 8
    fmt = "<QIII" if width == 4 else "<QQQQ"
    header = struct.calcsize(fmt)
    data = event.data
    if len(data) < header:
        raise FormatError(f"UEFI_IMAGE_LOAD_EVENT needs {header} bytes, has {len(data)}")
    location, length, link, path_len = struct.unpack_from(fmt, data, 0)
    if path_len > len(data) - header:
        raise FormatError(f"device path length {path_len} runs past the event data")
    path = parse_device_path(data[header:header + path_len])
    return ImageLoad(location, length, link, path, bytes(data[header + path_len:]))
