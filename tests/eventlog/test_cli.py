"""`pcrtool eventlog …` end to end: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest

from pcrtool.model import PcrValues

from tests.support.cli import run_pcrtool
LOGS = "logs"


def run(*args, env=None):
    # tests choose their PCR source explicitly
    return run_pcrtool(*args, env=env, unset=("PCRTOOL_TCTI",), timeout=60)


def test_show_json_and_table(corpus):
    log = corpus / LOGS / "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin"
    p = run("eventlog", "show", log, "--json=short")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["format"] == "crypto-agile" and doc["banks"] == ["sha1", "sha256", "sha384"]
    assert len(doc["events"]) == 117
    e13 = doc["events"][13]
    assert e13["type"] == "EV_EFI_VARIABLE_BOOT" and e13["decoded"]["name"] == "Boot0002"
    assert e13["decoded"]["value"]["devicePath"].endswith("\\EFI\\ubuntu\\shimx64.efi")
    p = run("eventlog", "show", log, "--pcr", "9")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["#", "PCR", "TYPE"]
    assert all(line.split()[1] == "9" for line in lines[1:])
    assert "linux-load-options: LOADED_IMAGE::LoadOptions" in p.stdout


def test_replay_text_matches_ground_truth(corpus):
    p = run("eventlog", "replay", corpus / LOGS / "go-tpm-tools/gdc-host.bin", "--text")
    assert p.returncode == 0
    mine = PcrValues.parse(p.stdout)
    truth = PcrValues.parse((corpus / LOGS / "go-tpm-tools/gdc-host.bin.expected-pcrs.json").read_text())
    for v in truth:
        if mine.get(v.alg, v.pcr) is not None:
            assert mine.get(v.alg, v.pcr) == v.value


def test_verify_match_and_mismatch(corpus, tmp_path):
    log = corpus / LOGS / "guard-oss/failed-1.evidence.json.eventlog.bin"
    good = run("eventlog", "verify", log, "--pcrs", corpus / LOGS / "guard-oss/good-1.evidence.json.pcrs.json")
    assert good.returncode == 0, good.stderr
    assert "mismatch" not in good.stdout
    bad = run("eventlog", "verify", log, "--pcrs", corpus / LOGS / "guard-oss/failed-1.evidence.json.pcrs.json")
    assert bad.returncode == 3
    assert "PCR 0 sha256 mismatch: fed by events" in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("pcrtool: error: replayed PCR(s) 0 differ")
    js = run("eventlog", "verify", log, "--pcrs", corpus / LOGS / "guard-oss/failed-1.evidence.json.pcrs.json", "-j")
    assert js.returncode == 3
    doc = json.loads(js.stdout)
    assert doc["mismatchingPcrs"] == [0]
    row0 = next(r for r in doc["pcrs"] if r["pcr"] == 0)
    assert row0["status"] == "mismatch" and row0["events"][0] == 2


def test_verify_against_sysfs_tree(corpus, tmp_path):
    truth = PcrValues.parse((corpus / LOGS / "go-tpm-tools/debian-10.bin.expected-pcrs.json").read_text())
    for v in truth:
        d = tmp_path / "sys/class/tpm/tpm0" / f"pcr-{v.alg.bank_name}"
        d.mkdir(parents=True, exist_ok=True)
        (d / str(v.pcr)).write_text(v.value.hex().upper() + "\n")
    env = {"PCRTOOL_SYSFS_ROOT": str(tmp_path)}
    p = run("eventlog", "verify", corpus / LOGS / "go-tpm-tools/debian-10.bin", "--sysfs", env=env)
    assert p.returncode == 0, p.stderr
    (tmp_path / "sys/class/tpm/tpm0/pcr-sha1/4").write_text("00" * 20 + "\n")
    p = run("eventlog", "verify", corpus / LOGS / "go-tpm-tools/debian-10.bin", "--sysfs", env=env)
    assert p.returncode == 3 and "PCR 4 sha1 mismatch" in p.stderr


def test_payload_digest_warnings(corpus):
    p = run("eventlog", "verify", corpus / LOGS / "go-tpm-tools/gdc-host.bin", "--pcrs",
            corpus / LOGS / "go-tpm-tools/gdc-host.bin.expected-pcrs.json")
    assert p.returncode == 0
    assert "warning: event 3 (PCR 0, EV_S_CRTM_VERSION): digest does not match the event data" in p.stderr


@pytest.mark.parametrize("args, code, text", [
    (["eventlog", "show", "/nonexistent/log"], 1, "does not exist"),
    (["eventlog", "show", "{corpus}/logs/keylime/binary_bios_measurements-empty"], 1, "is empty"),
    (["eventlog", "verify", "{corpus}/logs/tpm2-tools/event.bin"], 2, "nothing to compare with"),
    (["eventlog", "verify", "{corpus}/logs/tpm2-tools/event.bin", "--pcrs", "x", "--sysfs"], 2, "only one of"),
])
def test_errors_are_one_line(corpus, args, code, text):
    p = run(*[a.format(corpus=corpus) for a in args], env={"PCRTOOL_SYSFS_ROOT": "/nonexistent"})
    assert p.returncode == code
    assert text in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_truncated_log_error_and_allow_truncated(corpus, tmp_path):
    data = (corpus / LOGS / "tpm2-tools/event-bootorder.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) - 100])
    p = run("eventlog", "show", cut)
    assert p.returncode == 1 and "offset" in p.stderr
    p = run("eventlog", "show", cut, "--allow-truncated", "-j")
    assert p.returncode == 0 and "showing the" in p.stderr
    assert len(json.loads(p.stdout)["events"]) > 90


def test_secureboot_report(corpus):
    p = run("eventlog", "secureboot", corpus / LOGS / "tpm2-tools/event-moklisttrusted.bin", "--json=short")
    assert p.returncode == 0
    doc = json.loads(p.stdout)
    assert doc["secureBoot"] is True
    assert [d["x509"]["subject"] for d in doc["databases"]["db"]][1].startswith("CN=Microsoft Corporation UEFI CA 2011")
    shim = next(i for i in doc["images"] if i["path"].endswith("shimx64.efi"))
    assert shim["authority"]["x509"]["subject"].startswith("CN=Microsoft Corporation UEFI CA 2011")
    grub = next(i for i in doc["images"] if i["path"].endswith("grubx64.efi"))
    assert "Red Hat Secure Boot CA 5" in grub["authority"]["x509"]["subject"]


def test_cel_export(corpus, tmp_path):
    out = tmp_path / "cel.json"
    p = run("eventlog", "cel", corpus / LOGS / "tpm2-tools/event-sd-boot-fedora37.bin", "-o", out)
    assert p.returncode == 0, p.stderr
    records = json.loads(out.read_text())
    assert [r["recnum"] for r in records] == list(range(1, len(records) + 1))  # as systemd-pcrlock cel
    assert records[0]["content_type"] == "pcclient_std"
    assert {"event_type", "event_data"} <= set(records[0]["content"])
    assert records[0]["digests"][-1]["hashAlg"] == "sha256"  # systemd lists a record's digests reversed


def test_streamed_json_equals_document(corpus):
    from pcrtool.eventlog import parse_event_log
    from pcrtool.eventlog.export import iter_log_json, log_to_json

    for name in ("go-tpm-tools/ubuntu-2404-amd-sevsnp.bin", "tpm2-tools/event-uefi-sha1-log.bin",
                 "python3-uefi-eventlog/ideapad1.bin"):
        log = parse_event_log((corpus / LOGS / name).read_bytes())
        assert json.loads("".join(iter_log_json(log, batch=7))) == log_to_json(log)


def test_cel_with_userspace_log_and_replay(corpus, tmp_path):
    import hashlib

    ul = tmp_path / "tpm2-measure.log"
    ul.write_bytes(b"\x1e" + json.dumps({
        "pcr": 11, "digests": [{"hashAlg": "sha256", "digest": hashlib.sha256(b"ready").hexdigest()}],
        "content_type": "systemd", "content": {"string": "ready", "eventType": "phase"}}).encode() + b"\n")
    log = corpus / LOGS / "tpm2-tools/event-sd-boot-fedora37.bin"
    p = run("eventlog", "cel", log, "--userspace-log", ul)
    assert p.returncode == 0, p.stderr
    records = json.loads(p.stdout)
    assert records[-1]["content_type"] == "systemd" and records[-1]["content"]["string"] == "ready"
    p = run("eventlog", "replay", log, "--userspace-log", ul, "--text")
    values = PcrValues.parse(p.stdout)
    from pcrtool.model import HashAlg
    assert values.get(HashAlg.SHA256, 11) == hashlib.sha256(bytes(32) + hashlib.sha256(b"ready").digest()).digest()


def test_defaults_read_the_running_system(corpus, tmp_path):
    """Without LOG the securityfs log is read; verify without a source compares with sysfs."""
    log = corpus / LOGS / "go-tpm-tools/debian-10.bin"
    sec = tmp_path / "sys/kernel/security/tpm0"
    sec.mkdir(parents=True)
    (sec / "binary_bios_measurements").write_bytes(log.read_bytes())
    truth = PcrValues.parse((corpus / LOGS / "go-tpm-tools/debian-10.bin.expected-pcrs.json").read_text())
    for v in truth:
        d = tmp_path / "sys/class/tpm/tpm0" / f"pcr-{v.alg.bank_name}"
        d.mkdir(parents=True, exist_ok=True)
        (d / str(v.pcr)).write_text(v.value.hex() + "\n")
    env = {"PCRTOOL_SYSFS_ROOT": str(tmp_path)}
    p = run("eventlog", "show", "-j", env=env)
    assert p.returncode == 0 and len(json.loads(p.stdout)["events"]) == 25
    p = run("eventlog", "verify", env=env)
    assert p.returncode == 0, p.stderr
    p = run("eventlog", "show", env={"PCRTOOL_SYSFS_ROOT": str(tmp_path / "nothing")})
    assert p.returncode == 1 and "no firmware event log" in p.stderr


def test_userspace_log_auto_path_and_torn_warning(corpus, tmp_path):
    import hashlib

    run_dir = tmp_path / "run/log/systemd"
    run_dir.mkdir(parents=True)
    ul = run_dir / "tpm2-measure.log"
    ul.write_bytes(b"\x1e" + json.dumps({
        "pcr": 11, "digests": [{"hashAlg": "sha256", "digest": hashlib.sha256(b"sysinit").hexdigest()}],
        "content_type": "systemd", "content": {"string": "sysinit", "eventType": "phase"}}).encode() + b"\n")
    env = {"PCRTOOL_SYSFS_ROOT": str(tmp_path)}
    log = corpus / LOGS / "tpm2-tools/event-sd-boot-fedora37.bin"
    p = run("eventlog", "cel", log, "--userspace-log", "auto", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)[-1]["content"]["string"] == "sysinit"
    assert p.stderr == ""
    ul.chmod(0o1644)                       # the writer's "append in progress" mark
    p = run("eventlog", "cel", log, "--userspace-log", "auto", env=env)
    assert p.returncode == 0 and "sticky bit" in p.stderr
    p = run("eventlog", "cel", log, "--userspace-log", tmp_path / "missing.log")
    assert p.returncode == 1 and "does not exist" in p.stderr


def test_large_log_is_mapped_and_streamed_identically(corpus, tmp_path, monkeypatch):
    """A log over 1 MiB goes through the mmap + streaming path; same document as in memory."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.eventlog.export import log_to_json
    from pcrtool.eventlog.parse import EventLogStream
    from pcrtool.system import map_event_log

    data = (corpus / LOGS / "go-tpm-tools/ubuntu-2404-amd-sevsnp.bin").read_bytes()
    log = parse_event_log(data)
    first, last = log.events[1], log.events[-1]
    big = data[:first.offset] + data[first.offset:last.offset + last.size] * 30 + b"\xff" * 300
    assert len(big) > 1 << 20
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    import mmap
    assert isinstance(map_event_log(path), mmap.mmap)
    import pcrtool.eventlog.parse as parse_module
    monkeypatch.setattr(parse_module, "_RELEASE_STEP", 1 << 16)   # release walked pages often
    stream = EventLogStream(map_event_log(path))
    stream.record_starts()  # validates every record
    assert stream.log.padding == (len(big) - 300, 300)
    in_memory = parse_event_log(big)
    assert [(e.offset, e.data, e.digests) for e in stream] == \
        [(e.offset, e.data, e.digests) for e in in_memory.events]
    p = run("eventlog", "show", path, "--json=short")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == log_to_json(parse_event_log(big))
    cut = tmp_path / "cut.bin"
    cut.write_bytes(big[:len(big) - 400])
    p = run("eventlog", "show", cut, "--json=short")
    assert p.returncode == 1 and p.stdout == "" and "offset" in p.stderr
