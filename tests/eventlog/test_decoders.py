"""Known-answer tests of the payload decoders: synthetic payloads built from the spec layouts,
and facts of real corpus events (values read from the bytes by hand or by openssl)."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import uuid

import pytest

from pcrtool.eventlog import Event, EventType, decode_event, parse_event_log
from pcrtool.eventlog.decode import Raw, Undecodable
from pcrtool.eventlog.decode.firmware import Blob, Guid, HandoffTables, NonHostInfo, Separator, Text
from pcrtool.eventlog.decode.gpt import Gpt
from pcrtool.eventlog.decode.image import ImageLoad
from pcrtool.eventlog.decode.ipl import IplString
from pcrtool.eventlog.decode.noaction import Sp800155, SpecId, StartupLocality
from pcrtool.eventlog.decode.tag import TaggedEvent
from pcrtool.eventlog.decode.variables import LoadOption, SignatureEntry, SignatureList, Variable
from pcrtool.eventlog.decode.windows import Sipa
from pcrtool.model import HashAlg
from pcrtool.tcg import structs
from pcrtool.tcg.guid import EFI_CERT_SHA256_GUID, EFI_GLOBAL_VARIABLE

T = EventType


def ev(event_type, data, pcr=0):
    return Event(1, 0, pcr, EventType(event_type), {}, data)


def var_data(name, data, guid=EFI_GLOBAL_VARIABLE):
    return structs.UEFI_VARIABLE_DATA.build(dict(variable_name=guid, unicode_name=name.encode("utf-16-le"),
                                                 variable_data=data))


def _log(corpus, name):
    return parse_event_log((corpus / "logs" / name).read_bytes())


def test_secureboot_variable_and_its_known_digest(corpus):
    # tpm2-tools' event-uefivar.bin fixture: SecureBoot = 01, digest sha256 ccfc4bb3…
    payload = var_data("SecureBoot", b"\x01")
    assert hashlib.sha256(payload).hexdigest() == \
        "ccfc4bb32888a345bc8aeadaba552b627d99348c767681ab3141f5b01e40a40e"
    v = decode_event(ev(T.EV_EFI_VARIABLE_DRIVER_CONFIG, payload, 7))
    assert isinstance(v, Variable)
    assert (v.guid, v.name, v.data, v.value) == (str(EFI_GLOBAL_VARIABLE), "SecureBoot", b"\x01", True)
    log = _log(corpus, "tpm2-tools/event-uefivar.bin")
    assert log.events[1].data == payload


def test_esl_with_sha256_hashes():
    owner = uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b")
    hashes = [bytes([i]) * 32 for i in range(3)]
    esl = structs.EFI_SIGNATURE_LIST.build(dict(
        signature_type=EFI_CERT_SHA256_GUID, signature_size=48, signature_header=b"",
        signatures=[dict(signature_owner=owner, signature_data=h) for h in hashes]))
    assert len(esl) == 28 + 3 * 48
    v = decode_event(ev(T.EV_EFI_VARIABLE_DRIVER_CONFIG, var_data("dbx", esl,
                                                                    uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")), 7))
    (sl,) = v.value
    assert isinstance(sl, SignatureList) and sl.type_name == "sha256"
    assert [e.data for e in sl.entries] == hashes
    assert {e.owner for e in sl.entries} == {str(owner)}
    assert v.describe() == "dbx (3 entries)"


def test_esl_x509_fields_equal_openssl(corpus, tool):
    openssl = tool("openssl")
    log = _log(corpus, "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin")
    db = decode_event(log.events[6], log)
    assert db.name == "db"
    entries = [e for sl in db.value for e in sl.entries]
    assert len(entries) == 2
    for entry in entries:
        fp = subprocess.run([openssl, "x509", "-inform", "DER", "-noout", "-fingerprint", "-sha256", "-serial"],
                            input=entry.data, capture_output=True, check=True).stdout.decode()
        lines = dict(line.split("=", 1) for line in fp.strip().splitlines())
        fingerprint = next(v for k, v in lines.items() if "Fingerprint" in k)
        assert entry.certificate.sha256_fingerprint == fingerprint.replace(":", "").lower()
        assert int(entry.certificate.serial, 16) == int(lines["serial"], 16)
    ca = next(e.certificate for e in entries if "UEFI CA" in e.certificate.subject)
    assert ca.subject == ("CN=Microsoft Corporation UEFI CA 2011,O=Microsoft Corporation,"
                          "L=Redmond,ST=Washington,C=US")
    assert ca.issuer.startswith("CN=Microsoft Corporation Third Party Marketplace Root")
    assert ca.serial == "6108d3c4000000000004"
    assert ca.sha256_fingerprint == "48e99b991f57fc52f76149599bff0a58c47154229b9f8d603ac40d3500248507"


def test_boot_order_and_boot_entry(corpus):
    log = _log(corpus, "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin")
    order = decode_event(log.events[12], log)
    assert order.name == "BootOrder" and order.value == (2, 1, 0)
    boot = decode_event(log.events[13], log)
    assert isinstance(boot.value, LoadOption)
    assert boot.value.description == "Ubuntu" and boot.value.active
    assert boot.value.device_path.text.startswith("PciRoot(0x0)/Pci(0x4,0x0)/NVMe(0x1,00-00-00-00-00-00-00-00)/HD(15,GPT,")
    assert boot.value.device_path.file_path == "\\EFI\\ubuntu\\shimx64.efi"


def test_load_option_synthetic():
    path = bytes.fromhex("0404") + struct.pack("<H", 4 + 10) + "\\a.e".encode("utf-16-le") + b"\0\0" + \
        bytes.fromhex("7fff0400")
    opt = struct.pack("<IH", 1, len(path)) + "Linux\0".encode("utf-16-le") + path + b"opt"
    v = decode_event(ev(T.EV_EFI_VARIABLE_BOOT, var_data("Boot0001", opt), 1))
    assert v.value.description == "Linux"
    assert v.value.device_path.text == "\\a.e"
    assert v.value.optional_data == b"opt"


def test_authority_signature_data_and_shim_forms(corpus):
    log = _log(corpus, "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin")
    sbat = decode_event(log.events[28], log)
    assert sbat.name == "SbatLevel" and sbat.value.startswith("sbat,1,2021030218")
    log = _log(corpus, "tpm2-tools/event-moklisttrusted.bin")
    found = [decode_event(e, log) for e in log.events if e.event_type == T.EV_EFI_VARIABLE_AUTHORITY]
    certs = [v for v in found if isinstance(v.value, SignatureEntry)]
    assert certs[0].name == "db"
    assert certs[0].value.certificate.subject.startswith("CN=Microsoft Corporation UEFI CA 2011")
    assert any(v.name == "MokListTrusted" and v.value is True for v in found)


def test_image_load_64_and_32_bit():
    dp = bytes.fromhex("0404") + struct.pack("<H", 4 + 6) + "\\x".encode("utf-16-le") + b"\0\0" + bytes.fromhex("7fff0400")
    data64 = structs.uefi_image_load_event(8).build(dict(image_location_in_memory=0x1000, image_length_in_memory=0x2000,
                                                        image_link_time_address=0, device_path=dp))
    v = decode_event(ev(T.EV_EFI_BOOT_SERVICES_APPLICATION, data64, 4))
    assert isinstance(v, ImageLoad) and (v.location, v.length, v.device_path.text) == (0x1000, 0x2000, "\\x")
    data32 = structs.uefi_image_load_event(4).build(dict(image_location_in_memory=0x1000, image_length_in_memory=0x2000,
                                                        image_link_time_address=0, device_path=dp))
    from helpers_build import spec_id_record
    log32 = parse_event_log(spec_id_record(uintn_size=1))
    v32 = decode_event(ev(T.EV_EFI_BOOT_SERVICES_APPLICATION, data32, 4), log32)
    assert (v32.length, v32.device_path.text) == (0x2000, "\\x")
    assert isinstance(decode_event(ev(T.EV_EFI_BOOT_SERVICES_APPLICATION, data64[:20], 4)), Undecodable)


def test_gpt_event(corpus):
    log = _log(corpus, "go-tpm-tools/debian-10.bin")
    gpt = next(decode_event(e, log) for e in log.events if e.event_type == T.EV_EFI_GPT_EVENT)
    assert isinstance(gpt, Gpt)
    assert gpt.disk_guid == "cbb36459-9018-1f40-9129-341d4258fdac"
    # header bytes 32..55: MyLBA 1, AlternateLBA 0x13fffff, FirstUsableLBA 0x800
    assert (gpt.my_lba, gpt.alternate_lba, gpt.first_usable_lba, gpt.size_of_partition_entry) == \
        (1, 0x13FFFFF, 0x800, 128)
    types = [p.type_name for p in gpt.partitions]
    assert "BIOS boot" in types and "EFI System Partition" in types and "Linux filesystem" in types
    esp = next(p for p in gpt.partitions if p.type_name == "EFI System Partition")
    assert (esp.first_lba, esp.last_lba) == (0x2000, 0x3FFFF)
    bios = next(p for p in gpt.partitions if p.type_name == "BIOS boot")
    assert (bios.first_lba, bios.last_lba) == (0x800, 0x1FFF)


def test_ipl_strings(corpus):
    v = decode_event(ev(T.EV_IPL, b"grub_cmd: set root=hd0\0", 8))
    assert isinstance(v, IplString) and (v.source, v.prefix, v.value) == ("grub-command", "grub_cmd", "set root=hd0")
    v = decode_event(ev(T.EV_IPL, b"kernel_cmdline: /vmlinuz ro\0", 8))
    assert (v.prefix, v.value) == ("kernel_cmdline", "/vmlinuz ro")
    assert decode_event(ev(T.EV_IPL, b"MokListX\0", 14)).source == "shim"
    assert decode_event(ev(T.EV_IPL, b"(hd0,gpt1)/EFI/x/grub.cfg\0", 9)).source == "grub-file"
    v = decode_event(ev(T.EV_IPL, " quiet\0".encode("utf-16-le"), 12))
    assert (v.source, v.text) == ("systemd-boot", " quiet")
    v = decode_event(ev(T.EV_IPL, ".linux\0".encode("utf-16-le"), 11))
    assert (v.source, v.text) == ("systemd-stub", ".linux")


def test_event_tags():
    v = decode_event(ev(T.EV_EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 13) + b"Linux initrd\0", 9))
    assert isinstance(v, TaggedEvent) and (v.name, v.text) == ("linux-initrd", "Linux initrd")
    v = decode_event(ev(T.EV_EVENT_TAG, struct.pack("<II", 0x8F3B22ED, 26) + b"LOADED_IMAGE::LoadOptions\0", 9))
    assert v.name == "linux-load-options"
    v = decode_event(ev(T.EV_EVENT_TAG, struct.pack("<II", 0x12345678, 2) + b"\x01\x02", 1))
    assert (v.tag, v.name, v.data) == (0x12345678, None, b"\x01\x02")


def test_windows_sipa(corpus):
    log = _log(corpus, "python3-uefi-eventlog/ideapad1.bin")
    tb = decode_event(log.events[27], log)
    assert isinstance(tb, Sipa) and tb.items[0].name == "TRUSTBOUNDARY"
    nested = {i.name for i in tb.items[0].value}
    assert "BOOTCOUNTER" in nested or "TRANSFER_CONTROL" in nested
    assert decode_event(log.events[29], log).items[0].name == "AUTHORITYPUBKEY"
    virt = decode_event(log.events[39], log)
    assert log.events[39].pcr == 0xFFFFFFFF and virt.items[0].name == "TRUSTPOINT_AGGREGATION"
    assert virt.items[0].value[0].name == "AIKID" and virt.items[0].value[0].value == "Windows AIK"
    pcr13 = decode_event(next(e for e in log.events if e.pcr == 13), log)
    modules = [i.value for i in pcr13.items[0].value if i.name == "LOADEDMODULE_AGGREGATION"]
    winload = {i.name: i.value for i in modules[1]}
    assert winload["FILEPATH"] == "\\WINDOWS\\system32\\winload.efi"
    assert winload["HASHALGORITHMID"] == 0x800C                     # CALG_SHA_256
    assert winload["AUTHORITYISSUER"] == "Microsoft Windows Production PCA 2011"


def test_no_action_payloads(corpus):
    assert decode_event(ev(T.EV_NO_ACTION, b"StartupLocality\x00\x03")) == StartupLocality(3)
    log = _log(corpus, "go-tpm-tools/confidential-gke-debug-251000_eventlog.bin")
    sp = decode_event(log.events[1], log)
    assert isinstance(sp, Sp800155) and sp.signature == "SP800-155 Event3"
    assert (sp.vendor_id, sp.platform_manufacturer, sp.platform_model, sp.firmware_version) == \
        (11129, "Google, Inc.", "Google Compute Engine", "2.7")
    spec = decode_event(log.events[0], log)
    assert isinstance(spec, SpecId) and [a.alg for a in spec.spec_id.algorithms] == \
        [HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384]


def test_firmware_events():
    assert decode_event(ev(T.EV_SEPARATOR, b"\0\0\0\0")) == Separator(0, b"\0\0\0\0")
    assert decode_event(ev(T.EV_SEPARATOR, b"\x01\0\0\0")) == Separator(1, b"\x01\0\0\0")  # the error separator
    assert decode_event(ev(T.EV_EFI_ACTION, b"Exit Boot Services Invocation")) == \
        Text("Exit Boot Services Invocation", "ascii")
    assert decode_event(ev(T.EV_POST_CODE, b"ACPI DATA")) == Text("ACPI DATA", "ascii")
    assert decode_event(ev(T.EV_POST_CODE, struct.pack("<QQ", 0xFFA20000, 0x4E0000))) == Blob(0xFFA20000, 0x4E0000)
    assert decode_event(ev(T.EV_S_CRTM_CONTENTS, b"Boot Guard Measured S-CRTM\0")) == \
        Text("Boot Guard Measured S-CRTM", "ascii")
    assert decode_event(ev(T.EV_S_CRTM_VERSION, "v1.2\0".encode("utf-16-le"))) == Text("v1.2", "utf-16le")
    g = uuid.UUID("546bfb1e-1d0c-4055-a4ad-4ef4bf17b83a")
    assert decode_event(ev(T.EV_S_CRTM_VERSION, g.bytes_le)) == Guid(str(g))
    b2 = structs.UEFI_PLATFORM_FIRMWARE_BLOB2.build(dict(blob_description=b"FVMAIN", blob_base=1, blob_length=2))
    assert decode_event(ev(T.EV_EFI_PLATFORM_FIRMWARE_BLOB2, b2)) == Blob(1, 2, "FVMAIN")
    smbios = uuid.UUID("eb9d2d31-2d88-11d3-9a16-0090273fc14d")
    h = structs.UEFI_HANDOFF_TABLE_POINTERS.build(dict(table_entry=[dict(vendor_guid=smbios, vendor_table=0xF0000)]))
    ht = decode_event(ev(T.EV_EFI_HANDOFF_TABLES, h, 1))
    assert isinstance(ht, HandoffTables) and ht.tables[0].name == "SMBIOS_TABLE" and ht.tables[0].address == 0xF0000
    h2 = structs.UEFI_HANDOFF_TABLE_POINTERS2.build(dict(table_description=b"SMBIOS",
                                                         table_entry=[dict(vendor_guid=smbios, vendor_table=1)]))
    assert decode_event(ev(T.EV_EFI_HANDOFF_TABLES2, h2, 1)).description == "SMBIOS"
    assert decode_event(ev(T.EV_NONHOST_INFO, b"GCE NonHostInfo\0\x01")) == NonHostInfo("GCE NonHostInfo", b"\x01")
    assert decode_event(ev(T.EV_EFI_HCRTM_EVENT, b"HCRTM")) == Text("HCRTM", "ascii")
    assert isinstance(decode_event(ev(0x1234, b"?")), Raw)


@pytest.mark.parametrize("event_type", [T.EV_EFI_VARIABLE_BOOT, T.EV_EFI_GPT_EVENT, T.EV_EFI_HANDOFF_TABLES,
                                        T.EV_EFI_PLATFORM_FIRMWARE_BLOB, T.EV_EFI_BOOT_SERVICES_DRIVER])
def test_malformed_payload_is_undecodable_not_an_exception(event_type):
    for data in (b"", b"\xff" * 7, b"EFI PART" + b"\xff" * 100, bytes(40) + b"\xff" * 16):
        v = decode_event(ev(event_type, data))
        v.to_json()
        v.describe()


def test_systemd_tags_and_nv_index_no_action():
    from pcrtool.eventlog.decode.noaction import NvIndex

    v = decode_event(ev(T.EV_EVENT_TAG, struct.pack("<II", 0xF5BC582A, 9) + "timeout 3".encode(), 12))
    assert (v.name, v.text) == ("systemd-loader-conf", "timeout 3")
    v = decode_event(ev(T.EV_EVENT_TAG, struct.pack("<II", 0x6C46F751, 4) + b"\x01\x02\x03\x04", 12))
    assert v.name == "systemd-devicetree-addon" and v.data == b"\x01\x02\x03\x04"
    nv = decode_event(ev(T.EV_NO_ACTION, b"NvIndexInstance\x00" + b"\x01\x02"))
    assert nv == NvIndex("NvIndexInstance", b"\x01\x02")


def test_sha1_format_windows_log_decodes_virtual_pcr_events(corpus):
    log = _log(corpus, "guard-oss/windows_event_log")
    virt = [e for e in log.events if e.pcr == 0xFFFFFFFF]
    assert virt and all(isinstance(decode_event(e, log), Sipa) for e in virt)
