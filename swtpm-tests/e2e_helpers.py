"""Helpers for the real-firmware end-to-end tests (OVMF + swtpm + qemu TCG).

The build/boot machinery lives in ``eventlogs/capture.py`` (also a CLI); this module loads it by
path and adds what the tests share: where the committed captures are, tool checks, and the build
directory policy (CI: everything fresh under the test's temp dir; locally the downloaded .deb
files may be cached in ``_work/cache``).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTLOGS = ROOT / "eventlogs"
CAPTURES = {
    "sb-off": EVENTLOGS / "ovmf-sb-off",
    "sb-own": EVENTLOGS / "ovmf-sb-own",
    "cmdline": EVENTLOGS / "ovmf-cmdline",
    "loadopts": EVENTLOGS / "ovmf-loadopts",
}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # tests.support.in_ci()
LOCAL_CACHE = ROOT / "_work" / "cache"
PCRTOOL = str(Path(sys.executable).parent / "pcrtool")


def load_capture():
    """The ``eventlogs/capture.py`` module."""
    name = "pcrtool_e2e_capture"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EVENTLOGS / "capture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def deb_cache() -> Path | None:
    """Local reruns reuse downloaded .deb files; CI downloads everything fresh."""
    if IN_CI or not LOCAL_CACHE.parent.is_dir():
        return None
    return LOCAL_CACHE


def _need(ok: bool, msg: str) -> None:
    import pytest

    if ok:
        return
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def need_e2e_tools() -> None:
    """Every external part a boot needs (fails under CI=true when missing)."""
    from tests.support import need_tool

    for tool in ("qemu-system-x86_64", "swtpm", "objcopy", "mkfs.vfat", "mcopy", "mmd",
                 "apt-get", "apt-cache", "dpkg-deb", "openssl"):
        need_tool(tool)
    cap = load_capture()
    for path in (cap.STUB, cap.OVMF_CODE, cap.OVMF_CODE_SB, cap.OVMF_VARS):
        _need(path.exists(), f"{path} missing (apt-get install systemd-boot-efi ovmf)")


def guest_pcrs(capture):
    """The PCRs the guest read (a parsed serial console of ``capture.parse_serial``) as PcrValues."""
    from pcrtool.model import HashAlg, PcrValues

    out = PcrValues()
    for bank, values in capture.pcrs.items():
        for i, v in values.items():
            out.set(HashAlg.from_name(bank), i, v)
    return out


def unlocker(sw, d: Path, enrollment: Path, approvals: Path, secret: Path):
    """``unlock(tag)``: `pcrtool tpm unlock` of ``enrollment`` with ``approvals`` on ``sw`` into
    ``d/unlocked-TAG.bin``; returns the exit code, and on success the output is the enrolled secret."""
    def unlock(tag: str) -> int:
        out = d / f"unlocked-{tag}.bin"
        proc = pcrtool("tpm", "unlock", "--enrollment", enrollment, "--approvals", approvals,
                       "--output", out, "--tcti", sw.tcti)
        if proc.returncode == 0:
            assert out.read_bytes() == secret.read_bytes()
        return proc.returncode

    return unlock


def pcrtool(*args, check: bool = False, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run the installed pcrtool CLI."""
    proc = subprocess.run([PCRTOOL, *map(str, args)], capture_output=True, input=input, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"pcrtool {' '.join(map(str, args))} exited {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace')[-1500:]}")
    return proc
