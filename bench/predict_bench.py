"""PCR 11 prediction speed: pcrtool vs systemd-measure calculate (same inputs, all four banks).

Run: .venv/bin/python bench/predict_bench.py  (not collected by pytest)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from pcrtool.model import HashAlg
from pcrtool.predict.uki import predict_pcr11

from benchlib import best_of  # bench/ is sys.path[0] when a benchmark runs

MEASURE = "/usr/lib/systemd/systemd-measure"
BANKS = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        sections = {".linux": os.urandom(12 << 20), ".initrd": os.urandom(40 << 20), ".osrel": b"ID=bench\n",
                    ".cmdline": b"quiet rw"}
        args = [MEASURE, "calculate"]
        for name, content in sections.items():
            (d / name[1:]).write_bytes(content)
            args.append(f"--{name[1:]}={d / name[1:]}")

        def ours():
            predict_pcr11({k: (d / k[1:]).read_bytes() for k in sections}, BANKS)

        def theirs():
            subprocess.run(args, check=True, capture_output=True)

        a, b = best_of(3, ours), best_of(3, theirs)
        size = sum(len(v) for v in sections.values()) >> 20
        print(f"PCR 11, {size} MiB of sections, 4 banks, 4 phases: pcrtool {a:.3f}s, systemd-measure {b:.3f}s, "
              f"ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
