"""Emulated event logs are read by tpm2_eventlog (the oracle) as the PCRs pcrtool predicts."""

from __future__ import annotations

import re
import subprocess

from helpers_uki import build_uki, need_tool
from pcrtool.model import HashAlg
from pcrtool.predict.emulate import event_log_bytes
from tests.support.firmware import demo_firmware_measurements
from pcrtool.predict.events import replay_measurements
from pcrtool.predict.pe import application_measurement
from pcrtool.predict.uki import phase_measurements, section_measurements, sections_from_uki

BANKS = [HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512]


def _tpm2_eventlog_pcrs(path) -> dict[tuple[str, int], str]:
    out = subprocess.run([need_tool("tpm2_eventlog"), str(path)], capture_output=True, text=True, check=True).stdout
    section = out[out.index("\npcrs:"):]
    values, bank = {}, None
    for line in section.splitlines():
        m = re.match(r"^  (\w+):$", line)
        if m:
            bank = m.group(1)
            continue
        m = re.match(r"^\s+(\d+)\s*:\s*0x([0-9a-fA-F]+)$", line)
        if m and bank:
            values[(bank, int(m.group(1)))] = m.group(2).lower()
    return values


def test_emulated_boot_log_matches_tpm2_eventlog(tmp_path):
    uki = build_uki(tmp_path / "u", [(".linux", b"kernel" * 50), (".osrel", b"ID=x\n"), (".cmdline", b"rw")])
    before, at_boot = demo_firmware_measurements(BANKS)
    ms = before + at_boot + [application_measurement(uki, BANKS, name="EFI/Linux/x.efi")]
    ms += section_measurements(sections_from_uki(uki), BANKS) + phase_measurements("enter-initrd", BANKS)
    path = tmp_path / "log.bin"
    # no StartupLocality record: tpm2_eventlog 5.4 replays PCR 0 differently when one is present
    path.write_bytes(event_log_bytes(ms, BANKS))
    oracle = _tpm2_eventlog_pcrs(path)
    firmware_only = [m for m in ms if m.event_type is not None]  # phases are not in the firmware log
    ours = replay_measurements(firmware_only, BANKS)
    assert oracle and {(v.alg.bank_name, v.pcr): v.value.hex() for v in ours} == oracle
