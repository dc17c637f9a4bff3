"""The clevis pin on Debian's clevis + clevis-luks, a LUKS2 image file and swtpm: the approved
release unlocks, a revoked one does not after `advance-floor` (issue 18). `clevis luks pass`
needs no device-mapper; `cryptsetup open --test-passphrase` checks the keyslot."""

import json

import pytest

from tests.support import need_tool
from tests.support.releases import two_uki_releases

from clevis_setup import pcrtool, prepare_host, run  # noqa: E402



@pytest.mark.slow
def test_clevis_luks_bind_and_pass_allow_and_deny_after_advance_floor(tmp_path, swtpm):
    for tool in ("clevis", "clevis-luks-bind", "clevis-luks-pass", "cryptsetup"):
        need_tool(tool)
    d, t = tmp_path, ("--tcti", swtpm.tcti)
    two_uki_releases(d)
    disk = d / "disk.img"
    env, password = prepare_host(d, d / "a.pcrsig", disk)

    def boot(version):
        swtpm.reboot()
        pcrtool("tpm", "boot-release", d / "p.json", f"fooos-{version}", *t)

    def luks_pass():
        return run("clevis", "luks", "pass", "-d", disk, "-s", "1", env=env, check=False)

    boot(2)
    cfg = {"public_key": (d / "pub.pem").read_text(), "floor": 1, "window": 4, "pcrs": [11],
           "approvals": str(d / "a.pcrsig"), "tcti": swtpm.tcti, "enrollment": str(d / "e.json"), "product": "fooos"}
    run("clevis", "luks", "bind", "-y", "-d", disk, "-k", password, "-s", "1", "pcrtool", json.dumps(cfg), env=env)
    assert (d / "e.json").stat().st_mode & 0o777 == 0o600
    p = luks_pass()
    assert p.returncode == 0 and len(p.stdout) > 16, p.stderr
    key = d / "slot1.key"
    key.write_bytes(p.stdout)
    run("cryptsetup", "open", "--test-passphrase", "-S", "1", "--key-file", key, disk)  # the slot opens
    boot(1)  # svn 1 is approved and at the floor: unlocks
    assert luks_pass().stdout == p.stdout
    boot(2)
    pcrtool("tpm", "advance-floor", "-e", d / "e.json", "--to", "2", "-a", d / "a.pcrsig", *t)
    boot(1)  # revoked
    denied = luks_pass()
    assert denied.returncode != 0 and denied.stdout == b""
    assert b"release svn 1 is below the device floor 2" in denied.stderr
    boot(2)
    assert luks_pass().stdout == p.stdout
    # a release nobody approved (tampered kernel) does not unlock either
    swtpm.reboot()
    pcrtool("tpm", "extend", "11", "--data", "rogue", *t)
    assert luks_pass().returncode != 0
