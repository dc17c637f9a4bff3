"""PCR 7 from variable contents equals the PCR 7 replay of every corpus log with Secure Boot events.

The variable payloads (and authority payloads, separators, actions) are decoded from the log; every
digest is recomputed by pcrtool from them — no digest is copied from the log.
"""

from __future__ import annotations

import pytest

from helpers_corpus_predict import corpus_logs
from pcrtool.errors import PcrtoolError
from pcrtool.predict.events import replay_measurements
from pcrtool.predict.pe import efi_action, separator
from pcrtool.predict.secureboot import Variable, variable_measurement
from pcrtool.predict.substitute import substitute_log
from pcrtool.tcg.constants import EventType

# Logs whose firmware/shim hash something other than the UEFI_VARIABLE_DATA they log; each entry
# is asserted to still mismatch, so the list cannot silently rot.
QUIRKS = {
    # TCG 1.2 (SHA-1 format) firmware hashed only VariableData of EV_EFI_VARIABLE_DRIVER_CONFIG.
    "go-attestation/linux_tpm12.json.rawlog.bin": "variables",
    # Authority events whose logged data carries 6 bytes after the structure; the digest covers
    # all but the last byte (old shim "Shim" authority, GCE firmware "db" authority).
    "go-attestation/sb_cert_eventlog": "authority",
    "go-tpm-tools/cos-85-amd-sev.bin": "authority",
    "go-tpm-tools/cos-93-amd-sev.bin": "authority",
    "go-tpm-tools/debian-10.bin": "authority",
    "python3-uefi-eventlog/bootlog-5.0.0-rhel-20210423T133156Z_8b0347a.bin": "authority",
    "tpm2-tools/event-postcode.bin": "authority",
}

VARIABLE_TYPES = (EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, EventType.EV_EFI_VARIABLE_AUTHORITY)


def _load(corpus, name):
    from pcrtool.eventlog import parse_event_log, replay

    try:
        log = parse_event_log((corpus / "logs" / name).read_bytes())
    except PcrtoolError as e:
        pytest.skip(f"log does not parse: {e.message}")
    pcr7 = [e for e in log.events if e.pcr == 7 and e.is_extended]
    if not any(e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG for e in pcr7):
        pytest.skip("no Secure Boot variable events")
    return log, pcr7, replay(log)


def _recompute(log, pcr7):
    """PCR 7 measurements rebuilt from decoded payloads only (None when a kind is unknown)."""
    out = []
    for e in pcr7:
        if e.event_type in VARIABLE_TYPES:
            out.append(variable_measurement(Variable.from_variable_data(e.data), log.banks,
                                            event_type=e.event_type))
        elif e.event_type == EventType.EV_SEPARATOR:
            out.append(separator(7, log.banks, e.data))
        elif e.event_type == EventType.EV_EFI_ACTION:
            out.append(efi_action(7, e.data, log.banks))
        else:
            return None
    return out


def _matches(log, rep, values):
    banks = [b for b in log.banks if not rep.gapped(b, 7)]
    assert banks
    return all(values.get(b, 7) == rep.pcrs.get(b, 7) for b in banks)


@pytest.mark.parametrize("name", corpus_logs())
def test_pcr7_recomputed_from_decoded_payloads(corpus, name):
    log, pcr7, rep = _load(corpus, name)
    ms = _recompute(log, pcr7)
    if ms is None:
        pytest.skip("PCR 7 carries event kinds other than variables/separators/actions")
    ok = _matches(log, rep, replay_measurements(ms, log.banks))
    assert ok == (name not in QUIRKS), QUIRKS.get(name, "PCR 7 recomputation differs from the log replay")


@pytest.mark.parametrize("name", corpus_logs())
def test_pcr7_substituting_the_policy_variables_reproduces_the_replay(corpus, name):
    """The Secure Boot variables go through the substitution engine; everything else is the log's."""
    log, pcr7, rep = _load(corpus, name)
    variables = [Variable.from_variable_data(e.data) for e in pcr7
                 if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG]
    release = [variable_measurement(v, log.banks) for v in variables]
    result = substitute_log(log, release, log.banks)
    assert len(result.replaced) == len(variables) > 0
    ok = _matches(log, rep, result.values)
    assert ok == (QUIRKS.get(name) != "variables")
    # a changed dbx must change PCR 7 (the substitution really took effect)
    changed = [variable_measurement(Variable(v.name, v.guid, v.data + b"x"), log.banks) if v.name == variables[-1].name
               else variable_measurement(v, log.banks) for v in variables]
    assert not _matches(log, rep, substitute_log(log, changed, log.banks).values)
