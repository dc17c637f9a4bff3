"""A TPM whose owner hierarchy has a password (`tpm2_changeauth -c owner`, the natural defence
against anyone moving the counter): enrolment takes the password, unlock needs none (issue 13:
a persistent SRK created once with owner authorization; today every unlock fails instead)."""

import base64
import re
from pathlib import Path

import pytest

from tests.policy.helpers_policy import need_tool  # noqa: E402
from tpm_proxy import approved_releases, boot, pcrtool, tpm2_tools  # noqa: E402

OWNER_PASSWORD = "owner-secret-13"
SECRET = bytes(range(0x60, 0x80))


def _owner_args(d: Path) -> tuple:
    """The enrol option that takes owner authorization, as `pcrtool tpm enroll --help` names it,
    with its value (the password, or a 0600 file holding it for an option ending in -file)."""
    text = pcrtool("tpm", "enroll", "--help", check=0).stdout
    found = sorted(set(re.findall(r"--owner[-a-z]*", text)))
    assert found, "`pcrtool tpm enroll` has no option for owner authorization"
    if not found[0].endswith("-file"):
        return found[0], OWNER_PASSWORD
    (d / "owner.pw").write_text(OWNER_PASSWORD)
    (d / "owner.pw").chmod(0o600)
    return found[0], d / "owner.pw"


def _owned_device(swtpm, d: Path, secret: bytes | None = None) -> dict:
    """Releases svn 1 and 2 approved in ``d`` (tpm_proxy.approved_releases), then the owner
    hierarchy of ``swtpm`` given OWNER_PASSWORD; returns the releases."""
    need_tool("tpm2_changeauth")
    doc = approved_releases(d, svns=(1, 2), secret=secret)
    tpm2_tools(swtpm, "tpm2_changeauth", "-c", "owner", OWNER_PASSWORD)
    return doc


@pytest.mark.parametrize("mode", ["signed", "allowlist-direct"])
def test_enrol_with_owner_password_unlock_without(swtpm, tmp_path, mode):
    d = tmp_path
    doc = _owned_device(swtpm, d, SECRET)
    t = ("--tcti", swtpm.tcti)
    how = ("-k", d / "pub.pem", "--floor", 1) if mode == "signed" else ("--allowlist", d / "rel.json")
    # without the password enrolment is refused cleanly
    p = pcrtool("tpm", "enroll", *t, *how, "--secret", d / "secret.bin", "-o", d / "none.json")
    assert p.returncode != 0 and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert not (d / "none.json").exists()
    owner = _owner_args(d)
    pcrtool("tpm", "enroll", *t, *how, "--secret", d / "secret.bin", "-o", d / "e.json", *owner, check=0)
    boot(swtpm, doc, 1)
    apps = ("-a", d / "a.pcrsig") if mode == "signed" else ()
    p = pcrtool("tpm", "unlock", *t, "-e", d / "e.json", *apps, check=0)
    assert base64.b64decode(p.stdout) == SECRET
    boot(swtpm, doc, 2)   # not approved / not allowlisted: still denied
    assert pcrtool("tpm", "unlock", *t, "-e", d / "e.json", *apps).returncode == 4


def test_the_owner_password_never_crosses_the_bus(swtpm, tmp_path):
    """Enrol and advance-floor with the owner password, through the logging proxy: the password
    (which authorizes every later counter increment) never appears on the bus in clear."""
    from tpm_proxy import TPM_RS_PW, TpmProxy

    d = tmp_path
    doc = _owned_device(swtpm, d)
    owner = _owner_args(d)
    with TpmProxy(swtpm) as proxy:
        t = ("--tcti", proxy.tcti)
        pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--floor", 1, "-o", d / "e.json", *owner, check=0)
        boot(swtpm, doc, 1)
        pcrtool("tpm", "advance-floor", *t, "-e", d / "e.json", "--to", 2, "-a", d / "a.pcrsig", *owner, check=0)
        proxy.wait_idle()
        bus = proxy.bus_bytes()
        passwords = [s.hmac for x in proxy.exchanges for s in x.sessions() if s.handle == TPM_RS_PW and s.hmac]
    assert "NV_Increment" in proxy.names()
    assert OWNER_PASSWORD.encode() not in bus and not passwords, passwords
