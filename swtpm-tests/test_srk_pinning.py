"""The storage root key is pinned at enrolment, and the secret never crosses the TPM bus in clear.

Unlock salts the session that carries the unsealed secret to the SRK's public area as the TPM
returns it. Enrolment records that key's Name; unlock refuses (exit 4, before any object is loaded
or session started) when the TPM presents another key: another TPM, a cleared owner hierarchy, or
a device between pcrtool and the TPM answering with a key of its own. Allow and deny on swtpm, the
Name checked against tpm2-tools, and the bus traffic checked in libtss2's own TCTI trace.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.policy.helpers_policy import need_module, need_tool, pem_private, pem_public, pkcs1_sha256, releases_json, rsa_key  # noqa: E402,E501
from tpm_proxy import pcrtool  # noqa: E402
from pcrtool.tpm import enrollment_file  # noqa: E402

KEY = rsa_key()
SRK_ATTRIBUTES = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt"


def _setup(svns=(1, 2)):
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy.releases_file import parse_releases

    releases, _ = parse_releases(releases_json(svns=svns))
    targets = [A.ApprovalTarget(r.selected(HashAlg.SHA256, [11]), r.svn) for r in releases if r.allowed]
    apps = A.Approvals(tuple(A.sign_entries(A.build_entries(targets, KEY.public_key()), pkcs1_sha256(KEY))))
    return releases, apps


def _boot(sw, release):
    from pcrtool.model import HashAlg
    from pcrtool.tpm.policy_validate import _measure
    _measure(sw, release.measurements, HashAlg.SHA256)


def _enroll(sw, **kw):
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E
    return E.enroll(sw.tcti, KEY.public_key(), floor=1, window=2, bank=HashAlg.SHA256, pcrs=[11],
                    secret=b"s" * 32, **kw)


def _tpm2_tools_srk_name(sw, tmp_path) -> bytes:
    """The Name tpm2-tools gives the SRK template pcrtool uses (TCG ECC P-256, AES-128-CFB, NODA)."""
    need_tool("tpm2_createprimary")
    env = {**os.environ, "TPM2TOOLS_TCTI": sw.tcti}
    ctx, name = tmp_path / "srk.ctx", tmp_path / "srk.name"
    subprocess.run(["tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256:aes128cfb",
                    "-a", SRK_ATTRIBUTES, "-c", ctx], check=True, env=env, capture_output=True, timeout=60)
    subprocess.run(["tpm2_readpublic", "-Q", "-c", ctx, "-n", name], check=True, env=env, capture_output=True,
                   timeout=60)
    subprocess.run(["tpm2_flushcontext", "-t"], check=True, env=env, capture_output=True, timeout=60)
    return name.read_bytes()


def test_enrollments_pin_the_srk_name_tpm2_tools_derives(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg, PcrValues
    from pcrtool.tpm import policy_allowlist as P

    expected = _tpm2_tools_srk_name(swtpm, tmp_path)
    assert len(expected) == 34 and expected[:2] == b"\x00\x0b"
    assert _enroll(swtpm).srk_name == expected.hex()
    values = PcrValues()
    values.set(HashAlg.SHA256, 11, b"\x11" * 32)
    allow = P.enroll_allowlist(swtpm.tcti, [("r1", values)], bank=HashAlg.SHA256, pcrs=[11], secret=b"a" * 32)
    assert allow.srk_name == expected.hex()
    assert P.AllowlistEnrollment.parse(allow.to_json()) == allow


def test_unlock_refuses_an_srk_other_than_the_pinned_one(swtpm):
    need_module("tpm2_pytss")
    from dataclasses import replace

    from pcrtool.errors import PolicyRefused
    from pcrtool.tpm import enroll as E

    releases, apps = _setup()
    e = _enroll(swtpm)
    _boot(swtpm, releases[0])
    assert E.unlock(swtpm.tcti, e, apps).secret == b"s" * 32  # allow: the pinned key
    name = bytearray(bytes.fromhex(e.srk_name))
    name[-1] ^= 1
    with pytest.raises(PolicyRefused, match="storage root key is not the enrolled one") as ei:
        E.unlock(swtpm.tcti, replace(e, srk_name=name.hex()), apps)
    assert ei.value.exit_code == 4
    # the widening re-seal keeps the pin and refuses the same way
    with pytest.raises(PolicyRefused, match="storage root key"):
        _enroll(swtpm, reuse=replace(e, srk_name=name.hex()))


def test_enrollment_moved_to_another_tpm_is_refused_by_the_pin(swtpm):
    """A second swtpm (other seeds) with the same floor counter index and the same boot: the
    SRK differs, so unlock stops before TPM2_Load (which would also fail, less clearly)."""
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused
    from pcrtool.swtpm import Swtpm
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm import policy_session as S

    releases, apps = _setup()
    e = _enroll(swtpm)
    with Swtpm.start() as other:
        with S.open_esys(other.tcti) as esys:
            E.ensure_counter(esys, e.counter_index)
        _boot(other, releases[0])
        with pytest.raises(PolicyRefused, match="storage root key is not the enrolled one"):
            E.unlock(other.tcti, e, apps)
    _boot(swtpm, releases[0])
    assert E.unlock(swtpm.tcti, e, apps).secret == b"s" * 32


def test_allowlist_unlock_and_update_refuse_another_srk(swtpm):
    need_module("tpm2_pytss")
    from dataclasses import replace

    from pcrtool.errors import PolicyRefused
    from pcrtool.model import HashAlg, PcrValues
    from pcrtool.tpm import policy_allowlist as P
    from pcrtool.tpm import policy_session as S

    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [11])
    e = P.enroll_allowlist(swtpm.tcti, [("now", live)], bank=HashAlg.SHA256, pcrs=[11], secret=b"a" * 32)
    assert P.unlock_allowlist(swtpm.tcti, e).secret == b"a" * 32
    bad = replace(e, srk_name="000b" + "00" * 32)
    with pytest.raises(PolicyRefused, match="storage root key"):
        P.unlock_allowlist(swtpm.tcti, bad)
    with pytest.raises(PolicyRefused, match="storage root key"):
        P.enroll_allowlist(swtpm.tcti, [("now", live)], bank=HashAlg.SHA256, pcrs=[11], secret=b"a" * 32,
                           pinned_srk=bytes.fromhex(bad.srk_name))
    other = PcrValues()
    other.set(HashAlg.SHA256, 11, b"\x22" * 32)
    updated = P.update_allowlist(swtpm.tcti, e, [("now", live), ("next", other)], commit=lambda new: None)
    assert updated.srk_name == e.srk_name


def test_enrollment_files_check_the_srk_name_field(swtpm):
    need_module("tpm2_pytss")
    from pcrtool.errors import FormatError
    from pcrtool.model import HashAlg
    from pcrtool.tpm import policy_allowlist as P
    from pcrtool.tpm import policy_session as S

    signed = json.loads(_enroll(swtpm).to_json())
    assert enrollment_file.Enrollment.parse(json.dumps({**signed, "srk_name": ""})).srk_name == ""  # parsed, refused at unlock
    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [11])
    allow = json.loads(P.enroll_allowlist(swtpm.tcti, [("now", live)], bank=HashAlg.SHA256, pcrs=[11],
                                          secret=b"a" * 32).to_json())
    assert P.AllowlistEnrollment.parse(json.dumps({**allow, "srk_name": ""})).pinned_srk is None
    for bad in ("zz", "000b" + "00" * 31, "0004" + "00" * 32, "000B" + "00" * 32, 5):
        with pytest.raises(FormatError, match="srk_name"):
            enrollment_file.Enrollment.parse(json.dumps({**signed, "srk_name": bad}))
        with pytest.raises(FormatError, match="srk_name"):
            P.AllowlistEnrollment.parse(json.dumps({**allow, "srk_name": bad}))


def test_unlock_of_an_unpinned_enrollment_is_refused_unless_waived(swtpm, tmp_path):
    need_module("tpm2_pytss")
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "rel.json").write_text(releases_json(svns=(1, 2)))

    pcrtool("policy", "approve", "-r", tmp_path / "rel.json", "-k", tmp_path / "k.pem", "-o", tmp_path / "a.pcrsig",
            check=0)
    t = ("--tcti", swtpm.tcti)
    pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--floor", 1, "-o", tmp_path / "e.json", check=0)
    releases, _ = _setup()
    _boot(swtpm, releases[0])
    p = pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e.json", "-a", tmp_path / "a.pcrsig", check=0)
    assert "pins no storage root key" not in p.stderr
    doc = json.loads((tmp_path / "e.json").read_text())
    status = json.loads(pcrtool("tpm", "status", *t, "-e", tmp_path / "e.json", "--json=short", check=0).stdout)
    assert status["srk_name"] == doc["srk_name"] == _tpm2_tools_srk_name(swtpm, tmp_path).hex()
    for unpinned in ("", None):
        if unpinned is None:
            del doc["srk_name"]
        else:
            doc["srk_name"] = unpinned
        (tmp_path / "old.json").write_text(json.dumps(doc))
        p = pcrtool("tpm", "unlock", *t, "-e", tmp_path / "old.json", "-a", tmp_path / "a.pcrsig", check=4)
        assert "pins no storage root key" in p.stderr and "--allow-unpinned-srk" in p.stderr
        assert p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
        p = pcrtool("tpm", "unlock", *t, "-e", tmp_path / "old.json", "-a", tmp_path / "a.pcrsig",
                    "--allow-unpinned-srk", check=0)
        assert "pins no storage root key" in p.stderr
    doc["srk_name"] = "000b" + "11" * 32
    (tmp_path / "other.json").write_text(json.dumps(doc))
    p = pcrtool("tpm", "unlock", *t, "-e", tmp_path / "other.json", "-a", tmp_path / "a.pcrsig", check=4)
    assert "storage root key is not the enrolled one" in p.stderr and p.stdout == ""


# --- the bus: libtss2's TCTI trace of every command and response --------------------------------

_TRACED = r"""
import sys
sys.path.insert(0, sys.argv[1])
from tests.policy.helpers_policy import pkcs1_sha256, releases_json, rsa_key
from pcrtool.model import HashAlg
from pcrtool.policy import approvals as A
from pcrtool.policy.releases_file import parse_releases
from pcrtool.swtpm import Swtpm
from pcrtool.tpm import enroll as E
from pcrtool.tpm import policy_session as S
from pcrtool.tpm.policy_validate import _measure

secret = bytes.fromhex(sys.argv[2])
key = rsa_key()
releases, _ = parse_releases(releases_json(svns=(1,)))
targets = [A.ApprovalTarget(r.selected(HashAlg.SHA256, [11]), r.svn) for r in releases if r.allowed]
apps = A.Approvals(tuple(A.sign_entries(A.build_entries(targets, key.public_key()), pkcs1_sha256(key))))

def phase(name):
    sys.stderr.write(f"PHASE {name}\n")
    sys.stderr.flush()

with Swtpm.start() as sw:
    _measure(sw, releases[0].measurements, HashAlg.SHA256)
    phase("enroll")
    e = E.enroll(sw.tcti, key.public_key(), floor=1, window=1, bank=HashAlg.SHA256, pcrs=[11], secret=secret)
    phase("unlock")
    assert E.unlock(sw.tcti, e, apps).secret == secret
    phase("control")   # what a plain TPM2_Create (no encrypting session) puts on the bus
    from tpm2_pytss import types as T
    with S.open_esys(sw.tcti) as esys:
        srk = S.create_srk(esys)
        pub = T.TPM2B_PUBLIC.parse("keyedhash", objectAttributes=S.SEAL_ATTRIBUTES | 0x40)
        sens = T.TPM2B_SENSITIVE_CREATE(T.TPMS_SENSITIVE_CREATE(data=T.TPM2B_SENSITIVE_DATA(secret)))
        esys.create(srk, sens, pub)
        S.flush(esys, srk)
    phase("end")
"""

_DUMP_LINE = re.compile(r"^([0-9a-f]{4}): ([0-9a-f]{2,32})(?:\s|$)")


def _bus_by_phase(stderr: str) -> dict[str, list[str]]:
    """Hex of every buffer the TCTI wrote or read, grouped by the script's phases."""
    phases: dict[str, list[str]] = {}
    current, block = None, None
    for line in stderr.splitlines():
        if line.startswith("PHASE "):
            current, block = line.split()[1], None
            phases[current] = []
            continue
        m = _DUMP_LINE.match(line)
        if m and current:
            if m.group(1) == "0000" or block is None:
                phases[current].append("")
                block = True
            phases[current][-1] += m.group(2)
        else:
            block = None
    return phases


def test_the_secret_never_crosses_the_bus_in_clear(tmp_path):
    """Enrolment (TPM2_Create under a salted session with DECRYPT) and unlock (TPM2_Unseal with
    ENCRYPT) never carry the secret in clear; the control (a plain TPM2_Create) shows the trace
    would reveal it."""
    need_module("tpm2_pytss")
    need_tool("swtpm")
    secret = bytes(range(0xA0, 0xC0))
    env = {**os.environ, "TSS2_LOG": "tcti+debug"}
    helpers = str(Path(__file__).resolve().parents[1] / "tests" / "policy")
    p = subprocess.run([sys.executable, "-c", _TRACED, helpers, secret.hex()], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    bus = _bus_by_phase(p.stderr)
    assert set(bus) == {"enroll", "unlock", "control", "end"}
    assert len(bus["enroll"]) >= 10 and len(bus["unlock"]) >= 20  # commands and responses were traced
    assert any(secret.hex() in buf for buf in bus["control"])
    for phase in ("enroll", "unlock"):
        assert not any(secret.hex() in buf for buf in bus[phase]), f"the secret crossed the bus in clear ({phase})"
