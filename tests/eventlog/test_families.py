"""Event families: one table gives each event type its decoder, digest rule and substitution key.

The digest rules are checked against real firmware and boot loaders: every rule that derives a
digest from the logged data must reproduce digests that some corpus log's firmware wrote.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from helpers_corpus import log_names

from pcrtool.errors import FormatError
from pcrtool.eventlog import parse_event_log
from pcrtool.eventlog.families import FAMILIES, decoders, family_of
from pcrtool.model import HashAlg
from pcrtool.tcg.constants import STUB_PROFILE_TAG, EventType

SHA256 = HashAlg.SHA256


def test_each_event_type_has_one_family():
    seen = [t for f in FAMILIES for t in f.event_types]
    assert len(seen) == len(set(seen))
    assert set(decoders()) == set(seen)
    assert all(callable(d) for d in decoders().values())
    assert family_of(0x12345678).name == "unknown"


@pytest.fixture(scope="module")
def corpus_events():
    from tests.support import corpus_root

    out = []
    for name in log_names():
        try:
            log = parse_event_log((corpus_root() / "logs" / name).read_bytes())
        except FormatError:
            continue
        out += [e for e in log.events if e.is_extended]
    return out


@pytest.mark.parametrize("event_type, pcr", [
    (EventType.EV_SEPARATOR, 7), (EventType.EV_EFI_ACTION, 4), (EventType.EV_S_CRTM_VERSION, 0),
    (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, 7), (EventType.EV_EFI_VARIABLE_AUTHORITY, 7),
    (EventType.EV_EFI_VARIABLE_BOOT, 1), (EventType.EV_EFI_GPT_EVENT, 5), (EventType.EV_IPL, 8),
    (EventType.EV_IPL, 12),
])
def test_rehash_reproduces_digests_real_firmware_wrote(corpus_events, event_type, pcr):
    events = [e for e in corpus_events if e.event_type == event_type and e.pcr == pcr and SHA256 in e.digests]
    if not events:
        pytest.skip("no such event in the corpus")
    family = family_of(event_type)
    matched = 0
    for e in events:
        try:
            digest = family.rehash(e.pcr, e.event_type, e.data, [SHA256])[SHA256]
        except FormatError:
            continue
        matched += digest == e.digests[SHA256]
    assert matched > len(events) // 2, (matched, len(events))


def test_boot_variable_hashes_the_variable_data_only():
    # UEFI_VARIABLE_DATA of BootOrder = {0001}: GUID, name length 9, data length 2, name, data
    guid = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")
    data = guid + struct.pack("<QQ", 9, 2) + "BootOrder".encode("utf-16-le") + b"\x01\x00"
    boot = family_of(EventType.EV_EFI_VARIABLE_BOOT)
    config = family_of(EventType.EV_EFI_VARIABLE_DRIVER_CONFIG)
    assert boot.rehash(1, EventType.EV_EFI_VARIABLE_BOOT, data, [SHA256])[SHA256] == hashlib.sha256(b"\x01\x00").digest()
    assert config.rehash(7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, data, [SHA256])[SHA256] == \
        hashlib.sha256(data).digest()


def test_grub_string_hashes_the_text_after_its_prefix():
    ipl = family_of(EventType.EV_IPL)
    got = ipl.rehash(8, EventType.EV_IPL, b"grub_cmd: linux /vmlinuz root=/dev/sda1\0", [SHA256])[SHA256]
    assert got == hashlib.sha256(b"linux /vmlinuz root=/dev/sda1").digest()
    # a string without a GRUB prefix is hashed as logged
    assert ipl.payloads(8, EventType.EV_IPL, b"hello\0")[0] == b"hello\0"


def test_stub_profile_tag_hashes_its_payload():
    payload = "1".encode("utf-16-le") + b"\0\0"
    data = struct.pack("<II", STUB_PROFILE_TAG, len(payload)) + payload
    tag = family_of(EventType.EV_EVENT_TAG)
    assert tag.rehash(12, EventType.EV_EVENT_TAG, data, [SHA256])[SHA256] == hashlib.sha256(payload).digest()
    linux_initrd = struct.pack("<II", 0x8F3B22EC, 13) + b"Linux initrd\0"
    assert tag.payloads(9, EventType.EV_EVENT_TAG, linux_initrd) is None


@pytest.mark.parametrize("event_type, pcr, needs", [
    (EventType.EV_EFI_BOOT_SERVICES_APPLICATION, 4, "Authenticode"),
    (EventType.EV_IPL, 9, "file"),
    (EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, 0, "firmware volume"),
])
def test_rehash_names_the_artefact_it_needs(event_type, pcr, needs):
    with pytest.raises(FormatError, match=needs):
        family_of(event_type).rehash(pcr, event_type, b"\0" * 40, [SHA256])


def test_substitution_keys():
    var = bytes(16) + struct.pack("<QQ", 2, 1) + "db".encode("utf-16-le") + b"\x01"
    assert family_of(EventType.EV_EFI_VARIABLE_AUTHORITY).key(7, EventType.EV_EFI_VARIABLE_AUTHORITY, var) == \
        (7, "authority", "db")
    assert family_of(EventType.EV_EFI_VARIABLE_DRIVER_CONFIG).key(7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                                                                   var) == (7, "variable", "db")
    assert family_of(EventType.EV_SEPARATOR).key(7, EventType.EV_SEPARATOR, bytes(4)) is None
    initrd = "System extension initrd\0".encode("utf-16-le")
    assert family_of(EventType.EV_IPL).key(12, EventType.EV_IPL, initrd) == (12, "ipl", "System extension initrd")
    assert family_of(EventType.EV_IPL).key(12, EventType.EV_IPL, "quiet\0".encode("utf-16-le")) == (12, "ipl")


def test_describe_is_the_decoding_decode_event_gives(corpus_events):
    from pcrtool.eventlog import decode_event

    for e in corpus_events[:400]:
        family = family_of(e.event_type)
        if family.name == "unknown":
            continue
        try:
            mine = family.describe(e)
        except Exception:  # noqa: BLE001 - decode_event turns these into Undecodable
            continue
        assert mine == decode_event(e), e


# --- artefact rules: the events systemd-stub, shim and the Linux EFI stub make of an artefact ---------

def _capture(name):
    import json
    from pathlib import Path

    d = Path(__file__).resolve().parents[2] / "eventlogs" / name
    if not (d / "eventlog.bin").is_file():
        pytest.skip(f"capture {name} not present")
    meta = json.loads((d / "capture.json").read_text())
    return d, meta, [e for e in parse_event_log((d / "eventlog.bin").read_bytes()).events if e.is_extended]


@pytest.mark.parametrize("name", ["ovmf-cmdline", "ovmf-loadopts"])
def test_stub_section_and_linux_tag_rules_rebuild_a_real_boots_events(name):
    """systemd-stub's PCR 11 events and the Linux EFI stub's PCR 9 tags of a real OVMF boot, rebuilt
    by the families from the section names, the sections' digests and the command line."""
    _d, meta, events = _capture(name)
    ipl, tag = family_of(EventType.EV_IPL), family_of(EventType.EV_EVENT_TAG)
    logged = [(e.pcr, e.data, e.digests[SHA256]) for e in events if e.pcr == 11]
    rebuilt = []
    for section in [e.data.decode("utf-16-le").rstrip("\0") for e in events if e.pcr == 11][::2]:
        contents = {SHA256: bytes.fromhex(meta["sections_sha256"][section])}
        for kind, artefact in (("stub-section-name", section.encode()), ("stub-section", contents)):
            pcr, data, digests = ipl.measure(kind, section, artefact, [SHA256])
            rebuilt.append((pcr, data, digests[SHA256]))
    assert len(logged) == 8 and rebuilt == logged
    # the name event hashes the ASCII name with its NUL, not the UTF-16 data it logs
    assert logged[0][2] == hashlib.sha256(b".linux\0").digest() != hashlib.sha256(logged[0][1]).digest()

    tags = [(e.pcr, e.data, e.digests[SHA256]) for e in events if e.event_type == EventType.EV_EVENT_TAG]
    cmdline = meta.get("load_options", meta["cmdline"])
    options = tag.measure("linux-load-options", "LoadOptions", (cmdline + "\0").encode("utf-16-le"), [SHA256])
    initrd = tag.measure("linux-initrd", "initrd", {SHA256: bytes.fromhex(meta["sections_sha256"][".initrd"])},
                         [SHA256])
    assert tags == [(pcr, data, d[SHA256]) for pcr, data, d in (options, initrd)]


@pytest.mark.parametrize("name", ["ovmf-ms-shim-grub-a", "ovmf-shim-grub-sb-off-a"])
def test_mok_list_rule_rebuilds_shims_pcr14_events(name):
    """shim's PCR 14: ASCII name + NUL logged; MokListX (no machine list) is the vendor dbx as is,
    an absent MokListTrusted the one byte 01."""
    d, _meta, events = _capture(name)
    ipl = family_of(EventType.EV_IPL)
    logged = {e.data: e.digests[SHA256] for e in events if e.pcr == 14}
    assert list(logged) == [b"MokList\0", b"MokListX\0", b"MokListTrusted\0"]
    for label, artefact in (("MokListX", (d / "shim-vendor-dbx.esl").read_bytes()), ("MokListTrusted", b"\x01")):
        pcr, data, digests = ipl.measure("mok-list", label, artefact, [SHA256])
        assert (pcr, logged[data]) == (14, digests[SHA256]), label
    # a wrong artefact gives another digest (the rule hashes the list, not the name)
    assert ipl.measure("mok-list", "MokListTrusted", b"\x00", [SHA256])[2][SHA256] != logged[b"MokListTrusted\0"]


def test_artefact_rules_name_their_kind():
    ipl = family_of(EventType.EV_IPL)
    with pytest.raises(ValueError, match="no single artefact rule"):
        ipl.rehash_artefact(b"x", [SHA256])            # several kinds: the caller must say which
    with pytest.raises(ValueError, match="grub-file"):
        ipl.rehash_artefact(b"x", [SHA256], "grub-file")
    app = family_of(EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    with pytest.raises(ValueError, match="caller's PCR"):
        app.measure("image", "x", b"MZ", [SHA256])   # firmware's PCR and image-load event are the caller's
