"""Device-path text rendering: known answers from the UEFI spec's text representation, and
differential against libefivar's rendering stored with tpm2-tools' YAML fixtures."""

from __future__ import annotations

import re
import struct
import uuid
from pathlib import Path

import pytest

from pcrtool.eventlog import decode_event, parse_event_log
from pcrtool.eventlog.decode.image import ImageLoad
from pcrtool.tcg.devicepath import (DevicePathNode, build_device_path, eisa_id_to_text,
                                    parse_device_path)

ESP = uuid.UUID("e3ab8f94-9466-42cc-9b81-ebb7969bb28a")


def node(t, s, data):
    return DevicePathNode(t, s, data)


def acpi(hid, uid):
    return node(2, 1, struct.pack("<II", hid, uid))


def pci(device, function):
    return node(1, 1, bytes([function, device]))


def hd_gpt(number, start, size, guid):
    return node(4, 1, struct.pack("<IQQ", number, start, size) + guid.bytes_le + bytes([2, 2]))


def file_path(text):
    return node(4, 4, (text + "\0").encode("utf-16-le"))


def test_brief_example_path():
    raw = build_device_path([acpi(0x0A0341D0, 0), pci(1, 1), hd_gpt(1, 0x800, 0x100000, ESP),
                             file_path("\\EFI\\BOOT\\BOOTX64.EFI")])
    assert parse_device_path(raw).text == (
        "PciRoot(0x0)/Pci(0x1,0x1)/HD(1,GPT,e3ab8f94-9466-42cc-9b81-ebb7969bb28a,0x800,0x100000)"
        "/\\EFI\\BOOT\\BOOTX64.EFI")


def test_eisa_id_decompression():
    assert eisa_id_to_text(0x0A0341D0) == "PNP0A03"
    assert eisa_id_to_text(0x0A0841D0) == "PNP0A08"
    assert parse_device_path(acpi(0x0A0841D0, 2).to_bytes()).text == "PcieRoot(0x2)"
    assert parse_device_path(acpi(0x05011234 & 0xFFFF0000 | 0x41D0, 0).to_bytes()).text == "Acpi(PNP0501,0x0)"


@pytest.mark.parametrize("n, text", [
    (node(3, 5, bytes([11, 0])), "USB(0xb,0x0)"),
    (node(3, 18, struct.pack("<HHH", 1, 0xFFFF, 0)), "Sata(0x1,0xffff,0x0)"),
    (node(3, 2, struct.pack("<HH", 1, 0)), "Scsi(0x1,0x0)"),
    (node(3, 23, struct.pack("<I", 1) + bytes(range(1, 9))), "NVMe(0x1,08-07-06-05-04-03-02-01)"),
    (node(3, 11, bytes.fromhex("0cc47aff601c") + bytes(26) + b"\x01"), "MAC(0cc47aff601c,0x1)"),
    (node(3, 24, b"http://x/boot.efi"), "Uri(http://x/boot.efi)"),
    (node(4, 1, struct.pack("<IQQ", 2, 63, 1000) + struct.pack("<I", 0x1234ABCD) + bytes(12) + bytes([1, 1])),
     "HD(2,MBR,0x1234abcd,0x3f,0x3e8)"),
    (node(4, 6, ESP.bytes_le), f"FvFile({ESP})"),
    (node(4, 7, ESP.bytes_le), f"Fv({ESP})"),
    (node(4, 8, struct.pack("<IQQ", 0, 0x12200, 0x2A7FF)), "Offset(0x12200,0x2a7ff)"),
    # EDK2 DevicePathToText: Ctrl(0x%x), Unit(0x%x), CDROM(0x%x,0x%lx,0x%lx), MemoryMapped(0x%x,0x%lx,0x%lx)
    (node(1, 5, struct.pack("<I", 0x1F)), "Ctrl(0x1f)"),
    (node(3, 17, bytes([2])), "Unit(0x2)"),
    (node(4, 2, struct.pack("<IQQ", 1, 0x2A0, 0x1000)), "CDROM(0x1,0x2a0,0x1000)"),
    (node(1, 3, struct.pack("<IQQ", 11, 0xFF000000, 0xFFFFFFFF)), "MemoryMapped(0xb,0xff000000,0xffffffff)"),
    (node(4, 5, ESP.bytes_le), f"Media({ESP})"),
    (node(3, 18, struct.pack("<HH", 1, 2)), "Path(3,18,01000200)"),   # short Sata node: generic form
    (node(1, 4, ESP.bytes_le), f"VenHw({ESP})"),
    (node(4, 3, ESP.bytes_le + b"\x01\x02"), f"VenMedia({ESP},0102)"),
    (node(9, 9, b"\xab\xcd"), "Path(9,9,ABCD)"),
])
def test_node_text(n, text):
    assert parse_device_path(n.to_bytes()).text == text


def test_instances_and_end():
    raw = pci(1, 0).to_bytes() + struct.pack("<BBH", 0x7F, 0x01, 4) + pci(2, 0).to_bytes() + \
        struct.pack("<BBH", 0x7F, 0xFF, 4) + b"junk"
    path = parse_device_path(raw)
    assert path.text == "Pci(0x1,0x0),Pci(0x2,0x0)"
    assert path.after_end == b"junk"
    assert path.to_bytes() == raw


@pytest.mark.parametrize("raw", [b"\x01\x01\x02\x00", b"\x01\x01\x40\x00\x00\x00", b"\x04", b""])
def test_malformed_length_stops_without_exception(raw):
    path = parse_device_path(raw)
    assert path.nodes == ()
    assert path.trailing == raw
    assert isinstance(path.text, str)


def test_short_known_node_falls_back_to_generic():
    assert parse_device_path(node(1, 1, b"\x01").to_bytes()).text == "Path(1,1,01)"


# libefivar (used by newer tpm2_eventlog for these YAMLs) spells some nodes differently from
# EDK2's DevicePathToText; translate those spellings, compare everything else exactly.
def _libefivar_to_edk2(text: str) -> str:
    text = re.sub(r"File\(([^)]*)\)", r"\1", text)
    text = text.replace("FvVol(", "Fv(")
    text = re.sub(r"SCSI\((\d+),(\d+)\)", lambda m: f"Scsi({int(m[1]):#x},{int(m[2]):#x})", text)
    text = re.sub(r"USB\((\d+),(\d+)\)", lambda m: f"USB({int(m[1]):#x},{int(m[2]):#x})", text)
    text = re.sub(r"Sata\((\d+),(\d+),(\d+)\)",
                  lambda m: f"Sata({int(m[1]):#x},{int(m[2]):#x},{int(m[3]):#x})", text)
    text = re.sub(r"MAC\(([0-9a-f]+),(\d+)\)", lambda m: f"MAC({m[1]},{int(m[2]):#x})", text)
    return text


def _pairs(corpus: Path):
    tools = corpus / "logs" / "tpm2-tools"
    for y in sorted(tools.glob("*.yaml")):
        name = y.name.removesuffix(".yaml")
        name = re.sub(r"^event-pretty(-39)?__", "", name)
        log = tools / name
        if log.is_file() and "DevicePath: '" in y.read_text():
            yield y, log


def test_device_paths_equal_libefivar(corpus):
    from helpers_corpus import need_module

    yaml = need_module("yaml")
    compared = 0
    for y, log_path in _pairs(corpus):
        text = y.read_text()
        if "- EventNum:" not in text:
            continue
        events = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["events"]
        log = parse_event_log(log_path.read_bytes())
        for ev in events:
            dp = (ev.get("Event") or {}).get("DevicePath") if isinstance(ev.get("Event"), dict) else None
            if not isinstance(dp, str) or not re.match(r"[A-Z\\]", dp) or "IPv4" in dp:
                continue
            value = decode_event(log.events[ev["EventNum"]], log)
            assert isinstance(value, ImageLoad)
            assert value.device_path.text == _libefivar_to_edk2(dp), (y.name, ev["EventNum"])
            compared += 1
    assert compared >= 20
