"""`pcrtool tpm boot-release`: a predicted release booted into swtpm holds its predicted PCRs;
a TPM not at reset is refused (issue 18)."""

import json
import subprocess
import sys

PCRTOOL = [sys.executable, "-m", "pcrtool"]


def run(*args):
    return subprocess.run([*PCRTOOL, *map(str, args)], capture_output=True, text=True, timeout=120)


def predictions(d):
    (d / "os-release").write_text("ID=fooos\n")
    for v in (1, 2):
        (d / f"vmlinuz-{v}").write_text(f"kernel {v}\n")
        (d / f"m{v}.toml").write_text(f'name = "fooos"\nversion = "{v}"\nsvn = {v}\npcrs = [7, 11]\n'
                                      f'[uki.sections]\nlinux = "vmlinuz-{v}"\nosrel = "os-release"\n'
                                      '[secureboot]\nSecureBoot = 1\n')
    p = run("predict", "release", d / "m1.toml", d / "m2.toml", "-o", d / "p.json")
    assert p.returncode == 0, p.stderr
    return {r["version"]: r["phases"][0]["values"]["sha256"] for r in json.loads((d / "p.json").read_text())["releases"]}


def test_boot_release_reaches_the_predicted_pcrs_and_refuses_a_dirty_tpm(tmp_path, swtpm):
    want = predictions(tmp_path)
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
