"""The attacks of issue 13, each as it was reproduced (file edits, re-enrolment, foreign scopes,
forged or parallel advance-floor, the counter's write authorization, a foreign index at the
counter handle, sloppy input), on real swtpm. Every deny asserts the TPM's own return code where
the TPM is the one refusing, and exit code + one-line message at the CLI.

Before the fix each of these unlocked a revoked or foreign release, moved the floor, tripped
dictionary-attack lockout or ended in "internal error".
"""

import json
from pathlib import Path

import pytest

from tests.policy.helpers_policy import need_module, pem_private, pem_public, pkcs1_sha256, releases_doc, rsa_key  # noqa: E402
from tpm_proxy import excuse_lockout, pcrtool, pcrtool_popen  # noqa: E402
from pcrtool.tpm import enrollment_file  # noqa: E402

KEY = rsa_key()
TPM_RC_VALUE, TPM_RC_POLICY_FAIL = 0x004, 0x01D   # format-1 error numbers (Part 2 §6.6.3)
POLICY_FAIL_OR_VALUE = {"TPM_RC_VALUE", "TPM_RC_POLICY_FAIL"}


def _pcrtool(*args, check=None, timeout=120):
    """``tpm_proxy.pcrtool``; a failure must also be one line, never "internal error"."""
    p = pcrtool(*args, check=check, timeout=timeout)
    if p.returncode:
        assert "Traceback" not in p.stderr and "internal error" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    return p


def _releases(svns=(1, 2, 3, 4), pcrs=(7, 11), tag="atk"):
    from pcrtool.policy.releases_file import parse_releases
    releases, _ = parse_releases(json.dumps(releases_doc(svns=svns, pcrs=pcrs, tag=tag)))
    return [r for r in releases if r.allowed]


def _approvals(releases, bank, pcrs, product="", key=KEY):
    from pcrtool.policy import approvals as A
    targets = [A.ApprovalTarget(r.selected(bank, pcrs), r.svn) for r in releases]
    return A.Approvals(tuple(A.sign_entries(A.build_entries(targets, key.public_key(), [bank], product=product),
                                            pkcs1_sha256(key))))


def _boot(sw, release, banks=None):
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import Measurement
    from pcrtool.tpm.policy_validate import _measure
    meas = release.measurements
    if banks:  # also extend the same events into other banks (digest of the sha256 digest)
        meas = [Measurement(m.pcr, {b: b.digest(m.digests[HashAlg.SHA256]) if b != HashAlg.SHA256
                                    else m.digests[HashAlg.SHA256] for b in banks}) for m in meas]
    _measure(sw, meas, HashAlg.SHA256)


def _enroll(sw, *, floor=1, window=4, pcrs=(7, 11), product="", **kw):
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E
    return E.enroll(sw.tcti, KEY.public_key(), floor=floor, window=window, bank=kw.pop("bank", HashAlg.SHA256),
                    pcrs=list(pcrs), secret=b"S" * 32, product=product, **kw)


def _rc(excinfo) -> str:
    """The TPM's refusal by name: TPM_RC_VALUE (PolicyOR: the running digest is no branch) or
    TPM_RC_POLICY_FAIL (Unseal: the session digest is not the object's authPolicy)."""
    rc = getattr(excinfo.value, "rc", None)
    assert rc, f"not refused by the TPM: {excinfo.value}"
    assert rc & 0x80, f"{rc:#x} is not a format-1 error"
    return {TPM_RC_VALUE: "TPM_RC_VALUE", TPM_RC_POLICY_FAIL: "TPM_RC_POLICY_FAIL"}.get(rc & 0x3F, hex(rc))


# --- finding 2: enrollment fields the TPM never checked -------------------------------------------------

def test_edited_pcrs_no_longer_unlock_with_a_narrower_approval(swtpm):
    """Enrolled [7, 11]; the key also signed a PCR 11-only approval; PCR 7 is not the enrolled
    one. Editing pcrs to [11] unlocked before; now the TPM refuses (the ref carries the selection)."""
    need_module("tpm2_pytss")
    from dataclasses import replace

    from pcrtool.errors import TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E

    rels = _releases()
    e = _enroll(swtpm)
    narrow = _approvals(rels, HashAlg.SHA256, (11,))
    _boot(swtpm, rels[2])
    edited = replace(e, pcrs=(11,))
    with pytest.raises(TpmPolicyFailed) as ei:
        E.unlock(swtpm.tcti, edited, narrow)
    assert _rc(ei) in POLICY_FAIL_OR_VALUE and "edited" in ei.value.message
    # the unedited enrollment with its own approvals still unlocks
    assert E.unlock(swtpm.tcti, e, _approvals(rels, HashAlg.SHA256, (7, 11))).secret == b"S" * 32


def test_edited_bank_no_longer_unlocks_with_a_sha1_approval(swtpm):
    need_module("tpm2_pytss")
    from dataclasses import replace

    from pcrtool.errors import TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E

    rels = _releases(pcrs=(11,))
    e = _enroll(swtpm, pcrs=(11,))
    _boot(swtpm, rels[1], banks=[HashAlg.SHA256, HashAlg.SHA1])
    from pcrtool.tpm import policy_session as S
    with S.open_esys(swtpm.tcti) as esys:
        live1 = S.read_pcrs(esys, HashAlg.SHA1, [11])
    from pcrtool.policy import approvals as A
    from pcrtool.model import PcrValues
    v = PcrValues()
    v.set(HashAlg.SHA1, 11, live1.get(HashAlg.SHA1, 11))
    sha1 = A.Approvals(tuple(A.sign_entries(A.build_entries([A.ApprovalTarget(v, 2)], KEY.public_key()),
                                            pkcs1_sha256(KEY))))
    with pytest.raises(TpmPolicyFailed) as ei:
        E.unlock(swtpm.tcti, replace(e, bank="sha1"), sha1)
    assert _rc(ei) in POLICY_FAIL_OR_VALUE


def test_edited_enrollment_file_is_refused_at_the_cli_with_the_tpm_code(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg

    rels = _releases()
    e = _enroll(swtpm)
    enrollment_file.write_enrollment(tmp_path / "e.json", e)
    (tmp_path / "narrow.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (11,)).dumps())
    doc = json.loads((tmp_path / "e.json").read_text())
    doc["pcrs"] = [11]
    (tmp_path / "edited.json").write_text(json.dumps(doc))
    _boot(swtpm, rels[2])
    p = _pcrtool("tpm", "unlock", "--tcti", swtpm.tcti, "-e", tmp_path / "edited.json", "-a",
                 tmp_path / "narrow.pcrsig", check=4)
    assert "edited" in p.stderr and "TPM_RC" in p.stderr and p.stdout == ""


# --- finding 4: approvals for another product ----------------------------------------------------------

def test_approval_for_another_product_is_refused_by_the_tpm(swtpm):
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused, TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E

    rels = _releases()
    e = _enroll(swtpm, product="acme-a")
    E.advance_floor(swtpm.tcti, e, 3)
    _boot(swtpm, rels[3])   # svn 4, approved for product B only
    b_apps = _approvals(rels, HashAlg.SHA256, (7, 11), product="acme-b")
    with pytest.raises(PolicyRefused):
        E.unlock(swtpm.tcti, e, b_apps)       # pcrtool sees no approval in scope
    entry = b_apps.find(HashAlg.SHA256, (7, 11), b_apps.entries[0].pkfp, b_apps.entries[3].pol)[0]
    with pytest.raises(TpmPolicyFailed) as ei:
        E.unlock(swtpm.tcti, e, b_apps, attempt_anyway=True, entry_override=entry)
    assert _rc(ei) in POLICY_FAIL_OR_VALUE
    assert E.unlock(swtpm.tcti, e, _approvals(rels, HashAlg.SHA256, (7, 11), "acme-a")).svn == 4


# --- finding 3: re-enrolment -------------------------------------------------------------------------------

def test_reenrolment_keeps_the_floor_and_lowering_must_name_what_it_revives(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg

    rels = _releases()
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "a.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (7, 11)).dumps())
    t = ("--tcti", swtpm.tcti)
    _pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--pcrs", "7,11", "--floor", 1, "--window", 4,
             "-o", tmp_path / "e.json", check=0)
    _boot(swtpm, rels[2])
    _pcrtool("tpm", "advance-floor", *t, "-e", tmp_path / "e.json", "--to", 3, "-a", tmp_path / "a.pcrsig",
             check=0)
    # the old default (--floor 0 on the existing counter) silently revived svn 1 and 2: refused now
    p = _pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--pcrs", "7,11", "-o", tmp_path / "e2.json",
                 check=4)
    assert "--previous" in p.stderr and not (tmp_path / "e2.json").exists()
    # with the previous enrolment: the floor stays 3
    _pcrtool("tpm", "enroll", *t, "--previous", tmp_path / "e.json", "-a", tmp_path / "a.pcrsig",
             "-o", tmp_path / "e2.json", check=0)
    st = json.loads(_pcrtool("tpm", "status", *t, "-e", tmp_path / "e2.json", "--json=short", check=0).stdout)
    assert st["floor"] == 3
    _boot(swtpm, rels[1])
    p = _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e2.json", "-a", tmp_path / "a.pcrsig", check=4)
    assert "below the device floor 3" in p.stderr and "TPM_RC" in p.stderr
    # lowering needs --revive naming exactly the svns it revives
    _boot(swtpm, rels[2])
    p = _pcrtool("tpm", "enroll", *t, "--previous", tmp_path / "e.json", "-a", tmp_path / "a.pcrsig",
                 "--floor", 2, "-o", tmp_path / "e3.json", check=4)
    assert "--revive 2-2" in p.stderr
    _pcrtool("tpm", "enroll", *t, "--previous", tmp_path / "e.json", "-a", tmp_path / "a.pcrsig",
             "--floor", 2, "--revive", "1-2", "-o", tmp_path / "e3.json", check=4)
    _pcrtool("tpm", "enroll", *t, "--previous", tmp_path / "e.json", "-a", tmp_path / "a.pcrsig",
             "--floor", 2, "--revive", "2-2", "-o", tmp_path / "e3.json", check=0)
    _boot(swtpm, rels[1])
    _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e3.json", "-a", tmp_path / "a.pcrsig", check=0)
    _boot(swtpm, rels[0])
    _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e3.json", "-a", tmp_path / "a.pcrsig", check=4)


def test_reenrolment_from_a_forged_previous_file_cannot_lower_the_floor(swtpm, tmp_path):
    """Root forges the previous enrollment (higher c0 = lower floor, a blob of its own under the
    same SRK): the re-enrolment unseals the forged blob, whose secret is not the device's — with
    --secret it is refused, without it only garbage would be sealed (availability, not security)."""
    need_module("tpm2_pytss")
    from dataclasses import replace

    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E

    rels = _releases()
    e = _enroll(swtpm)
    E.advance_floor(swtpm.tcti, e, 3)
    forged = E.enroll(swtpm.tcti, KEY.public_key(), floor=1, window=4, bank=HashAlg.SHA256, pcrs=[7, 11],
                      secret=b"G" * 32, counter_index=e.counter_index, revive=(1, 2 ** 31 - 1))
    assert forged.floor(e.c0 + 2) < e.floor(e.c0 + 2)
    enrollment_file.write_enrollment(tmp_path / "forged.json", replace(forged))
    (tmp_path / "a.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (7, 11)).dumps())
    (tmp_path / "secret").write_bytes(b"S" * 32)
    _boot(swtpm, rels[2])
    p = _pcrtool("tpm", "enroll", "--tcti", swtpm.tcti, "--previous", tmp_path / "forged.json", "-a",
                 tmp_path / "a.pcrsig", "--secret", tmp_path / "secret", "-o", tmp_path / "new.json", check=2)
    assert "differs" in p.stderr and not (tmp_path / "new.json").exists()


def test_lost_enrollment_file_costs_availability_not_security(swtpm, tmp_path):
    need_module("tpm2_pytss")
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    t = ("--tcti", swtpm.tcti)
    _pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--floor", 3, "-o", tmp_path / "e.json", check=0)
    (tmp_path / "e.json").unlink()
    p = _pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--floor", 3, "-o", tmp_path / "e.json", check=4)
    assert "--revive 3-2147483647" in p.stderr
    _pcrtool("tpm", "enroll", *t, "-k", tmp_path / "pub.pem", "--floor", 3, "--revive", "3-2147483647",
             "-o", tmp_path / "e.json", check=0)


# --- finding 5: advance-floor ------------------------------------------------------------------------------

def test_advance_floor_refuses_a_forged_entry_before_any_increment(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy import digests as D

    rels = _releases()
    e = _enroll(swtpm)
    enrollment_file.write_enrollment(tmp_path / "e.json", e)
    good = _approvals(rels[:3], HashAlg.SHA256, (7, 11))
    _boot(swtpm, rels[2])  # svn 3 booted
    from pcrtool.tpm import policy_session as S
    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [7, 11])
    # svn 4 claimed for the booted PCRs, signature copied from the genuine svn 3 entry
    real = [x for x in good.entries if x.svn == 3][0]
    forged = A.ApprovalEntry(real.bank, real.pcrs, real.pkfp, D.policy_pcr(live), real.sig, e.scope.ref(4))
    (tmp_path / "f.pcrsig").write_text(A.Approvals(good.entries + (forged,)).dumps())
    before = json.loads(_pcrtool("tpm", "status", "--tcti", swtpm.tcti, "-e", tmp_path / "e.json", "--json=short",
                                 check=0).stdout)["counter"]
    p = _pcrtool("tpm", "advance-floor", "--tcti", swtpm.tcti, "-e", tmp_path / "e.json", "--to", 4, "-a",
                 tmp_path / "f.pcrsig", check=4)
    assert "does not verify" in p.stderr
    after = json.loads(_pcrtool("tpm", "status", "--tcti", swtpm.tcti, "-e", tmp_path / "e.json", "--json=short",
                                check=0).stdout)["counter"]
    assert before == after


def test_two_parallel_advance_floor_runs_end_at_the_requested_floor(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.tpm import enroll as E

    e = _enroll(swtpm, floor=1, window=16)
    enrollment_file.write_enrollment(tmp_path / "e.json", e)
    for target in (5, 9, 13):
        procs = [pcrtool_popen("tpm", "advance-floor", "--tcti", swtpm.tcti, "-e", tmp_path / "e.json",
                               "--to", target, "--force") for _ in range(2)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        st = E.status(swtpm.tcti, e)
        assert st["floor"] == target


# --- finding 7: who can move the counter --------------------------------------------------------------------

def test_the_counter_cannot_be_incremented_with_its_own_empty_auth(swtpm):
    """`tpm2_nvincrement -C <idx> <idx>` worked (AUTHWRITE, empty password): refused by the TPM now."""
    need_module("tpm2_pytss")
    from tpm2_pytss import TSS2_Exception

    from pcrtool.tpm import nv
    from pcrtool.tpm import policy_session as S

    e = _enroll(swtpm)
    with S.open_esys(swtpm.tcti) as esys:
        h = nv.open_nv(esys, e.counter_index)
        before = nv.read_counter(esys, h)
        with pytest.raises(TSS2_Exception) as ei:
            esys.nv_increment(h, h)
        assert int(ei.value.rc) & 0xFFF == 0x12F   # TPM_RC_AUTH_UNAVAILABLE
        assert nv.read_counter(esys, h) == before


# --- finding 8: names before authorizations ------------------------------------------------------------------

def _lockout_counter(sw) -> int:
    from tpm2_pytss.constants import TPM2_CAP, TPM2_PT

    from pcrtool.tpm import policy_session as S
    with S.open_esys(sw.tcti) as esys:
        _, data = esys.get_capability(TPM2_CAP.TPM_PROPERTIES, TPM2_PT.LOCKOUT_COUNTER, 1)
    return int(data.data.tpmProperties[0].value)


def test_a_password_index_at_the_counter_handle_never_sees_an_authorization(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    from pcrtool.errors import PolicyRefused
    from pcrtool.model import HashAlg
    from pcrtool.policy import digests as D
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm import nv
    from pcrtool.tpm import policy_session as S

    rels = _releases()
    e = _enroll(swtpm)
    apps = _approvals(rels, HashAlg.SHA256, (7, 11))
    with S.open_esys(swtpm.tcti) as esys:
        nv.undefine_nv(esys, nv.open_nv(esys, e.counter_index))
        attrs = int(D.TPMA_NV.AUTHREAD | D.TPMA_NV.AUTHWRITE | D.TPMA_NV.OWNERWRITE | D.TPMA_NV.OWNERREAD)  # no NO_DA
        pub = T.TPM2B_NV_PUBLIC(T.TPMS_NV_PUBLIC(nvIndex=e.counter_index, nameAlg=TPM2_ALG.SHA256,
                                                 attributes=attrs, dataSize=8))
        h = esys.nv_define_space(b"trap-password", pub, ESYS_TR.OWNER)
        esys.nv_write(h, bytes(8), 0, ESYS_TR.OWNER)
    before = _lockout_counter(swtpm)
    _boot(swtpm, rels[2])
    enrollment_file.write_enrollment(tmp_path / "e.json", e)
    (tmp_path / "a.pcrsig").write_text(apps.dumps())
    for args in (("unlock", "-a", tmp_path / "a.pcrsig"), ("status",), ("advance-floor", "--to", 3, "--force")):
        _pcrtool("tpm", args[0], "--tcti", swtpm.tcti, "-e", tmp_path / "e.json", *args[1:])
    with pytest.raises(PolicyRefused, match="not the enrolled floor counter"):
        E.unlock(swtpm.tcti, e, apps, attempt_anyway=True)
    assert _lockout_counter(swtpm) == before


# --- wrong key, unsupported keys ---------------------------------------------------------------------------

def test_wrong_key_approvals_name_both_keys_before_touching_the_tpm(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg

    other = rsa_key()
    rels = _releases()
    e = _enroll(swtpm)
    enrollment_file.write_enrollment(tmp_path / "e.json", e)
    (tmp_path / "o.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (7, 11), key=other).dumps())
    p = _pcrtool("tpm", "unlock", "--tcti", "swtpm:path=/nonexistent/sock", "-e", tmp_path / "e.json", "-a",
                 tmp_path / "o.pcrsig", check=4)
    assert "approvals are signed by key" in p.stderr and e.pkfp[:16] in p.stderr


def test_a_key_the_tpm_cannot_load_is_refused_at_enrolment_with_a_hint(swtpm, tmp_path):
    need_module("tpm2_pytss")
    from cryptography.hazmat.primitives.asymmetric import ec

    from pcrtool.tpm import policy_session as S
    (tmp_path / "big.pem").write_bytes(pem_public(rsa_key(4096)))
    (tmp_path / "p521.pem").write_bytes(pem_public(ec.generate_private_key(ec.SECP521R1())))
    with S.open_esys(swtpm.tcti) as esys:
        supported = {"rsa4096": S.test_parms_rsa(esys, 4096), "p521": S.test_parms_ecc(esys, "secp521r1")}
    for name, ok in supported.items():
        p = _pcrtool("tpm", "enroll", "--tcti", swtpm.tcti, "-k", tmp_path / f"{'big' if name == 'rsa4096' else 'p521'}.pem",
                     "-o", tmp_path / f"{name}.json")
        if ok:
            assert p.returncode == 0, p.stderr
        else:
            assert p.returncode == 2 and "TestParms" in p.stderr and "RSA-2048" in p.stderr


# --- finding 9: sloppy input -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def enrolled(swtpm_module, tmp_path_factory):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg

    d = tmp_path_factory.mktemp("strict")
    rels = _releases()
    e = _enroll(swtpm_module, counter_index=0x01805C70)
    enrollment_file.write_enrollment(d / "e.json", e)
    (d / "a.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (7, 11)).dumps())
    (d / "k.pem").write_bytes(pem_private(KEY))
    return d, swtpm_module


def _edit(path: Path, fn) -> dict:
    doc = json.loads(path.read_text())
    fn(doc)
    return doc


def _unlock_with_edited(enrolled, name: str, fn, where: str) -> None:
    """Unlock with ``name`` (e.json or a.pcrsig) edited by ``fn``: exit 1, one line naming ``where``."""
    d, sw = enrolled
    files = {"e.json": d / "e.json", "a.pcrsig": d / "a.pcrsig"}
    files[name] = d / ("bad" + Path(name).suffix)
    files[name].write_text(json.dumps(_edit(d / name, fn)))
    p = _pcrtool("tpm", "unlock", "--tcti", sw.tcti, "-e", files["e.json"], "-a", files["a.pcrsig"], check=1)
    assert where in p.stderr


ENROLLMENT_EDITS = {
    "window 2,000,000": (lambda d: d.update(window=2_000_000), "$.window"),
    "PCR 99": (lambda d: d.update(pcrs=[7, 99]), "$.pcrs"),
    "index ≥ 2³²": (lambda d: d.update(counter_index=2 ** 32), "$.counter_index"),
    "huge integer": (lambda d: d.update(c0=10 ** 40), "$.c0"),
    "bad base64 blob": (lambda d: d.update(blob="!!!!"), "$.blob"),
    "bad PEM": (lambda d: d.update(public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
                "$.public_key_pem"),
    "bad hex": (lambda d: d.update(policy="zz" * 32), "$.policy"),
    "bool as int": (lambda d: d.update(f0=True), "$.f0"),
    "unknown key": (lambda d: d.update(extra=1), "unknown key"),
    "version 1": (lambda d: d.update(version=1), "$.version"),
}


@pytest.mark.parametrize("case", sorted(ENROLLMENT_EDITS))
def test_malformed_enrollment_is_one_line_with_the_json_path(enrolled, case):
    _unlock_with_edited(enrolled, "e.json", *ENROLLMENT_EDITS[case])


APPROVAL_EDITS = {
    "ref with a trailing newline": (lambda d: d["sha256"][0].update(ref=d["sha256"][0]["ref"] + "\n"),
                                    "$.sha256[0].ref"),
    "ref pcrtool-svn=1 without scope": (lambda d: d["sha256"][0].update(ref="pcrtool-svn=1"), "$.sha256[0].ref"),
    "ref for other PCRs than the entry": (lambda d: d["sha256"][0].update(
        ref=d["sha256"][0]["ref"].replace("pcrs=7+11", "pcrs=11")), "$.sha256[0].ref"),
    "PCR 99": (lambda d: d["sha256"][0].update(pcrs=[99]), "$.sha256[0].pcrs"),
    "bad base64 sig": (lambda d: d["sha256"][0].update(sig="***"), "$.sha256[0].sig"),
    "short pol": (lambda d: d["sha256"][0].update(pol="00"), "$.sha256[0].pol"),
    "huge integer": (lambda d: d["sha256"][0].update(pcrs=[10 ** 30]), "$.sha256[0].pcrs"),
    "unknown bank": (lambda d: d.update(md5=[]), "md5"),
}


@pytest.mark.parametrize("case", sorted(APPROVAL_EDITS))
def test_malformed_approvals_are_one_line_with_the_json_path(enrolled, case):
    _unlock_with_edited(enrolled, "a.pcrsig", *APPROVAL_EDITS[case])


def test_deep_nesting_and_oversized_files_are_refused_quickly(enrolled):
    d, sw = enrolled
    (d / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    p = _pcrtool("tpm", "unlock", "--tcti", sw.tcti, "-e", d / "deep.json", "-a", d / "a.pcrsig", check=1)
    assert "nested" in p.stderr or "bytes" in p.stderr
    with open(d / "huge.pcrsig", "w") as f:   # a 73 MB approvals file is refused before parsing
        f.write('{"sha256": [' + ",".join(['{"pcrs": [11], "pol": "' + "00" * 32 + '"}'] * 1000) + "]}")
        f.seek(73 * 1024 * 1024)
        f.write(" ")
    p = _pcrtool("tpm", "unlock", "--tcti", sw.tcti, "-e", d / "e.json", "-a", d / "huge.pcrsig", check=1)
    assert "limit" in p.stderr


# --- owner password: enrol with it, unlock without it --------------------------------------------------------

def test_a_substituted_key_with_a_password_at_the_srk_handle_never_sees_an_authorization(swtpm, tmp_path):
    """The owner evicts the SRK and persists a key of its own with a password and without NODA
    at 0x81000001: unlock is refused after TPM2_ReadPublic, before TPM2_Load would authorize to
    it; the lockout counter does not move."""
    need_module("tpm2_pytss")
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR

    from pcrtool.errors import PolicyRefused
    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm import policy_session as S

    rels = _releases(pcrs=(11,))
    apps = _approvals(rels, HashAlg.SHA256, (11,))
    e = _enroll(swtpm, pcrs=(11,))
    with S.open_esys(swtpm.tcti) as esys:
        srk = esys.tr_from_tpmpublic(S.SRK_HANDLE)
        esys.evict_control(ESYS_TR.OWNER, srk, S.SRK_HANDLE)
        attrs = S.SRK_ATTRIBUTES & ~S.TPMA_OBJECT.NODA
        pub = T.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs, nameAlg="sha256")
        sens = T.TPM2B_SENSITIVE_CREATE(T.TPMS_SENSITIVE_CREATE(userAuth=T.TPM2B_AUTH(b"squatter")))
        trap, *_ = esys.create_primary(sens, pub, ESYS_TR.OWNER)
        esys.evict_control(ESYS_TR.OWNER, trap, S.SRK_HANDLE)
        esys.flush_context(trap)
    before = _lockout_counter(swtpm)
    _boot(swtpm, rels[2])
    with pytest.raises(PolicyRefused, match="storage root key is not the enrolled one"):
        E.unlock(swtpm.tcti, e, apps)
    assert _lockout_counter(swtpm) == before


def test_owner_password_enrol_with_it_unlock_without_it(swtpm, tmp_path):
    """Finding 7's natural defence: with an owner password set, unlock needs no owner auth (a
    persistent SRK, no CreatePrimary), the counter moves only with the password."""
    need_module("tpm2_pytss")
    from tpm2_pytss.constants import ESYS_TR

    from pcrtool.model import HashAlg
    from pcrtool.tpm import policy_session as S

    with S.open_esys(swtpm.tcti) as esys:
        esys.hierarchy_change_auth(ESYS_TR.OWNER, b"owner-pw")
    rels = _releases(pcrs=(11,))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "owner.txt").write_text("owner-pw\n")
    (tmp_path / "a.pcrsig").write_text(_approvals(rels, HashAlg.SHA256, (11,)).dumps())
    t = ("--tcti", swtpm.tcti)
    lockout = _lockout_counter(swtpm)
    for mode in ("signed", "allowlist"):
        args = ("-k", tmp_path / "pub.pem", "--floor", 1) if mode == "signed" else ()
        if mode == "allowlist":
            (tmp_path / "rel.json").write_text(json.dumps(releases_doc(svns=(1, 2, 3, 4), pcrs=(11,), tag="atk")))
            args = ("--allowlist", tmp_path / "rel.json")
        _pcrtool("tpm", "enroll", *t, *args, "--owner-auth-file", tmp_path / "owner.txt",
                 "-o", tmp_path / f"{mode}.json", check=0)
        _boot(swtpm, rels[2])
        extra = ("-a", tmp_path / "a.pcrsig") if mode == "signed" else ()
        p = _pcrtool("tpm", "unlock", *t, "-e", tmp_path / f"{mode}.json", *extra, "--json=short", check=0)
        st = json.loads(_pcrtool("tpm", "status", *t, "-e", tmp_path / f"{mode}.json", "--json=short",
                                 check=0).stdout)
        assert json.loads(p.stdout)["tpm_commands"] == st["unlock_tpm_commands"] <= 16
    _pcrtool("tpm", "advance-floor", *t, "-e", tmp_path / "signed.json", "--to", 2, "-a", tmp_path / "a.pcrsig",
             "--owner-auth-file", tmp_path / "owner.txt", check=0)
    st = json.loads(_pcrtool("tpm", "status", *t, "-e", tmp_path / "signed.json", "--json=short", check=0).stdout)
    assert st["floor"] == 2
    assert _lockout_counter(swtpm) == lockout


# --- finding 10: an active device on the bus --------------------------------------------------------------

def _interposer_unseal(sw, e, apps, pin_auth: bytes = b""):
    """What an active bus interposer can do on an approved boot: run the whole policy in an
    UNSALTED session (it sees every approval and tree path on the bus) and send its own
    TPM2_Unseal on it. It never learns what the salt or the PIN protect."""
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE

    from pcrtool.policy import digests as D
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm import nv
    from pcrtool.tpm import policy_session as S

    with S.open_esys(sw.tcti) as esys:
        srk, _ = E.open_srk(esys, e)
        obj = S.load_blob(esys, srk, e.blob_bytes)
        live = S.read_pcrs(esys, e.hash_alg, e.pcrs)
        entry = enrollment_file.scoped_entries(apps, e, D.policy_pcr(live))[0]
        key = S.load_external_key(esys, D.public_key_tpmt(e.public_key()))
        ticket = S.verify_signature(esys, key, entry.tbs, entry.sig, e.public_key())
        sess = esys.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY,
                                       T.TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
        S.policy_pcr(esys, sess, e.hash_alg, e.pcrs)
        S.policy_authorize(esys, sess, entry.pol, entry.policy_ref, bytes.fromhex(e.key_name), ticket)
        counter = nv.open_nv(esys, e.counter_index)
        S.policy_nv_le(esys, sess, counter, D.counter_bound(e.c0, e.f0, entry.svn))
        S.policy_or_path(esys, sess, e.tree().path(entry.svn - e.f0))
        if e.pin_salt:
            S.policy_auth_value(esys, sess)
            esys.tr_set_auth(obj, pin_auth)
        try:
            return bytes(esys.unseal(obj, session1=sess))
        finally:
            S.flush(esys, sess, key, obj)


def test_an_active_bus_interposer_needs_the_pin(swtpm, tmp_path):
    """Without a PIN an unsalted session of the interposer's own unseals on an approved boot
    (pcrtool cannot stop that: the threat model says so); with --pin-file the TPM refuses it
    (TPM_RC_AUTH_FAIL), and pcrtool itself needs the right PIN."""
    need_module("tpm2_pytss")
    from tpm2_pytss import TSS2_Exception

    from pcrtool.model import HashAlg
    from pcrtool.tpm import enroll as E

    rels = _releases(pcrs=(11,))
    apps = _approvals(rels, HashAlg.SHA256, (11,))
    plain = _enroll(swtpm, pcrs=(11,))
    _boot(swtpm, rels[2])
    assert _interposer_unseal(swtpm, plain, apps) == b"S" * 32      # the documented limit without a PIN
    guarded = E.enroll(swtpm.tcti, KEY.public_key(), floor=1, window=4, bank=HashAlg.SHA256, pcrs=[11],
                       secret=b"P" * 32, counter_index=0x01805C50, pin=b"2468")
    excuse_lockout(swtpm)   # wrong PINs below count against dictionary-attack protection, as intended
    with pytest.raises(TSS2_Exception) as ei:
        _interposer_unseal(swtpm, guarded, apps)
    assert int(ei.value.rc) & 0xBF == 0x8E      # TPM_RC_AUTH_FAIL
    enrollment_file.write_enrollment(tmp_path / "g.json", guarded)
    (tmp_path / "a.pcrsig").write_text(apps.dumps())
    (tmp_path / "pin").write_text("2468\n")
    (tmp_path / "bad").write_text("1357\n")
    t = ("--tcti", swtpm.tcti, "-e", tmp_path / "g.json", "-a", tmp_path / "a.pcrsig")
    p = _pcrtool("tpm", "unlock", *t, "--pin-file", tmp_path / "pin", "--json=short", check=0)
    assert json.loads(p.stdout)["tpm_commands"] == enrollment_file.unlock_command_count(guarded, 3)
    _pcrtool("tpm", "unlock", *t, check=2)
    p = _pcrtool("tpm", "unlock", *t, "--pin-file", tmp_path / "bad", check=4)
    assert "wrong PIN" in p.stderr and "TPM_RC" in p.stderr


def test_allowlist_mode_with_a_pin(swtpm, tmp_path):
    need_module("tpm2_pytss")

    rels = _releases(pcrs=(11,))
    (tmp_path / "rel.json").write_text(json.dumps(releases_doc(svns=(1, 2, 3, 4), pcrs=(11,), tag="atk")))
    (tmp_path / "pin").write_text("2468\n")
    (tmp_path / "bad").write_text("1111\n")
    t = ("--tcti", swtpm.tcti)
    _pcrtool("tpm", "enroll", *t, "--allowlist", tmp_path / "rel.json", "--pin-file", tmp_path / "pin",
             "-o", tmp_path / "e.json", check=0)
    _boot(swtpm, rels[1])
    _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e.json", "--pin-file", tmp_path / "pin", check=0)
    _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e.json", check=2)
    excuse_lockout(swtpm)   # the wrong PIN counts against dictionary-attack protection, as intended
    p = _pcrtool("tpm", "unlock", *t, "-e", tmp_path / "e.json", "--pin-file", tmp_path / "bad", check=4)
    assert "TPM_RC" in p.stderr
