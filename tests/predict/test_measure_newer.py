"""Differential test against the newest systemd-measure (the sid chroot, systemd >= 258: it knows
.ucode .uname .sbat .profile .dtbauto .hwids). Debian 12's systemd-measure (252) is covered by
test_uki.py.

systemd-measure 257 measured the --dtbauto file as .hwids and vice versa (fixed by systemd PR
#35765); the chroot's systemd is newer, so the options are passed as they are.
"""

from __future__ import annotations

import json
import random

from pcrtool.model import HashAlg
from pcrtool.predict.uki import predict_pcr11

ALL = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
NEW_SECTIONS = (".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat", ".pcrpkey",
                ".profile", ".dtbauto", ".hwids")


def test_differential_against_the_newest_systemd_measure(sid_systemd, tmp_path):
    rng = random.Random(257)
    for round_ in range(10):
        chosen = [".linux"] + [n for n in NEW_SECTIONS if rng.random() < 0.5]
        sections = {n: rng.randbytes(rng.choice([1, 7, 3000])) for n in chosen}
        phases = rng.sample(["", "enter-initrd", "enter-initrd:leave-initrd", "a:b"], k=2)
        d = tmp_path / str(round_)
        d.mkdir()
        args = ["systemd-measure", "calculate", "--json=short"]
        for name, content in sections.items():
            (d / name[1:]).write_bytes(content)
            args.append(f"--{name[1:]}={d / name[1:]}")
        args += [f"--bank={b.bank_name}" for b in ALL] + [f"--phase={p or ':'}" for p in phases]
        proc = sid_systemd.run(*args)
        assert predict_pcr11(sections, ALL, phases).to_measure_json() == json.loads(proc.stdout), \
            f"systemd {sid_systemd.version}, round {round_}: {sorted(sections)}"


def test_dtbauto_and_hwids_are_not_swapped_any_more(sid_systemd, tmp_path):
    """The deny side: the swap of systemd 257 would give another PCR 11 than the stub's."""
    sections = {".linux": b"k", ".dtbauto": b"dtb-blob", ".hwids": b"hwid-blob"}
    for name, content in sections.items():
        (tmp_path / name[1:]).write_bytes(content)
    proc = sid_systemd.run("systemd-measure", "calculate", "--json=short", "--bank=sha256", "--phase=:",
                           *[f"--{n[1:]}={tmp_path / n[1:]}" for n in sections])
    ours = predict_pcr11(sections, (HashAlg.SHA256,), [""]).to_measure_json()
    swapped = predict_pcr11({".linux": b"k", ".dtbauto": b"hwid-blob", ".hwids": b"dtb-blob"},
                            (HashAlg.SHA256,), [""]).to_measure_json()
    assert json.loads(proc.stdout) == ours != swapped
