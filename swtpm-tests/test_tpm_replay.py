"""Boot emulation: every corpus event log replayed into a fresh swtpm ends in the PCR values the
pure replay (pcrtool.eventlog.replay) computes; PCR 0 of StartupLocality-3 logs only when swtpm is
started at locality 3, and reported as unreproducible otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcrtool.errors import FormatError, UsageError
from pcrtool.eventlog import parse_event_log, replay
from pcrtool.model import PcrSelection

CORPUS_LOGS = (Path(__file__).resolve().parents[1] / ".." / "shared" / "eventlogs-corpus" / "logs").resolve()
TEXT_SUFFIXES = {".json", ".yml", ".yaml", ".b64", ".warn", ".txt", ".md"}
SWTPM_BANKS = {"sha1", "sha256", "sha384", "sha512"}


def _binary_logs() -> list[str]:
    if not CORPUS_LOGS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS_LOGS)) for p in CORPUS_LOGS.rglob("*")
                  if p.is_file() and p.suffix not in TEXT_SUFFIXES and p.stat().st_size > 0)


@pytest.fixture(scope="module")
def rig(swtpm_module):
    from pcrtool.tpm import open_tpm

    with open_tpm(swtpm_module.tcti) as tpm:
        yield swtpm_module, tpm


def _load(corpus, name):
    try:
        return parse_event_log((corpus / "logs" / name).read_bytes())
    except FormatError as e:
        pytest.skip(f"not a parseable binary event log: {e.message}")


def _tpm_vs_pure(tpm, log):
    """(tpm values, independent pure replay) over every PCR the log extends."""
    pure = replay(log)
    touched = sorted({p for alg in pure.pcrs.banks() for p in pure.pcrs.values[alg]})
    sel = PcrSelection({alg: tuple(touched) for alg in pure.pcrs.banks()})
    return tpm.read_pcrs(sel), pure


@pytest.mark.parametrize("name", _binary_logs())
def test_replay_into_swtpm_equals_pure_replay(corpus, rig, name):
    from pcrtool.tpm.replay import replay_log_into_tpm

    sw, tpm = rig
    log = _load(corpus, name)
    assert {b.bank_name for b in log.banks} <= SWTPM_BANKS  # swtpm has every bank of the corpus
    sw.reboot()  # fresh PCRs, Startup at locality 0
    report = replay_log_into_tpm(tpm, log)
    got, pure = _tpm_vs_pure(tpm, log)
    gapped = {(g.alg, g.pcr) for g in pure.gaps}
    locality0 = not pure.hcrtm and not pure.locality
    differing = {(v.alg, v.pcr) for v in pure.pcrs if got.get(v.alg, v.pcr) != v.value}
    if locality0:
        assert differing <= gapped
        assert all(pcr != 0 for _, pcr in report.unreproducible) or any(p == 0 for _, p in gapped)
    else:  # PCR 0 differs (0…00 vs 0…03 start) and the report says so; all other PCRs agree
        assert {pcr for _, pcr in differing - gapped} <= {0}
        assert all((alg, 0) in report.unreproducible for alg in pure.pcrs.banks() if 0 in pure.pcrs.values[alg])
    assert report.mismatches() == []
    assert set(report.unreproducible) >= gapped
    if pure.locality == 3 and not pure.hcrtm:
        # swtpm started from locality 3 has PCR 0 = 0…03 like that machine: now PCR 0 agrees too.
        sw.reboot(startup_locality=3)
        report = replay_log_into_tpm(tpm, log)
        got, pure = _tpm_vs_pure(tpm, log)
        assert {(v.alg, v.pcr) for v in pure.pcrs if got.get(v.alg, v.pcr) != v.value} <= gapped
        assert not any(pcr == 0 for _, pcr in report.unreproducible)
        assert all(got.get(alg, 0) == pure.pcrs.get(alg, 0) for alg in pure.pcrs.banks())


def test_replay_refuses_a_tpm_that_was_not_reset(corpus, rig):
    from pcrtool.tpm.replay import replay_log_into_tpm

    sw, tpm = rig
    log = _load(corpus, "tpm2-tools/event-arch-linux.bin")
    sw.reboot()
    replay_log_into_tpm(tpm, log)
    with pytest.raises(UsageError, match="not at its reset value"):
        replay_log_into_tpm(tpm, log)


def test_cli_replay_log_json(corpus, swtpm):
    import subprocess
    import sys

    log = corpus / "logs" / "keylime" / "binary_bios_measurements"
    out = subprocess.run([sys.executable, "-m", "pcrtool", "--json=short", "tpm", "replay-log", str(log),
                          "--tcti", swtpm.tcti], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["startupLocality"] == 3 and data["mismatches"] == []
    assert {u["pcr"] for u in data["unreproducible"]} == {0}
    assert "PCR 0 (sha256) cannot be reproduced: StartupLocality 3" in out.stderr
    pure = replay(parse_event_log(log.read_bytes()))
    assert data["pcrs"]["sha256"]["7"] == pure.pcrs.get(pure.banks[1], 7).hex()


def test_emulate_boot_reproduces_pcr0_of_a_locality_3_log(corpus, rig):
    from pcrtool.tpm.replay import emulate_boot

    sw, tpm = rig
    log = _load(corpus, "keylime/binary_bios_measurements")
    report = emulate_boot(sw, tpm, log)
    pure = replay(log)
    assert pure.locality == 3 and report.unreproducible == {} and report.mismatches() == []
    assert report.actual.to_json() == pure.pcrs.to_json()


def _corpus_helpers():
    """The event-log tests' reader for the corpus ground truth (tests/eventlog/helpers_corpus.py)."""
    import importlib.util
    import sys

    name = "_pcrtool_helpers_corpus"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "tests" / "eventlog" / "helpers_corpus.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _ground_truth_rows():
    try:
        return [(r.log, r.pcr_file, r.must_mismatch_pcr0) for r in _corpus_helpers().expected_rows()]
    except (OSError, AttributeError):
        return []


@pytest.mark.parametrize("log_name, pcr_file, tampered", _ground_truth_rows())
def test_emulated_boot_reproduces_the_pcrs_the_real_machine_quoted(corpus, rig, log_name, pcr_file,
                                                                  tampered):
    """Independent oracle: PCR values a real TPM quoted (or the source project asserts) for the
    machine that wrote the log. After emulate_boot the swtpm holds exactly those, PCR 0 included
    (StartupLocality 3 logs start from locality 3); tampered quotes differ in PCR 0 only."""
    from pcrtool.tpm.replay import emulate_boot

    sw, tpm = rig
    log = _load(corpus, log_name)
    truth = _corpus_helpers().read_expected_pcrs(corpus / "logs" / pcr_file)
    report = emulate_boot(sw, tpm, log)
    compared = differing = 0
    for v in truth:
        got = report.actual.get(v.alg, v.pcr)
        if got is None or (v.alg, v.pcr) in report.unreproducible:
            continue  # a PCR the log never extends (e.g. IMA's PCR 10), or one with digest gaps
        compared += 1
        if got != v.value:
            differing += 1
            assert tampered and v.pcr == 0, f"PCR {v.pcr} {v.alg.bank_name} differs from the quote"
    assert compared >= 1 or report.extends == 0  # specid-vendordata.bin measures nothing
    assert differing == (1 if tampered else 0)
