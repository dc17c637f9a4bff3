"""External-program adapter: the only place that runs other programs.

Commands are echoed as ``+ cmd`` on stderr in verbose mode (``PCRTOOL_VERBOSE=1``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from typing import Sequence

from pcrtool.errors import ToolError

# Programs that live outside PATH on Debian.
_KNOWN_LOCATIONS = {
    "systemd-measure": ["/usr/lib/systemd/systemd-measure"],
    "systemd-sbsign": ["/usr/lib/systemd/systemd-sbsign"],
    "systemd-pcrlock": ["/usr/lib/systemd/systemd-pcrlock"],
}

_PACKAGES = {
    "swtpm": "swtpm", "swtpm_ioctl": "swtpm-tools", "tpm2_pcrread": "tpm2-tools",
    "tpm2_eventlog": "tpm2-tools", "sbsign": "sbsigntool", "sbverify": "sbsigntool",
    "osslsigncode": "osslsigncode", "veritysetup": "cryptsetup-bin", "softhsm2-util": "softhsm2",
    "pkcs11-tool": "opensc", "openssl": "openssl", "pesign": "pesign",
    "systemd-measure": "systemd", "qemu-system-x86_64": "qemu-system-x86",
}


def find_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    for candidate in _KNOWN_LOCATIONS.get(name, []):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        pkg = _PACKAGES.get(name, name)
        raise ToolError(f"{name} is not installed", hint=f"apt-get install {pkg}")
    return path


def run(argv: Sequence[str], *, input: bytes | None = None, check: bool = True,
        env: dict[str, str] | None = None, timeout: float | None = None,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run a program, capturing output; a failure becomes a one-line ToolError."""
    argv = [str(a) for a in argv]
    exe = require_tool(argv[0]) if os.sep not in argv[0] else argv[0]
    if os.environ.get("PCRTOOL_VERBOSE"):
        print("+ " + shlex.join(argv), file=sys.stderr)
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run([exe, *argv[1:]], input=input, capture_output=True, env=full_env,
                              timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{argv[0]} timed out after {timeout} s") from None
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        last = err[-1] if err else f"exit code {proc.returncode}"
        raise ToolError(f"{argv[0]} failed: {last}", hint="run with PCRTOOL_VERBOSE=1 to see the command")
    return proc
