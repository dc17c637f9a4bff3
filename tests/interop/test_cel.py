"""`pcrtool eventlog cel` against `systemd-pcrlock cel` (newest systemd, sid chroot): equal JSON
(numbering from 1, digest order, event-type names, userspace records) for the OVMF captures in
eventlogs/, a synthetic log with every event type and digests in both orders, and a userspace log
with every event type systemd knows plus ones it does not."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from helpers_interop import run_pcrtool

ROOT = Path(__file__).resolve().parents[2]
from tests.eventlog.helpers_build import agile_log, event2  # noqa: E402

from pcrtool.model import HashAlg  # noqa: E402
from pcrtool.tcg.constants import EventType  # noqa: E402

CAPTURES = sorted(p.parent.name for p in (ROOT / "eventlogs").glob("*/eventlog.bin"))
ALGS = tuple((a.value, a.digest_size) for a in (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512))
USERSPACE_TYPES = ("phase", "filesystem", "volume-key", "machine-id", "product-id", "keyslot", "nvpcr-init",
                   "nvpcr-separator", "dm-verity", "imds-userdata", "os-separator", "login", "no-such-type")


def _synthetic_log() -> bytes:
    types = [t.value for t in EventType if t.value != EventType.EV_NO_ACTION] + [0x14, 0x80000011, 0xFFFFFFF0]
    events = []
    for i, t in enumerate(types):
        data = f"event {i}".encode()
        digests = {a: HashAlg(a).digest(data) for a, _ in ALGS}
        if i % 3 == 1:  # digests listed in another order than the header's (seen on Hyper-V)
            digests = dict(reversed(list(digests.items())))
        events.append(event2(i % 24, t, data, digests, algs=ALGS))
    events.append(event2(0, 3, b"StartupLocality\x00\x03", {a: bytes(s) for a, s in ALGS}, algs=ALGS))
    events.append(event2(30, 5, b"PCR out of range", None, algs=ALGS))
    return agile_log(*events, algs=ALGS)


def _userspace_log() -> bytes:
    out = b""
    for i, t in enumerate(USERSPACE_TYPES):
        s = f"{t}:{i}"
        rec = {"pcr": 11 if i % 2 else 15,
               "digests": [{"hashAlg": "sha256", "digest": hashlib.sha256(s.encode()).hexdigest()},
                           {"hashAlg": "sha1", "digest": hashlib.sha1(s.encode()).hexdigest()}],
               "content_type": "systemd", "content": {"string": s, "eventType": t, "bootId": "0" * 32, "timestamp": i}}
        out += b"\x1e" + json.dumps(rec).encode() + b"\n"
    for rec in ({"pcr": 9, "digests": [{"hashAlg": "sha256", "digest": "00" * 32}], "content_type": "other",
                 "content": {"x": 1}},
                {"pcr": 9, "digests": [{"hashAlg": "sha256", "digest": "11" * 32}], "content": {"eventType": "phase"}},
                {"nv_index": 0x01D10200, "digests": [{"hashAlg": "sha256", "digest": "22" * 32}],
                 "content_type": "systemd", "content": {"string": "nvpcr-init:x", "eventType": "nvpcr-init"}}):
        out += b"\x1e" + json.dumps(rec).encode() + b"\n"
    return out


def _both(sid, tmp_path, log: Path, userspace: Path | None):
    theirs = sid.run("systemd-pcrlock", "cel", env={"SYSTEMD_MEASURE_LOG_FIRMWARE": log,
                                                     "SYSTEMD_MEASURE_LOG_USERSPACE": userspace or "/nonexistent"})
    out = tmp_path / "cel.json"
    out.unlink(missing_ok=True)
    run_pcrtool("eventlog", "cel", log, *(["--userspace-log", userspace] if userspace else []), "-o", out, check=True)
    return json.loads(out.read_text()), json.loads(theirs.stdout)


@pytest.mark.parametrize("capture", CAPTURES)
def test_cel_of_ovmf_captures_equals_systemd_pcrlock(sid_systemd, tmp_path, capture):
    ours, theirs = _both(sid_systemd, tmp_path, ROOT / "eventlogs" / capture / "eventlog.bin", None)
    assert ours == theirs, f"systemd {sid_systemd.version}"
    assert [r["recnum"] for r in ours] == list(range(1, len(ours) + 1))


def test_cel_of_every_event_type_and_userspace_record_equals_systemd_pcrlock(sid_systemd, tmp_path):
    (tmp_path / "log.bin").write_bytes(_synthetic_log())
    (tmp_path / "us.log").write_bytes(_userspace_log())
    ours, theirs = _both(sid_systemd, tmp_path, tmp_path / "log.bin", tmp_path / "us.log")
    assert len(ours) == len(theirs) == len(EventType.__members__) - 1 + 3 + len(USERSPACE_TYPES) + 3
    for a, b in zip(ours, theirs):
        assert a == b
    # the deny side: unknown userspace types carry no content, unnamed firmware types are numbers
    assert list(ours[-4]) == ["pcr", "recnum", "digests"]
    assert list(ours[-1])[0] == "nv_index"  # an NV-index record (systemd's NvPCRs)
    assert {"2", str(0xFFFFFFF0)} <= {r["content"]["event_type"] for r in ours if r.get("content_type") == "pcclient_std"}


def test_cel_of_a_truncated_log_is_refused_by_both(sid_systemd, tmp_path):
    """Both refuse a log cut inside a record (systemd with a non-zero exit, pcrtool with exit 1)."""
    (tmp_path / "bad.bin").write_bytes(_synthetic_log()[:300])
    theirs = sid_systemd.run("systemd-pcrlock", "cel", check=False,
                             env={"SYSTEMD_MEASURE_LOG_FIRMWARE": tmp_path / "bad.bin",
                                  "SYSTEMD_MEASURE_LOG_USERSPACE": "/nonexistent"})
    ours = run_pcrtool("eventlog", "cel", tmp_path / "bad.bin")
    assert theirs.returncode != 0 and ours.returncode == 1 and b"Traceback" not in ours.stderr
