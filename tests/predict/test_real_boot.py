"""Predictions checked against real OVMF + swtpm boots of a UKI (captured in ``eventlogs/``).

Each capture holds the firmware event log, the PCRs read in the booted guest, and the inputs
(section SHA-256 digests, command line, enrolled certificates). The predictions below are made
from those inputs only; the log and the PCRs are the oracle.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from pcrtool.model import HashAlg
from pcrtool.predict.cmdline import linux_load_options_measurement
from pcrtool.predict.events import Measurement, replay_measurements
from pcrtool.predict.secureboot import (
    Variable, authority_variable, certificate_der, policy_variables, secureboot_measurements,
    x509_signature_list,
)
from pcrtool.predict.uki import measured_sections, section_measurements
from pcrtool.tcg.constants import EventType

CAPTURES = Path(os.environ.get("PCRTOOL_CAPTURES") or Path(__file__).resolve().parents[2] / "eventlogs")
SHA256 = HashAlg.SHA256


def _capture(name: str):
    d = CAPTURES / name
    if not (d / "capture.json").is_file():
        pytest.skip(f"capture {name} not present")
    meta = json.loads((d / "capture.json").read_text())
    pcrs = json.loads((d / "pcrs.json").read_text())
    return d, meta, pcrs


def _section_digests(meta):
    return {name: {SHA256: bytes.fromhex(h)} for name, h in meta["sections_sha256"].items()}


@pytest.mark.parametrize("name", ["ovmf-sb-off", "ovmf-cmdline", "ovmf-sb-own"])
def test_pcr11_of_a_real_boot_with_the_252_stub(name):
    _d, meta, pcrs = _capture(name)
    assert "systemd-boot-efi" in meta["tools"] and meta["tools"]["systemd-boot-efi"].startswith("252")
    ms = section_measurements(_section_digests(meta), [SHA256], measured=measured_sections(252))
    assert replay_measurements(ms, [SHA256]).get(SHA256, 11).hex() == pcrs["sha256"]["11"]
    # the newest stub would also measure .uname, which Debian's 252 stub does not
    newest = section_measurements(_section_digests(meta), [SHA256])
    assert replay_measurements(newest, [SHA256]).get(SHA256, 11).hex() != pcrs["sha256"]["11"]


@pytest.mark.parametrize("name", ["ovmf-sb-off", "ovmf-cmdline"])
def test_pcr9_linux_efi_stub_load_options_include_the_nul(name):
    _d, meta, pcrs = _capture(name)
    cmdline = meta["cmdline"]
    initrd = Measurement(9, {SHA256: bytes.fromhex(meta["sections_sha256"][".initrd"])}, EventType.EV_EVENT_TAG, "initrd")
    with_nul = [linux_load_options_measurement(cmdline, [SHA256], nul=True), initrd]
    without = [linux_load_options_measurement(cmdline, [SHA256], nul=False), initrd]
    assert replay_measurements(with_nul, [SHA256]).get(SHA256, 9).hex() == pcrs["sha256"]["9"]
    assert replay_measurements(without, [SHA256]).get(SHA256, 9).hex() != pcrs["sha256"]["9"]


def test_pcr7_secure_boot_off_from_empty_variables():
    _d, meta, pcrs = _capture("ovmf-sb-off")
    banks = [HashAlg.from_name(b) for b in meta["banks"]]
    ms = secureboot_measurements(policy_variables({"SecureBoot": b"\x00"}), [], banks)
    values = replay_measurements(ms, banks)
    for alg in banks:
        assert values.get(alg, 7).hex() == pcrs[alg.bank_name]["7"]


def test_pcr7_own_keys_from_certificate_files_and_db_authority():
    from pcrtool.eventlog import parse_event_log

    d, meta, pcrs = _capture("ovmf-sb-own")
    banks = [HashAlg.from_name(b) for b in meta["banks"]]
    owner = uuid.UUID(meta["owner_guid"])
    esl = {n: x509_signature_list(certificate_der((d / f"{n.lower()}.crt").read_bytes()), owner)
           for n in ("PK", "KEK", "db")}
    # dbx is whatever the firmware-variable tool wrote: its payload is taken from the log
    log = parse_event_log((d / "eventlog.bin").read_bytes())
    logged = [Variable.from_variable_data(e.data) for e in log.events
              if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG]
    (dbx,) = [v for v in logged if v.name == "dbx"]
    variables = policy_variables({"SecureBoot": b"\x01", **esl, "dbx": dbx.data})
    db_cert = certificate_der((d / "db.crt").read_bytes())
    ms = secureboot_measurements(variables, [authority_variable(owner, db_cert)], banks)
    values = replay_measurements(ms, banks)
    for alg in banks:
        assert values.get(alg, 7).hex() == pcrs[alg.bank_name]["7"], alg


def test_substitution_predicts_the_cmdline_variant_boot_from_the_first_boots_log():
    """Reference: the log of boot 1 (ovmf-sb-off). Release: the same UKI with another .cmdline.
    The prediction must equal the PCRs read in boot 2 (ovmf-cmdline) for every PCR it can know
    (PCR 4 needs the new UKI binary's Authenticode hash, which the capture does not keep)."""
    import hashlib

    from pcrtool.predict.cmdline import linux_stub_measurements
    from pcrtool.predict.substitute import substitute_log

    d1, meta1, _ = _capture("ovmf-sb-off")
    _d2, meta2, pcrs2 = _capture("ovmf-cmdline")
    cmdline = meta2["cmdline"].encode()
    assert hashlib.sha256(cmdline).hexdigest() == meta2["sections_sha256"][".cmdline"]
    sections = _section_digests(meta2) | {".cmdline": cmdline}
    release = section_measurements(sections, [SHA256], measured=measured_sections(252))
    pcr9 = linux_stub_measurements({".cmdline": cmdline}, [SHA256]) + [
        Measurement(9, {SHA256: bytes.fromhex(meta2["sections_sha256"][".initrd"])}, EventType.EV_EVENT_TAG,
                    "initrd", (0x8F3B22EC).to_bytes(4, "little"))]
    result = substitute_log((d1 / "eventlog.bin").read_bytes(), release, [SHA256], if_present=pcr9)
    assert len(result.replaced) == 2 * 4 + 2      # 4 stub section pairs + 2 kernel tags
    for pcr in (0, 1, 2, 3, 5, 6, 7, 9, 11):
        assert result.values.get(SHA256, pcr).hex() == pcrs2["sha256"][str(pcr)], pcr
