"""`pcrtool eventlog verify --tcti` against a real swtpm that was fed a real log's digests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pcrtool.eventlog import parse_event_log, replay

PCRTOOL = str(Path(sys.executable).with_name("pcrtool"))
CORPUS = (Path(__file__).resolve().parents[1] / ".." / "shared" / "eventlogs-corpus").resolve()


def _verify(log: Path, tcti: str):
    env = dict(os.environ, PCRTOOL_TCTI=tcti)
    return subprocess.run([PCRTOOL, "eventlog", "verify", str(log), "--json=short"],
                          capture_output=True, text=True, env=env, timeout=120)


def test_verify_tcti_match_then_mismatch(swtpm, corpus):
    from pcrtool.tpm import open_tpm

    log_path = corpus / "logs" / "go-tpm-tools/rhel8-uefi.bin"   # sha1+sha256+sha384, locality 0
    log = parse_event_log(log_path.read_bytes())
    assert replay(log).locality is None
    with open_tpm(swtpm.tcti) as tpm:
        for ev in log.events:
            if ev.is_extended:
                tpm.extend(ev.pcr, dict(ev.digests))
    p = _verify(log_path, swtpm.tcti)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    statuses = {(r["bank"], r["pcr"]): r["status"] for r in doc["pcrs"]}
    assert statuses[("sha256", 4)] == "match" and statuses[("sha384", 9)] == "match"
    assert statuses[("sha256", 10)] == "unused"
    assert "sha512" not in {r["bank"] for r in doc["pcrs"]}

    with open_tpm(swtpm.tcti) as tpm:   # something the log does not describe
        tpm.extend(4, {alg: alg.digest(b"rogue") for alg in log.banks})
    p = _verify(log_path, swtpm.tcti)
    assert p.returncode == 3
    doc = json.loads(p.stdout)
    assert doc["mismatchingPcrs"] == [4]
    assert "replayed PCR(s) 4 differ" in p.stderr
