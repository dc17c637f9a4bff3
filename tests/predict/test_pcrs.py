"""PCR 4, 5, 7, 9, 12 predictors against oracles: corpus events, pesign, sbsiglist/sbvarsign."""

from __future__ import annotations

import hashlib

import struct
import subprocess
import uuid
import zlib

import pytest

from helpers_corpus_predict import corpus_logs
from helpers_uki import need_tool
from pcrtool.errors import FormatError, PcrtoolError, UsageError
from pcrtool.model import HashAlg
from pcrtool.predict.cmdline import stub_cmdline_measurement, utf16_cmdline
from pcrtool.predict.gpt import gpt_event_data
from pcrtool.predict.pe import CALLING_EFI_APPLICATION, application_measurement, boot_chain_measurements, efi_action, separator
from pcrtool.predict.secureboot import read_variable_file, x509_signature_list
from pcrtool.tcg.constants import EventType

OWNER = "a9b1e2f0-5c2d-4e6b-8f3a-70637274c001"
SD_BOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"


def _log(corpus, name):
    from pcrtool.eventlog import parse_event_log

    try:
        return parse_event_log((corpus / "logs" / name).read_bytes())
    except PcrtoolError as e:
        pytest.skip(f"log does not parse: {e.message}")


@pytest.mark.parametrize("name", corpus_logs())
def test_pcr4_action_and_separator_digests_equal_the_firmware_events(corpus, name):
    log = _log(corpus, name)
    checked = 0
    for e in log.events:
        if e.pcr != 4:
            continue
        if e.event_type == EventType.EV_EFI_ACTION and e.data == CALLING_EFI_APPLICATION:
            ours = efi_action(4, e.data, list(e.digests))
        elif e.event_type == EventType.EV_SEPARATOR:
            ours = separator(4, list(e.digests), e.data)
        else:
            continue
        assert dict(ours.digests) == e.digests
        checked += 1
    if not checked:
        pytest.skip("no PCR 4 action/separator events")


@pytest.mark.parametrize("name", corpus_logs())
def test_pcr5_gpt_event_from_a_disk_rebuilt_from_the_logged_table(corpus, name):
    """Write the logged header and entries back into a disk image; the event must come out equal."""
    log = _log(corpus, name)
    events = [e for e in log.events if e.event_type == EventType.EV_EFI_GPT_EVENT]
    if not events:
        pytest.skip("no GPT event")
    for e in events:
        hdr = bytearray(e.data[:92])
        n_used = int.from_bytes(e.data[92:92 + log.uintn_bytes], "little")
        count, size = struct.unpack_from("<II", hdr, 80)
        entries = e.data[92 + log.uintn_bytes:]
        assert len(entries) == n_used * size
        table = entries.ljust(count * size, b"\0")
        if zlib.crc32(table) != struct.unpack_from("<I", hdr, 88)[0]:
            pytest.skip("used entries were not contiguous at the start of the table")
        lba = struct.unpack_from("<Q", hdr, 72)[0]
        disk = bytearray(512 * lba + len(table))
        disk[512:512 + 92] = hdr
        disk[512 * lba:] = table
        data = gpt_event_data(bytes(disk), uintn_size=log.uintn_bytes)
        assert data == e.data
        for alg, d in e.digests.items():
            assert alg.digest(data) == d


def test_gpt_errors():
    with pytest.raises(FormatError, match="no GPT header"):
        gpt_event_data(bytes(4096))


def test_gpt_event_data_crc_is_edk2s_check_not_systemds():
    """EDK2 measures no GPT whose entry array CRC is wrong; systemd-pcrlock's lock-gpt does not check."""
    from pcrtool.gpt import GptEntry, build_gpt
    from pcrtool.pcrlock import lock_gpt

    esp = GptEntry(0, uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"), uuid.UUID(int=1), 2048, 4095, 0, "ESP")
    head = bytearray(build_gpt([esp], disk_guid=uuid.UUID(int=2), total_sectors=8192).head)
    good = gpt_event_data(bytes(head))
    # UEFI_GPT_DATA (TCG PFP §10.2.6): the header, UINT64 count of used entries, the used entries
    assert good == bytes(head[512:604]) + (1).to_bytes(8, "little") + bytes(head[1024:1152])
    head[1024 + 128 + 56] ^= 1    # a byte of an unused entry: the entry array CRC no longer matches
    with pytest.raises(FormatError, match="CRC mismatch"):
        gpt_event_data(bytes(head))
    assert gpt_event_data(bytes(head), check_crc=False) == good
    assert lock_gpt(bytes(head)).records[0].digest(HashAlg.SHA256) == hashlib.sha256(good).digest()


def test_pcr4_image_digest_is_pesigns_authenticode_hash():
    need_tool("pesign")
    out = subprocess.run(["pesign", "-h", "-i", SD_BOOT], capture_output=True, text=True, check=True).stdout
    expected = out.split()[-1]
    m = application_measurement(open(SD_BOOT, "rb").read(), [HashAlg.SHA256])
    assert m.digests[HashAlg.SHA256].hex() == expected


def test_boot_chain_precomputed_digests_and_errors():
    d = {HashAlg.SHA256: bytes(32)}
    ms = boot_chain_measurements([("a", d)], [HashAlg.SHA256])
    assert [m.event_type for m in ms] == [EventType.EV_EFI_ACTION, EventType.EV_SEPARATOR,
                                          EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    with pytest.raises(UsageError, match="no precomputed sha1"):
        boot_chain_measurements([("a", d)], [HashAlg.SHA1])


def test_cmdline_utf16_with_and_without_nul():
    assert utf16_cmdline("ab") == b"a\0b\0\0\0"
    assert utf16_cmdline("ab", nul=False) == b"a\0b\0"
    m = stub_cmdline_measurement("ab", [HashAlg.SHA256])
    assert m.digests[HashAlg.SHA256] == HashAlg.SHA256.digest(b"a\0b\0\0\0") and m.pcr == 12


@pytest.fixture
def cert_files(tmp_path):
    need_tool("openssl")
    key, pem, der = tmp_path / "k.pem", tmp_path / "c.pem", tmp_path / "c.der"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", pem,
                    "-subj", "/CN=pcrtool test db", "-days", "3"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", pem, "-outform", "der", "-out", der], check=True, capture_output=True)
    return tmp_path, key, pem, der


def test_esl_equals_sbsiglist_and_auth_payload_is_the_esl(cert_files):
    tmp, key, pem, der = cert_files
    esl, auth = tmp / "db.esl", tmp / "db.auth"
    subprocess.run([need_tool("sbsiglist"), "--owner", OWNER, "--type", "x509", "--output", esl, der],
                   check=True, capture_output=True)
    subprocess.run([need_tool("sbvarsign"), "--key", key, "--cert", pem, "--output", auth, "db", esl],
                   check=True, capture_output=True)
    ours = x509_signature_list(der.read_bytes(), uuid.UUID(OWNER))
    assert ours == esl.read_bytes()
    assert read_variable_file(esl.read_bytes(), name="db") == ours
    assert read_variable_file(auth.read_bytes(), name="db") == ours
    efivarfs = struct.pack("<I", 0x27) + ours
    assert read_variable_file(efivarfs, name="db") == ours
    assert read_variable_file(b"\x27\0\0\0\x01", name="SecureBoot") == b"\x01"


@pytest.mark.parametrize("data,fmt,needle", [
    (b"\x01\x02\x03", "auto", "EFI_SIGNATURE_LIST"),
    (bytes(40), "auth", "not an EFI_VARIABLE_AUTHENTICATION_2"),
    (b"\x02", "auto", None),
])
def test_bad_variable_files(data, fmt, needle):
    if needle is None:
        with pytest.raises(FormatError, match="SecureBoot must be one byte"):
            read_variable_file(data, name="SecureBoot")
        return
    with pytest.raises(FormatError, match=needle):
        read_variable_file(data, name="db", fmt=fmt)


def test_stub_cmdline_mangling():
    from pcrtool.predict.cmdline import stub_cmdline_text

    assert stub_cmdline_text(b"  quiet\trw\n\n") == "quiet rw"
    assert stub_cmdline_text(b"a b\0junk") == "a b"
