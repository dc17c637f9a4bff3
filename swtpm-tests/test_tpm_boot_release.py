"""`pcrtool tpm boot-release`: a predicted release booted into swtpm holds its predicted PCRs;
a TPM not at reset is refused (issue 18)."""

import json

from tests.support.cli import run_pcrtool as run
from tests.support.releases import two_uki_releases

def test_boot_release_reaches_the_predicted_pcrs_and_refuses_a_dirty_tpm(tmp_path, swtpm):
    want = two_uki_releases(tmp_path)
    assert want["1"]["11"] != want["2"]["11"] and want["1"]["7"] == want["2"]["7"]
    p = run("tpm", "boot-release", tmp_path / "p.json", "fooos-2", "--tcti", swtpm.tcti, "--json=short")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["matches"] is True and out["pcrs"] == [7, 11] and out["svn"] == 2
    # read back independently of boot-release
    got = run("tpm", "pcrread", "sha256:7,11", "--tcti", swtpm.tcti, "--json=short")
    assert got.returncode == 0, got.stderr
    assert want["2"]["7"] in got.stdout and want["2"]["11"] in got.stdout
    p = run("tpm", "boot-release", tmp_path / "p.json", "1", "--tcti", swtpm.tcti)
    assert p.returncode == 1 and "PCR 7,11 of the TPM are not at reset" in p.stderr
    swtpm.reboot()
    p = run("tpm", "boot-release", tmp_path / "p.json", "1", "--tcti", swtpm.tcti)
    assert p.returncode == 0 and "holds the predicted values" in p.stdout
    p = run("tpm", "boot-release", tmp_path / "p.json", "fooos-9", "--tcti", swtpm.tcti)
    assert p.returncode == 2 and "releases: fooos-1, fooos-2" in p.stderr
