"""Payload-digest verification over the corpus, comparison/explanation, Secure Boot report,
systemd userspace log (JSON-SEQ) merge and CEL-JSON export."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from helpers_corpus import log_names

from pcrtool.errors import FormatError
from pcrtool.eventlog import parse_event_log, replay
from pcrtool.eventlog.cel import to_cel_json
from pcrtool.eventlog.compare import Status, compare_with_pcrs
from pcrtool.eventlog.secureboot import secure_boot_report
from pcrtool.eventlog.userspace import extend_with_userspace, parse_userspace_log
from pcrtool.eventlog.families import verify_payload_digests
from pcrtool.model import HashAlg, PcrValues

REPO = Path(__file__).resolve().parents[2]

# Every payload-digest mismatch in the corpus, each explained:
# - tpm2_eventlog 5.4 reports the same two (its stderr: "Event 24's digest does not match its
#   payload" for the Arch logs, "Event 3's …" for GDC);
# - linux_tpm12: TPM 1.2-era firmware hashed only the variable data of EV_EFI_VARIABLE_DRIVER_CONFIG.
EXPECTED_WARNINGS = {
    "go-attestation/linux_tpm12.json.rawlog.bin": {6, 7, 8, 9, 10},
    "go-tpm-tools/arch-linux-workstation.bin": {24},
    "tpm2-tools/event-arch-linux.bin": {24},
    "go-tpm-tools/gdc-host.bin": {3},
}


def test_payload_digest_warnings_over_the_corpus(corpus):
    found = {}
    for name in log_names():
        try:
            log = parse_event_log((corpus / "logs" / name).read_bytes())
        except FormatError:
            continue
        indices = {w.index for w in verify_payload_digests(log)}
        if indices:
            found[name] = indices
    assert found == EXPECTED_WARNINGS


def test_tpm2_eventlog_agrees_on_digest_warnings(corpus):
    for name, indices in EXPECTED_WARNINGS.items():
        stderr = corpus / "tpm2_eventlog-5.4" / f"{name}.stderr"
        if stderr.is_file() and stderr.read_text().strip():
            reported = {int(w.split()[2].rstrip("'s")) for w in stderr.read_text().splitlines()
                        if "digest does not match" in w}
            assert reported == indices


def test_compare_statuses_and_feeders(corpus):
    log = parse_event_log((corpus / "logs/guard-oss/failed-1.evidence.json.eventlog.bin").read_bytes())
    result = replay(log)
    quoted = PcrValues.parse((corpus / "logs/guard-oss/failed-2.evidence.json.pcrs.json").read_text())
    cmp = compare_with_pcrs(result, quoted)
    assert cmp.mismatching_pcrs() == (0,)
    row = next(r for r in cmp.rows if r.pcr == 0)
    assert row.status == Status.MISMATCH
    assert list(row.events) == [e.index for e in log.events if e.pcr == 0 and e.is_extended]
    assert {r.status for r in cmp.rows if r.pcr != 0} <= {Status.MATCH, Status.UNUSED}
    quoted.set(HashAlg.SHA256, 10, b"\x01" * 32)          # something outside the log (IMA)
    assert next(r for r in compare_with_pcrs(result, quoted).rows if r.pcr == 10).status == Status.NOT_IN_LOG


def test_secure_boot_report_of_own_capture_matches_the_enrolled_certificates(tool):
    openssl = tool("openssl")
    capture = REPO / "eventlogs" / "ovmf-sb-own"
    if not (capture / "eventlog.bin").is_file():
        pytest.skip("eventlogs/ovmf-sb-own not captured")
    report = secure_boot_report(parse_event_log((capture / "eventlog.bin").read_bytes()))
    assert report.enabled is True
    for var, crt in (("PK", "pk.crt"), ("KEK", "kek.crt"), ("db", "db.crt")):
        out = subprocess.run([openssl, "x509", "-in", str(capture / crt), "-noout", "-fingerprint", "-sha256"],
                             capture_output=True, text=True, check=True).stdout
        fingerprint = out.strip().split("=", 1)[1].replace(":", "").lower()
        assert [e["x509"]["sha256Fingerprint"] for e in report.databases[var]] == [fingerprint]
    boot = next(i for i in report.images if i.path.endswith("BOOTX64.EFI"))
    assert boot.authority is not None and boot.authority.variable == "db"


def _record(pcr, string, banks=(HashAlg.SHA256,)):
    return b"\x1e" + json.dumps({
        "pcr": pcr, "digests": [{"hashAlg": a.bank_name, "digest": a.digest(string.encode()).hex()} for a in banks],
        "content_type": "systemd",
        "content": {"string": string, "eventType": "phase", "bootId": "0" * 32, "timestamp": 1},
    }).encode() + b"\n"


def test_userspace_log_merge_and_cel(corpus):
    log = parse_event_log((corpus / "logs/tpm2-tools/event-sd-boot-fedora37.bin").read_bytes())
    data = _record(11, "enter-initrd") + _record(11, "leave-initrd") + _record(15, "machine-id:abc")
    records = parse_userspace_log(data)
    assert [r.string for r in records] == ["enter-initrd", "leave-initrd", "machine-id:abc"]
    assert all(r.digest_valid() for r in records)
    result = replay(log)
    before = result.pcrs.get(HashAlg.SHA256, 11)
    extend_with_userspace(result, records)
    v = before if before is not None else bytes(32)
    for s in ("enter-initrd", "leave-initrd"):
        v = hashlib.sha256(v + hashlib.sha256(s.encode()).digest()).digest()
    assert result.pcrs.get(HashAlg.SHA256, 11) == v
    assert result.pcrs.get(HashAlg.SHA256, 15) == hashlib.sha256(bytes(32) + hashlib.sha256(b"machine-id:abc").digest()).digest()

    cel = to_cel_json(log, records)
    firmware = [r for r in cel if r["content_type"] == "pcclient_std"]
    assert len(firmware) == sum(1 for e in log.events if e.is_extended)
    assert cel[-1] == {"recnum": len(cel), "pcr": 15,
                       "digests": [{"hashAlg": "sha256",
                                    "digest": hashlib.sha256(b"machine-id:abc").hexdigest()}],
                       "content_type": "systemd", "content": records[2].content}
    ev = next(e for e in log.events if e.is_extended)
    assert firmware[0]["content"] == {"event_type": ev.event_type.name, "event_data": ev.data.hex()}


@pytest.mark.parametrize("data, msg", [
    (b'{"pcr":1}', "no 0x1E"),
    (b'\x1e{"pcr":1,', "not JSON"),
    (b'\x1e{"pcr":99,"digests":[]}\n', "bad pcr"),
    (b'\x1e{"pcr":1,"digests":[{"hashAlg":"sha256","digest":"00"}]}\n', "1 bytes"),
])
def test_userspace_log_errors(data, msg):
    with pytest.raises(FormatError, match=msg):
        parse_userspace_log(data)


def test_torn_userspace_log_keeps_records_before(corpus):
    data = _record(11, "a") + b'\x1e{"pcr":11,"dig'
    with pytest.raises(FormatError) as info:
        parse_userspace_log(data)
    assert [r.string for r in info.value.partial] == ["a"]
