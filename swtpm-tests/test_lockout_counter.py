"""The lockout-counter check every swtpm test module gets (conftest ``_lockout_counter_unchanged``)
reads what tpm2-tools reads, and does see a dictionary-attack failure (the negative control)."""

import os
import re
import subprocess

from tests.support import need_tool  # noqa: E402
from tpm_proxy import excuse_lockout, lockout_counter  # noqa: E402


def _getcap_lockout(sw) -> int:
    """TPM_PT_LOCKOUT_COUNTER as tpm2_getcap prints it (the independent reading)."""
    need_tool("tpm2_getcap")
    out = subprocess.run(["tpm2_getcap", "properties-variable"], env={**os.environ, "TPM2TOOLS_TCTI": sw.tcti},
                         capture_output=True, text=True, check=True, timeout=60).stdout
    m = re.search(r"TPM2_PT_LOCKOUT_COUNTER:\s*(?:raw:\s*)?(0x[0-9a-fA-F]+|\d+)", out)
    assert m, out
    return int(m.group(1), 0)


def test_a_wrong_password_moves_the_counter_and_the_check_sees_it(swtpm):
    need_tool("tpm2_nvdefine")
    env = {**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti}
    assert lockout_counter(swtpm.socket_path) == _getcap_lockout(swtpm) == 0
    # an ordinary index with a password and without NO_DA: a wrong password is a DA failure
    subprocess.run(["tpm2_nvdefine", "0x01805F00", "-C", "o", "-s", "8", "-p", "right",
                    "-a", "ownerread|ownerwrite|authread|authwrite"], env=env, check=True, capture_output=True,
                   timeout=60)
    p = subprocess.run(["tpm2_nvread", "0x01805F00", "-C", "0x01805F00", "-P", "wrong", "-s", "8"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "0x98e" in p.stderr.lower()   # TPM_RC_AUTH_FAIL (session 1)
    excuse_lockout(swtpm)  # deliberate: keep the module check quiet for this TPM
    assert lockout_counter(swtpm.socket_path) == _getcap_lockout(swtpm) == 1
