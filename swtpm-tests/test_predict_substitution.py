"""Substitution proven on swtpm: boot-emulate release A, predict release B from A's log, boot B, compare.

Release A and B are real UKIs (systemd's stub + sections, built with objcopy) loaded by
systemd-boot. Each "boot" extends its firmware event log (generated from pcrtool's per-event
predictions) into a fresh swtpm with TPM2_PCR_Extend, plus the systemd-pcrextend phase. The
prediction for B is computed from A's *log* and B's artefacts only; the TPM is the oracle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.predict.helpers_uki import build_uki  # noqa: E402

from pcrtool.model import PcrSelection  # noqa: E402

PCRS = (0, 1, 2, 3, 4, 5, 6, 7, 11)
SD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


def _boot(tpm, sw, log_bytes, phase_ms):
    """Emulate one boot: power cycle, firmware log into the TPM, then the userspace phase events."""
    from pcrtool.eventlog import parse_event_log
    from pcrtool.tpm.replay import replay_log_into_tpm

    sw.reboot()
    report = replay_log_into_tpm(tpm, parse_event_log(log_bytes))
    assert not report.mismatches()
    for m in phase_ms:
        tpm.extend(m.pcr, {alg: m.digests[alg] for alg in report.banks})
    return report.banks


def _release_log(uki: bytes, banks):
    from pcrtool.predict.emulate import event_log_bytes
    from tests.support.firmware import demo_firmware_measurements
    from pcrtool.predict.pe import application_measurement
    from pcrtool.predict.uki import section_measurements, sections_from_uki

    before, at_boot = demo_firmware_measurements(banks)
    chain = [application_measurement(SD_BOOT.read_bytes(), banks, name="EFI/BOOT/BOOTX64.EFI"),
             application_measurement(uki, banks, name="EFI/Linux/release.efi")]
    stub = section_measurements(sections_from_uki(uki), banks)
    return event_log_bytes(before + at_boot + chain + stub, banks, locality=0)


def test_substituted_prediction_equals_the_booted_tpm(tmp_path, swtpm, tpm):
    from pcrtool.predict.manifest import parse_manifest, predict_release
    from pcrtool.predict.uki import phase_measurements

    if not SD_BOOT.is_file():
        pytest.skip("systemd-boot-efi missing")
    banks = tpm.banks()
    uki_a = build_uki(tmp_path / "a", [(".linux", b"kernel A" * 1000), (".osrel", b"VERSION_ID=1\n"),
                                       (".cmdline", b"root=/dev/vda2 ro")])
    uki_b = build_uki(tmp_path / "b", [(".linux", b"kernel B" * 1200), (".osrel", b"VERSION_ID=2\n"),
                                       (".cmdline", b"root=/dev/vda2 ro quiet"), (".initrd", b"initrd B")])
    phase = phase_measurements("enter-initrd", banks)

    # 1. the target machine boots release A; its event log is our reference
    log_a = _release_log(uki_a, banks)
    _boot(tpm, swtpm, log_a, phase)
    booted_a = tpm.read_pcrs(PcrSelection({alg: PCRS for alg in banks}))

    # 2. predict release B from A's log + B's artefacts (manifest → substitution engine)
    (tmp_path / "b.efi").write_bytes(uki_b)
    manifest = parse_manifest(f'name = "demo"\nversion = "2"\nsvn = 2\npcrs = {list(PCRS)}\n'
                              f'banks = {[a.bank_name for a in banks]}\nphases = ["enter-initrd"]\n'
                              f'[uki]\npath = "b.efi"\n[boot]\nchain = ["{SD_BOOT}", "uki"]\n')
    release_b = predict_release(manifest, lambda p: (tmp_path / p).read_bytes() if not p.startswith("/")
                                else Path(p).read_bytes(), reference_log=log_a)
    assert any("EV_POST_CODE" in n for n in release_b.notes)  # unknown kinds are kept and reported

    # 3. the machine boots release B (its log generated independently of the substitution)
    _boot(tpm, swtpm, _release_log(uki_b, banks), phase)
    booted_b = tpm.read_pcrs(PcrSelection({alg: PCRS for alg in banks}))

    predicted = release_b.values("enter-initrd")
    for alg in banks:
        for pcr in PCRS:
            assert predicted.get(alg, pcr) == booted_b.get(alg, pcr), (alg.bank_name, pcr)
    # the release really changed PCR 4 and 11, and nothing else
    changed = {pcr for alg in banks for pcr in PCRS if booted_a.get(alg, pcr) != booted_b.get(alg, pcr)}
    assert changed == {4, 11}


def test_predictions_file_measurements_replay_into_the_tpm(tmp_path, swtpm, tpm):
    """The per-phase event list in the predictions file is what validation extends: it must give
    exactly the predicted PCRs on a real TPM."""
    import json

    from pcrtool.predict.manifest import dump_predictions, load_predictions, parse_manifest, predict_release

    banks = tpm.banks()
    uki = build_uki(tmp_path / "u", [(".linux", b"kernel" * 300), (".osrel", b"VERSION_ID=3\n")])
    (tmp_path / "u.efi").write_bytes(uki)
    manifest = parse_manifest(f'name = "demo"\nversion = "3"\nsvn = 3\nbanks = {[a.bank_name for a in banks]}\n'
                              'phases = [":", "enter-initrd", "enter-initrd:leave-initrd"]\n'
                              '[uki]\npath = "u.efi"\n[cmdline]\nstub = "quiet"\n')
    release = predict_release(manifest, lambda p: (tmp_path / p).read_bytes())
    (back,) = load_predictions(json.dumps(dump_predictions([release])))
    for phase in back.phases:
        swtpm.reboot()
        for m in back.measurements[phase]:
            tpm.extend(m.pcr, {alg: m.digests[alg] for alg in banks})
        booted = tpm.read_pcrs(PcrSelection({alg: back.pcrs for alg in banks}))
        for alg in banks:
            for pcr in back.pcrs:
                assert booted.get(alg, pcr) == back.values(phase).get(alg, pcr), (phase, alg.bank_name, pcr)
