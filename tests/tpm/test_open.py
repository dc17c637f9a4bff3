"""Opening a TPM: TCTI resolution and the TpmUnavailable paths (exit 5) — no TPM needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pcrtool.errors import TpmUnavailable
from pcrtool.tpm import DEFAULT_TCTI, resolve_tcti


def test_tcti_resolution(monkeypatch):
    monkeypatch.delenv("PCRTOOL_TCTI", raising=False)
    assert resolve_tcti() == DEFAULT_TCTI == "device:/dev/tpmrm0"
    monkeypatch.setenv("PCRTOOL_TCTI", "swtpm:path=/x")
    assert resolve_tcti() == "swtpm:path=/x"
    assert resolve_tcti("mssim:port=2321") == "mssim:port=2321"
    assert resolve_tcti("/dev/tpm0") == "device:/dev/tpm0"


def test_no_tpm_behind_the_tcti_is_tpm_unavailable(tmp_path):
    pytest.importorskip("tpm2_pytss")
    from pcrtool.tpm import open_tpm

    with pytest.raises(TpmUnavailable) as e:
        open_tpm(f"swtpm:path={tmp_path}/missing.sock")
    assert e.value.exit_code == 5 and "--tcti" in e.value.hint


def test_missing_tpm2_pytss_names_the_install_commands():
    code = ("import sys; sys.modules['tpm2_pytss'] = None\n"
            "from pcrtool.errors import TpmUnavailable\n"
            "from pcrtool.tpm import open_tpm\n"
            "try:\n    open_tpm('swtpm:path=/nonexistent')\n"
            "except TpmUnavailable as e:\n    print(e.exit_code, e.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "5 pip install 'pcrtool[tpm]' (tpm2-pytss) and apt-get install libtss2-dev"


def test_cli_exit_code_5_without_a_tpm(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pcrtool", "tpm", "pcrread", "sha256:0",
                          "--tcti", f"swtpm:path={tmp_path}/missing.sock"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 5
    assert out.stderr.startswith("pcrtool: error: cannot open TPM") and "Traceback" not in out.stderr
    assert out.stdout == ""


def test_importing_the_package_does_not_import_tpm2_pytss():
    code = "import sys, pcrtool.tpm, pcrtool.tpm.rc, pcrtool.tpm.marshal; print('tpm2_pytss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
