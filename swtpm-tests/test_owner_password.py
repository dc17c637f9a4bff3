"""A TPM whose owner hierarchy has a password (`tpm2_changeauth -c owner`, the natural defence
against anyone moving the counter): enrolment takes the password, unlock needs none (issue 13:
a persistent SRK created once with owner authorization; today every unlock fails instead)."""

import base64
import json
import re
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parent))
from tests.policy.helpers_policy import need_module, need_tool, pem_private, pem_public, releases_doc, rsa_key  # noqa: E402
from tpm_proxy import boot, pcrtool, tpm2_tools  # noqa: E402

OWNER_PASSWORD = "owner-secret-13"
SECRET = bytes(range(0x60, 0x80))


def _owner_option() -> str:
    """The enrol option that takes owner authorization, as `pcrtool tpm enroll --help` names it."""
    text = pcrtool("tpm", "enroll", "--help", check=0).stdout
    found = sorted(set(re.findall(r"--owner[-a-z]*", text)))
    assert found, "`pcrtool tpm enroll` has no option for owner authorization"
    return found[0]


@pytest.mark.parametrize("mode", ["signed", "allowlist-direct"])
def test_enrol_with_owner_password_unlock_without(swtpm, tmp_path, mode):
    need_module("tpm2_pytss")
    need_tool("tpm2_changeauth")
    d = tmp_path
    key = rsa_key()
    (d / "k.pem").write_bytes(pem_private(key))
    (d / "pub.pem").write_bytes(pem_public(key))
    (d / "secret.bin").write_bytes(SECRET)
    doc = releases_doc(svns=(1, 2))
    (d / "rel.json").write_text(json.dumps(doc))
    pcrtool("policy", "approve", "-r", d / "rel.json", "-k", d / "k.pem", "-o", d / "a.pcrsig", check=0)
    tpm2_tools(swtpm, "tpm2_changeauth", "-c", "owner", OWNER_PASSWORD)
    t = ("--tcti", swtpm.tcti)
    how = ("-k", d / "pub.pem", "--floor", 1) if mode == "signed" else ("--allowlist", d / "rel.json")
    # without the password enrolment is refused cleanly
    p = pcrtool("tpm", "enroll", *t, *how, "--secret", d / "secret.bin", "-o", d / "none.json")
    assert p.returncode != 0 and "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert not (d / "none.json").exists()
    option = _owner_option()
    if option.endswith("-file"):
        (d / "owner.pw").write_text(OWNER_PASSWORD)
        (d / "owner.pw").chmod(0o600)
        owner = (option, d / "owner.pw")
    else:
        owner = (option, OWNER_PASSWORD)
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

    need_module("tpm2_pytss")
    need_tool("tpm2_changeauth")
    d = tmp_path
    key = rsa_key()
    (d / "k.pem").write_bytes(pem_private(key))
    (d / "pub.pem").write_bytes(pem_public(key))
    doc = releases_doc(svns=(1, 2))
    (d / "rel.json").write_text(json.dumps(doc))
    pcrtool("policy", "approve", "-r", d / "rel.json", "-k", d / "k.pem", "-o", d / "a.pcrsig", check=0)
    tpm2_tools(swtpm, "tpm2_changeauth", "-c", "owner", OWNER_PASSWORD)
    option = _owner_option()
    (d / "owner.pw").write_text(OWNER_PASSWORD)
    (d / "owner.pw").chmod(0o600)
    owner = (option, d / "owner.pw") if option.endswith("-file") else (option, OWNER_PASSWORD)
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
