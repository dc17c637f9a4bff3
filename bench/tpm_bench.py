"""TPM-layer benchmarks on swtpm, side by side with tpm2-tools where it does the same job.

- swtpm harness: start + first answer + stop (pcrtool.swtpm.Swtpm)
- read every PCR of 4 banks (96 values): pcrtool (one ESAPI context, 12 TPM2_PCR_Read) vs
  `tpm2_pcrread sha1:all+sha256:all+sha384:all+sha512:all` (one process)
- boot emulation of a ~120-event log: pcrtool replay_log_into_tpm vs `tpm2_pcrextend`, one
  process per event (how a shell script would do it)

Run: .venv/bin/python bench/tpm_bench.py [--log PATH] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from benchlib import best_of  # bench/ is sys.path[0] when a benchmark runs

DEFAULT_LOG = Path(__file__).resolve().parents[1] / ".." / "shared" / "eventlogs-corpus" / "logs" / \
    "python3-uefi-eventlog" / "intel_svr.bin"
SELECTION = "sha1:all+sha256:all+sha384:all+sha512:all"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", type=Path, default=DEFAULT_LOG.resolve())
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("TSS2_LOG", "all+none")

    from pcrtool.eventlog import parse_event_log
    from pcrtool.swtpm import Swtpm
    from pcrtool.tpm import open_tpm
    from pcrtool.tpm.replay import replay_log_into_tpm
    from pcrtool.tools import find_tool

    def start_stop():
        with Swtpm.start():
            pass

    print(f"swtpm start+stop            {best_of(args.rounds, start_stop) * 1000:8.1f} ms")
    log = parse_event_log(args.log.read_bytes())
    events = [e for e in log.events if e.event_type != 3 and 0 <= e.pcr < 24]  # not EV_NO_ACTION
    with Swtpm.start() as sw, open_tpm(sw.tcti) as tpm:
        env = {**os.environ, "TPM2TOOLS_TCTI": sw.tcti}
        ours = best_of(args.rounds, lambda: tpm.read_pcrs(SELECTION))
        print(f"read 96 PCRs   pcrtool      {ours * 1000:8.1f} ms")
        if find_tool("tpm2_pcrread"):
            theirs = best_of(args.rounds, lambda: subprocess.run(
                ["tpm2_pcrread", SELECTION], env=env, check=True, capture_output=True))
            print(f"               tpm2_pcrread {theirs * 1000:8.1f} ms   ratio {theirs / ours:5.1f}x")

        def replay_ours():
            sw.reboot()
            replay_log_into_tpm(tpm, log)
        ours = best_of(args.rounds, replay_ours)
        print(f"replay {len(events)} events pcrtool {ours * 1000:8.1f} ms")
        if find_tool("tpm2_pcrextend"):
            def replay_tools():
                sw.reboot()
                for e in events:
                    spec = ",".join(f"{a.bank_name}={d.hex()}" for a, d in e.digests.items())
                    subprocess.run(["tpm2_pcrextend", f"{e.pcr}:{spec}"], env=env, check=True,
                                   capture_output=True)
            theirs = best_of(max(1, args.rounds // 2), replay_tools)
            print(f"    (one process per event) tpm2_pcrextend {theirs * 1000:8.1f} ms   ratio {theirs / ours:5.1f}x")


if __name__ == "__main__":
    main()
