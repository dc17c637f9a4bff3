"""The committed real-firmware captures (eventlogs/ovmf-*): parse, replay, verify, tamper.

Each capture is the event log OVMF + systemd-stub 252 + the Linux EFI stub wrote while booting a
pcrtool-built UKI, and the PCRs the booted guest read from sysfs (eventlogs/README.md). The guest's
PCRs are the oracle; tpm2_eventlog (tpm2-tools) is a second, independent replayer. No boot here:
the fresh boots are in test_e2e_firmware.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess

import pytest

import e2e_helpers as H  # noqa: E402

from pcrtool.model import HashAlg, PcrValues  # noqa: E402

pytestmark = [pytest.mark.e2e]

BANKS = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
NAMES = sorted(H.CAPTURES)
IMA_PCR = 10


def _files(name):
    d = H.CAPTURES[name]
    return d, (d / "eventlog.bin").read_bytes(), PcrValues.parse((d / "pcrs.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_capture_parses_and_replays_to_guest_pcrs_in_all_banks(name):
    from pcrtool.eventlog import parse_event_log, replay
    from pcrtool.tcg.constants import EventType

    d, data, guest = _files(name)
    meta = json.loads((d / "capture.json").read_text())
    assert hashlib.sha256(data).hexdigest() == meta["eventlog_sha256"]
    log = parse_event_log(data)
    assert list(log.banks) == list(BANKS)
    replayed = replay(log).pcrs
    in_log = {e.pcr for e in log.events if e.event_type != EventType.EV_NO_ACTION}
    # only the boot through a Boot#### entry with LoadOptions has PCR 12 (the stub's cmdline event)
    assert in_log == {0, 1, 2, 3, 4, 5, 6, 7, 9, 11} | ({12} if "load_options" in meta else set())
    for alg in BANKS:
        for pcr in sorted(in_log):
            assert replayed.get(alg, pcr) == guest.get(alg, pcr), (pcr, alg)
        # PCR 10 is IMA's boot_aggregate (kernel, not firmware): present, never in this log
        assert guest.get(alg, IMA_PCR) != alg.zero
    # Stub 252: 4 sections (.linux .osrel .cmdline .initrd) × 2 EV_IPL events on PCR 11
    assert sum(1 for e in log.events if e.pcr == 11) == 8
    apps = [e for e in log.events if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    assert len(apps) == (1 if meta["secure_boot"] == "own" else 2)


@pytest.mark.parametrize("name", NAMES)
def test_capture_agrees_with_tpm2_eventlog(name, tool):
    """Independent replayer (tpm2-tools 5.4) over the same bytes gives the guest's PCRs."""
    exe = tool("tpm2_eventlog")
    d, _data, guest = _files(name)
    out = subprocess.run([exe, str(d / "eventlog.bin")], capture_output=True, text=True, check=True).stdout
    pcrs_part = out[out.index("\npcrs:"):]
    bank = None
    seen = 0
    for line in pcrs_part.splitlines():
        m = re.match(r"\s+(sha\d+):\s*$", line)
        if m:
            bank = HashAlg.from_name(m.group(1))
            continue
        m = re.match(r"\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)", line)
        if m and bank is not None:
            assert bytes.fromhex(m.group(2)) == guest.get(bank, int(m.group(1))), (bank, m.group(1))
            seen += 1
    assert seen == (44 if name == "loadopts" else 40)  # 10 (11) PCRs × 4 banks


@pytest.mark.parametrize("name", NAMES)
def test_cli_verify_exits_0_against_guest_pcrs(name):
    d = H.CAPTURES[name]
    proc = H.pcrtool("--json=short", "eventlog", "verify", d / "eventlog.bin", "--pcrs", d / "pcrs.json")
    assert proc.returncode == 0, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["mismatchingPcrs"] == []
    status = {(p["pcr"], p["bank"]): p["status"] for p in report["pcrs"]}
    for alg in BANKS:
        for pcr in (0, 1, 2, 3, 4, 5, 6, 7, 9, 11) + ((12,) if name == "loadopts" else ()):
            assert status[(pcr, alg.bank_name)] == "match"
        assert status[(IMA_PCR, alg.bank_name)] == "not-in-log"


def _flip(data: bytes, needle: bytes, at: int = 0) -> bytes:
    assert data.count(needle) == 1, f"{needle[:16]!r} not unique in the log"
    pos = data.index(needle) + at
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]


def test_cli_verify_exits_3_when_a_measured_section_digest_is_flipped(tmp_path):
    """One bit of the .cmdline section's sha256 in the stub's PCR 11 EV_IPL event → exit 3."""
    d, data, _ = _files("sb-off")
    meta = json.loads((d / "capture.json").read_text())
    cmdline_digest = bytes.fromhex(meta["sections_sha256"][".cmdline"])
    bad = tmp_path / "tampered.bin"
    bad.write_bytes(_flip(data, cmdline_digest, 5))
    proc = H.pcrtool("--json=short", "eventlog", "verify", bad, "--pcrs", d / "pcrs.json")
    assert proc.returncode == 3, proc.stderr.decode()
    report = json.loads(proc.stdout)
    assert report["ok"] is False
    assert {(m["pcr"], m["bank"]) if isinstance(m, dict) else m for m in report["mismatchingPcrs"]} != set()
    assert any(p["pcr"] == 11 and p["bank"] == "sha256" and p["status"] != "match" for p in report["pcrs"])
    assert all(p["status"] in ("match", "unused", "not-in-log") for p in report["pcrs"] if p["pcr"] != 11)


def test_cli_verify_reports_a_flipped_payload_as_a_warning(tmp_path):
    """One bit of an EV_EFI_ACTION payload (digest = H(payload)): the digests still replay to the
    PCRs (exit 0, as issue 2 specifies), and the payload warning names the event."""
    d, data, _ = _files("sb-off")
    needle = b"Returning from EFI Application from Boot Option"
    bad = tmp_path / "tampered-payload.bin"
    bad.write_bytes(_flip(data, needle, 0))
    proc = H.pcrtool("--json=short", "eventlog", "verify", bad, "--pcrs", d / "pcrs.json")
    assert proc.returncode == 0, proc.stderr.decode()
    warnings = json.loads(proc.stdout)["payloadWarnings"]
    assert sorted((w["event"], w["pcr"], w["type"], w["bank"]) for w in warnings) == \
        [(23, 4, "EV_EFI_ACTION", b.bank_name) for b in BANKS]
    clean = H.pcrtool("--json=short", "eventlog", "verify", d / "eventlog.bin", "--pcrs", d / "pcrs.json")
    assert json.loads(clean.stdout)["payloadWarnings"] == []


def test_cli_verify_exits_3_against_another_captures_pcrs():
    """The cmdline capture's log against the SB-off guest's PCRs: PCR 9/11 (and 4) differ → exit 3."""
    a, b = H.CAPTURES["cmdline"], H.CAPTURES["sb-off"]
    proc = H.pcrtool("--json=short", "eventlog", "verify", a / "eventlog.bin", "--pcrs", b / "pcrs.json")
    assert proc.returncode == 3
    bad = {p["pcr"] for p in json.loads(proc.stdout)["pcrs"] if p["status"] not in ("match", "unused", "not-in-log")}
    assert bad == {4, 9, 11}


@pytest.mark.parametrize("name", NAMES)
def test_replay_log_into_swtpm_reaches_the_guest_pcrs(name, swtpm):
    """`pcrtool tpm replay-log` into a fresh swtpm: the TPM's own PCRs (read back with
    `pcrtool tpm pcrread`) equal what the guest read after the real boot, in all banks."""
    d, _data, guest = _files(name)
    proc = H.pcrtool("--json=short", "tpm", "replay-log", d / "eventlog.bin", "--tcti", swtpm.tcti)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["mismatches"] == []
    sel = "+".join(f"{a.bank_name}:0,1,2,3,4,5,6,7,9,11,12" for a in BANKS)
    read = H.pcrtool("tpm", "pcrread", sel, "--tcti", swtpm.tcti, check=True)
    live = PcrValues.parse(read.stdout.decode())
    for alg in BANKS:
        for pcr in (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12):
            assert live.get(alg, pcr) == guest.get(alg, pcr), (pcr, alg)


def test_load_options_measured_by_stub252_into_pcr12_and_by_linux_into_pcr9():
    """Boot0100 carries LoadOptions stored as UTF-16LE *without* a NUL. With Secure Boot off,
    systemd-stub 252 replaces .cmdline with them and measures them into PCR 12 as EV_IPL of the
    UTF-16LE string *with* the 2-byte NUL (130 bytes for 64 characters); the kernel's EFI stub
    measures the same bytes into PCR 9. Predicted with pcrtool.predict.cmdline (nul=True)."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.predict.cmdline import (linux_load_options_measurement, stub_cmdline_measurement,
                                         utf16_cmdline)
    from pcrtool.predict.events import replay_measurements
    from pcrtool.tcg.constants import EventType

    d, data, guest = _files("loadopts")
    meta = json.loads((d / "capture.json").read_text())
    text = meta["load_options"]
    assert bytes.fromhex(meta["load_options_hex"]) == utf16_cmdline(text, nul=False)  # stored without NUL
    assert meta["guest_cmdline"] == text and text != meta["cmdline"]  # the stub used them, not .cmdline
    (ev12,) = [e for e in parse_event_log(data).events if e.pcr == 12]
    assert ev12.event_type == EventType.EV_IPL and ev12.data == utf16_cmdline(text, nul=True)
    log9 = [e for e in parse_event_log(data).events if e.pcr == 9][0]
    for nul, expect in ((True, True), (False, False)):
        p12 = replay_measurements([stub_cmdline_measurement(text, BANKS, nul=nul)], BANKS)
        for alg in BANKS:
            assert (p12.get(alg, 12) == guest.get(alg, 12)) is expect, (nul, alg)
            opt = linux_load_options_measurement(text, [alg], nul=nul).digests[alg]
            assert (opt == log9.digests[alg]) is expect, (nul, alg)


def test_boot_next_entry_has_no_returning_from_application_pair():
    """OVMF's PCR 4 sequence depends on the boot path: through BootNext the first option runs, so
    the "Returning from EFI Application" + second "Calling" pair of the removable-media boot is
    absent (a reference log must come from the same boot path)."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.tcg.constants import EventType

    def actions(name):
        return [e.data for e in parse_event_log(_files(name)[1]).events
                if e.pcr == 4 and e.event_type == EventType.EV_EFI_ACTION]
    calling = b"Calling EFI Application from Boot Option"
    returning = b"Returning from EFI Application from Boot Option"
    assert actions("loadopts") == [calling]
    assert actions("sb-off") == [calling, returning, calling]


def _loadopts_manifest(tmp_path, meta, log, cmdline_extra: str, linux_stub: bool):
    """A release manifest for the `ovmf-loadopts` boot from what is committed: section SHA-256s from
    capture.json (the UKI binary is not kept; the other banks' section digests and the two PCR 4
    Authenticode digests are taken from the log's events, after checking the log's SHA-256 section
    digests against capture.json), SecureBoot = 0, the load options as `[cmdline] stub`."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.tcg.constants import EventType

    events = parse_event_log(log).events
    pcr11 = [e for e in events if e.pcr == 11]
    sections = {}
    for name_ev, content_ev in zip(pcr11[::2], pcr11[1::2]):
        name = name_ev.data.decode("utf-16-le").rstrip("\0")
        assert content_ev.digests[HashAlg.SHA256].hex() == meta["sections_sha256"][name], name
        sections[name] = content_ev.digests
    assert sorted(sections) == [".cmdline", ".initrd", ".linux", ".osrel"]  # stub 252: no .uname
    apps = [e for e in events if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    assert len(apps) == 2  # the UKI, then the kernel the stub LoadImage()s (Secure Boot off)

    def table(digests):
        return "{" + ", ".join(f'{a.bank_name} = "{digests[a].hex()}"' for a in BANKS) + "}"
    (tmp_path / "reference.bin").write_bytes(log)
    sec = "\n".join(f"{n.lstrip('.')} = {table(d)}" for n, d in sections.items())
    text = f'''name = "pcrtool-e2e"
version = "1"
svn = 2
banks = [{", ".join(f'"{a.bank_name}"' for a in BANKS)}]
pcrs = [4, 7, 9, 11, 12]
phases = [":"]
reference_log = "reference.bin"

[uki]
stub = 252
linux_stub = {"true" if linux_stub else "false"}

[uki.sections]
{sec}

[boot]
chain = [{{name = "uki", {table(apps[0].digests)[1:-1]}}}, {{name = "uki.linux", {table(apps[1].digests)[1:-1]}}}]

[secureboot]
SecureBoot = 0

[cmdline]
stub = "{meta["load_options"]}"
{cmdline_extra}
'''
    (tmp_path / "release.toml").write_text(text)
    return tmp_path / "release.toml"


@pytest.mark.parametrize("linux_stub", [False, True])
@pytest.mark.parametrize("kernel", [None, "load_options", "cmdline"])
def test_predict_release_equals_the_load_options_boot(tmp_path, kernel, linux_stub):
    """`pcrtool predict release` for the `ovmf-loadopts` boot (Boot0100 LoadOptions, Secure Boot
    off) = the guest's PCR 4/7/9/11/12 in all four banks. PCR 9's load options are the boot entry's
    LoadOptions (systemd-stub 252 passed them instead of .cmdline), UTF-16LE + NUL; an explicit
    `[cmdline] kernel` replaces the UKI-derived event (never a second one). With `kernel` = the
    .cmdline text, only PCR 9 differs from the boot."""
    from pcrtool.eventlog.replay import extend

    d, log, guest = _files("loadopts")
    meta = json.loads((d / "capture.json").read_text())
    extra = f'kernel = "{meta[kernel]}"' if kernel else ""
    manifest = _loadopts_manifest(tmp_path, meta, log, extra, linux_stub)
    out = tmp_path / "predictions.json"
    H.pcrtool("predict", "release", manifest, "--output", out, check=True)
    (rel,) = json.loads(out.read_text())["releases"]
    (phase,) = rel["phases"]
    pred = PcrValues.parse(json.dumps(phase["values"]))
    for alg in BANKS:
        for pcr in (4, 7, 11, 12):
            assert pred.get(alg, pcr) == guest.get(alg, pcr), (pcr, alg)
        # PCR 9 from reset, independent of the log: H(UTF-16LE load options + NUL), then H(.initrd)
        text = meta["cmdline"] if kernel == "cmdline" else meta["load_options"]
        want9 = extend(alg, extend(alg, alg.zero, alg.digest(text.encode("utf-16-le") + b"\0\0")),
                       _initrd_digest(log, alg))
        assert pred.get(alg, 9) == want9, alg
        assert (pred.get(alg, 9) == guest.get(alg, 9)) is (kernel != "cmdline"), alg


def _initrd_digest(log: bytes, alg):
    """H(.initrd) as the stub logged it on PCR 11 (the same bytes the kernel measures into PCR 9)."""
    from pcrtool.eventlog import parse_event_log

    pcr11 = [e for e in parse_event_log(log).events if e.pcr == 11]
    (content,) = [c for n, c in zip(pcr11[::2], pcr11[1::2]) if n.data.decode("utf-16-le").rstrip("\0") == ".initrd"]
    return content.digests[alg]
