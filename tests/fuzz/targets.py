"""Fuzz targets: every parser of untrusted input, fed arbitrary bytes.

A target returns normally or raises one of pcrtool's own errors (``PcrtoolError``: a one-line
message the CLI turns into an exit code); any other exception is a finding. Time and memory are
bounded by the runner (libFuzzer's ``-timeout`` and ``-rss_limit_mb``, see ``fuzz.py``).

Each target is a plain function so that the same code runs under atheris (``fuzz.py``), in the
pytest smoke (``test_fuzz_smoke.py``) and for the saved findings (``crashes/<target>/``).
"""

from __future__ import annotations

import datetime as dt
import json

from pcrtool.errors import PcrtoolError


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def eventlog(data: bytes) -> None:
    """Binary event log (either format): parse, replay, decode every payload, export, verify;
    then the streaming path (record offsets, fast JSON renderer, buffer replay) on the same
    bytes, which must agree with the slow path on the number of records."""
    from pcrtool.eventlog import parse_event_log, replay
    from pcrtool.eventlog.decode import decode_event
    from pcrtool.eventlog.export import iter_log_json
    from pcrtool.eventlog.fastjson import RecordRenderer
    from pcrtool.eventlog.parse import EventLogStream
    from pcrtool.eventlog.replay import replay_records
    from pcrtool.eventlog.secureboot import secure_boot_report
    from pcrtool.eventlog.families import verify_payload_digests

    try:
        log = parse_event_log(data, source="fuzz")
    except PcrtoolError:
        log = None
    if log is not None:
        replay(log)
        for event in log.events:
            try:
                decode_event(event, log)
            except PcrtoolError:
                pass
        for _ in iter_log_json(log):
            pass
        verify_payload_digests(log)
        try:
            secure_boot_report(log)
        except PcrtoolError:
            pass
    try:
        stream = EventLogStream(data, source="fuzz")
        starts = stream.record_starts()
    except PcrtoolError:
        assert log is None, "the streaming parser refused a log the full parser accepted"
        return
    assert log is not None, "the full parser refused a log the streaming parser accepted"
    assert len(starts) - 1 == len(log.events), (len(starts) - 1, len(log.events))
    RecordRenderer(data, stream.log).render(starts, 0, len(starts) - 1)
    replay_records(data, stream.log, starts)


def userspace_log(data: bytes) -> None:
    """systemd's JSON-SEQ userspace measurement log (tpm2-measure.log), the CEL-JSON records."""
    from pcrtool.eventlog.userspace import parse_userspace_log
    parse_userspace_log(data, source="fuzz")


def pe_image(data: bytes) -> None:
    """PE/COFF images: headers, sections, Authenticode digest, embedded signature."""
    from pcrtool.pe import PeImage, authenticode_digest, signing_digest
    from pcrtool.pe.sign import prepare
    from pcrtool.pe.verify import verify_image
    img = PeImage.parse(data)
    img.warnings  # noqa: B018 - computed on access
    for s in img.sections[:4]:
        s.loaded  # noqa: B018
    authenticode_digest(data)
    signing_digest(data)
    try:
        verify_image(data)
    except PcrtoolError:
        pass
    prepare(data, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))


def verity_superblock(data: bytes) -> None:
    """dm-verity superblock (the first 512 bytes of a hash device)."""
    from pcrtool.verity.superblock import parse_superblock
    parse_superblock(data, source="fuzz")


def verity_sig(data: bytes) -> None:
    """systemd's verity-sig partition JSON, and the root-hash text files next to it."""
    from pcrtool.verity.sig_partition import parse_root_hash, parse_sig_partition
    try:
        parse_sig_partition(data, source="fuzz")
    finally:
        parse_root_hash(data[:200], source="fuzz")


def pkcs7(data: bytes) -> None:
    """Detached PKCS#7 signatures (.p7s, roothash signatures) and Authenticode SignedData."""
    from pcrtool.sign.authenticode_pkcs7 import parse_pkcs7
    from pcrtool.sign.pkcs7 import parse_detached
    try:
        parse_detached(data, source="fuzz")
    finally:
        parse_pkcs7(data)


def pcrsig(data: bytes) -> None:
    """systemd's .pcrsig JSON (signed PCR policy approvals)."""
    from pcrtool.policy.approvals import Approvals
    Approvals.parse(data, source="fuzz")


def predictions(data: bytes) -> None:
    """pcrtool's predictions file, read by predict and by the policy side (releases)."""
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.predict.predictions import load_predictions
    try:
        load_predictions(data, source="fuzz")
    finally:
        parse_releases(_text(data), source="fuzz")


def manifest(data: bytes) -> None:
    """Release manifests (TOML or JSON) and allowlists."""
    from pcrtool.predict.manifest import parse_allowlist, parse_manifest
    try:
        parse_manifest(data, source="fuzz")
    finally:
        parse_allowlist(data, source="fuzz")


def enrollment(data: bytes) -> None:
    """TPM enrollment files (signed and allowlist modes)."""
    from pcrtool.tpm.enrollment_file import Enrollment
    from pcrtool.tpm.policy_allowlist import AllowlistEnrollment
    try:
        Enrollment.parse(_text(data), source="fuzz")
    finally:
        AllowlistEnrollment.parse(_text(data), source="fuzz")


def sign_request(data: bytes) -> None:
    """Offline signing requests and responses."""
    from pcrtool.sign.offline import parse_request, parse_response
    request = parse_request(_text(data), source="fuzz")
    parse_response(_text(data), request, source="fuzz")


def efi_structs(data: bytes) -> None:
    """EFI structures inside event payloads and variable files: EFI_SIGNATURE_LISTs (also as a
    signature database file), UEFI_VARIABLE_DATA, EFI_LOAD_OPTION, device paths. The first byte
    picks the parser so one campaign covers all of them."""
    from pcrtool.eventlog.decode.variables import parse_load_option, parse_signature_lists, parse_variable_data
    from pcrtool.pe.sigdb import load_sigdb
    from pcrtool.tcg.devicepath import device_path_text_and_nodes, parse_device_path
    if not data:
        return
    which, body = data[0] % 5, data[1:]
    parser = (parse_signature_lists, parse_variable_data, parse_load_option, parse_device_path,
              load_sigdb)[which]
    parser(body)
    if which == 3:
        device_path_text_and_nodes(body)


def pcrlock(data: bytes) -> None:
    """systemd-pcrlock's files: a .pcrlock record file and a pcrlock.json policy."""
    from pcrtool.pcrlock import PcrlockFile, PcrlockPolicy
    try:
        PcrlockFile.parse(data, source="fuzz")
    finally:
        PcrlockPolicy.parse(data, source="fuzz")


TARGETS = {f.__name__: f for f in (eventlog, userspace_log, pe_image, verity_superblock, verity_sig, pkcs7,
                                   pcrsig, predictions, manifest, enrollment, sign_request, efi_structs, pcrlock)}
ORDER = list(TARGETS)


def every(data: bytes) -> None:
    """All targets in one campaign (the CI smoke): the first byte picks the target."""
    if data:
        TARGETS[ORDER[data[0] % len(ORDER)]](data[1:])


TARGETS["every"] = every

# Largest input each campaign generates (event logs and PE images need room; JSON does not).
MAX_LEN = {"eventlog": 1 << 16, "pe_image": 1 << 16, "every": 1 << 16}


def run_one(name: str, data: bytes) -> None:
    """Call a target the way every runner does: pcrtool's own errors are expected outcomes."""
    try:
        TARGETS[name](data)
    except PcrtoolError as e:
        assert e.message and "\n" not in str(e.message), f"error message is not one line: {e.message!r}"


__all__ = ["MAX_LEN", "TARGETS", "json", "run_one"]
