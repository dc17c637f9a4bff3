"""`pcrtool tpm enroll | unlock | advance-floor | status` end to end on swtpm (allow AND deny),
the recovery key, window widening, allowlist modes, and ECDSA P-256 signing keys."""

import base64
import json

import pytest

from tests.policy.helpers_policy import need_module, pem_private, pem_public, releases_json, rsa_key  # noqa: E402
from tpm_proxy import pcrtool as _pcrtool  # noqa: E402

KEY = rsa_key()


def _boot(swtpm, rel_json: str, index: int):
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.tpm.policy_validate import _measure

    releases, _ = parse_releases(rel_json)
    _measure(swtpm, releases[index].measurements, HashAlg.SHA256)


@pytest.fixture
def env(tmp_path, swtpm):
    need_module("tpm2_pytss")
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    rel = releases_json(svns=(1, 2, 3))
    (tmp_path / "rel.json").write_text(rel)
    _pcrtool("policy", "approve", "-r", tmp_path / "rel.json", "-k", tmp_path / "k.pem", "-o",
             tmp_path / "a.pcrsig", check=0)
    return tmp_path, rel, swtpm


def test_signed_enroll_unlock_advance_status(env):
    d, rel, sw = env
    t = ("--tcti", sw.tcti)
    out = json.loads(_pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--floor", 1, "--window", 4,
                              "-o", d / "e.json", "--recovery-key", d / "recovery.txt", "--json=short", check=0).stdout)
    assert out["window"] == [1, 5]
    assert (d / "e.json").stat().st_mode & 0o777 == 0o600
    assert (d / "recovery.txt").stat().st_mode & 0o777 == 0o600
    secret = bytes.fromhex((d / "recovery.txt").read_text())
    _boot(sw, rel, 0)
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=0)
    assert base64.b64decode(p.stdout) == secret
    # advance-floor refuses while an older release is booted, unless forced
    p = _pcrtool("tpm", "advance-floor", *t, "-e", d / "e.json", "--to", 3, "-a", d / "a.pcrsig", check=4)
    assert "approved with svn 1, below --to 3" in p.stderr
    _boot(sw, rel, 2)
    st = json.loads(_pcrtool("tpm", "status", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", "--json=short",
                             check=0).stdout)
    assert st["floor"] == 1 and st["matching_svns"] == [3]
    _pcrtool("tpm", "advance-floor", *t, "-e", d / "e.json", "--to", 3, "-a", d / "a.pcrsig", check=0)
    assert json.loads(_pcrtool("tpm", "status", *t, "-e", d / "e.json", "--json=short", check=0).stdout)["floor"] == 3
    _boot(sw, rel, 1)
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=4)
    assert "below the device floor 3" in p.stderr and p.stdout == ""
    _boot(sw, rel, 3)  # the not-allowlisted dev build has no approval
    _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=4)
    _boot(sw, rel, 2)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", "-o", d / "secret.bin", check=0)
    assert (d / "secret.bin").read_bytes() == secret


def test_widen_reseals_with_same_c0_f0(env):
    d, rel, sw = env
    t = ("--tcti", sw.tcti)
    _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--floor", 1, "--window", 1, "-o", d / "e.json", check=0)
    _boot(sw, rel, 2)  # svn 3 is beyond the window 1…2
    p = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=4)
    assert "beyond the enrolled window" in p.stderr
    _boot(sw, rel, 1)
    _pcrtool("tpm", "enroll", *t, "--widen", d / "e.json", "--window", 4, "-a", d / "a.pcrsig",
             "-o", d / "e2.json", check=0)
    old, new = json.loads((d / "e.json").read_text()), json.loads((d / "e2.json").read_text())
    assert (old["c0"], old["f0"]) == (new["c0"], new["f0"]) and new["window"] == 4
    _boot(sw, rel, 2)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e2.json", "-a", d / "a.pcrsig", check=0)


def test_allowlist_enroll_unlock(env):
    d, rel, sw = env
    t = ("--tcti", sw.tcti)
    _pcrtool("tpm", "enroll", *t, "--allowlist", d / "rel.json", "--mode", "direct", "-o", d / "e.json", check=0)
    _boot(sw, rel, 1)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", check=0)
    _boot(sw, rel, 3)  # not allowlisted
    _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", check=4)


def test_enroll_refuses_to_overwrite_and_bad_inputs(env):
    d, rel, sw = env
    (d / "e.json").write_text("{}")
    p = _pcrtool("tpm", "enroll", "--tcti", sw.tcti, "-k", d / "pub.pem", "-o", d / "e.json", check=2)
    assert "Traceback" not in p.stderr
    p = _pcrtool("tpm", "unlock", "--tcti", sw.tcti, "-e", d / "e.json", check=1)
    assert "Traceback" not in p.stderr


def test_ecdsa_p256_signing_key_works_in_signed_mode(swtpm):
    need_module("tpm2_pytss")
    from cryptography.hazmat.primitives.asymmetric import ec

    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm.policy_validate import _measure, _sign_with

    key = ec.generate_private_key(ec.SECP256R1())
    releases, _ = parse_releases(releases_json(svns=(1, 2), tag="ec"))
    apps = A.Approvals(tuple(A.sign_entries(A.build_entries(
        [A.ApprovalTarget(r.selected(HashAlg.SHA256, [11]), r.svn) for r in releases if r.allowed],
        key.public_key()), _sign_with(key))))
    e = E.enroll(swtpm.tcti, key.public_key(), floor=1, window=1, bank=HashAlg.SHA256, pcrs=[11], secret=b"e" * 32)
    _measure(swtpm, releases[1].measurements, HashAlg.SHA256)
    assert E.unlock(swtpm.tcti, e, apps).secret == b"e" * 32


def test_allowlist_nv_mode_is_gone_and_says_why(env):
    d, rel, sw = env
    p = _pcrtool("tpm", "enroll", "--tcti", sw.tcti, "--allowlist", d / "rel.json", "--mode", "nv",
                 "--update-key", d / "update.key", "-o", d / "e.json", check=2)
    assert "removed" in p.stderr and "crossed the TPM bus in clear" in p.stderr
    assert not (d / "e.json").exists() and not (d / "update.key").exists()


def test_allowlist_update_revokes_a_release(env):
    d, rel, sw = env
    t = ("--tcti", sw.tcti)
    extra = []
    _pcrtool("tpm", "enroll", *t, "--allowlist", d / "rel.json", "-o", d / "e.json", check=0)
    doc = json.loads(rel)
    doc["releases"][0]["allowed"] = False  # revoke os-1.1
    (d / "rel2.json").write_text(json.dumps(doc))
    _boot(sw, rel, 2)
    _pcrtool("tpm", "enroll", *t, "--allowlist", d / "rel2.json", "--update", d / "e.json", *extra,
             "-o", d / "e2.json", check=0)
    _boot(sw, rel, 0)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e2.json", check=4)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", check=4)  # the old enrollment file is dead too
    _boot(sw, rel, 1)
    _pcrtool("tpm", "unlock", *t, "-e", d / "e2.json", check=0)


def test_a_streamed_first_enrolment_resumes_from_its_record_in_the_state_dir(env, monkeypatch):
    """-o - (or /dev/null) has no directory for OUT.pending: the crash-resume record lives in the
    state directory ($PCRTOOL_STATE_DIR), never in the current one (here /proc, where not even root
    can create a file). A re-run after a crash resumes from it instead of refusing the counter."""
    import os

    from pcrtool.policy.digests import COUNTER_ATTRIBUTES
    from pcrtool.tpm import open_tpm
    from pcrtool.tpm.enrollment_file import PendingEnrolment

    d, rel, sw = env
    monkeypatch.setenv("PCRTOOL_STATE_DIR", str(d / "state"))
    index = 0x01805C03
    secret = os.urandom(32)
    (d / "secret.bin").write_bytes(secret)
    args = ("tpm", "enroll", "--tcti", sw.tcti, "-k", d / "pub.pem", "--floor", 1, "--counter-index", f"{index:#x}",
            "--secret", d / "secret.bin", "-o", "-")
    # the state of a first run that crashed after initialising the counter: its record and the counter at c0
    pending = PendingEnrolment.for_output("-", secret, index, streamed=True)
    assert pending.path == str(d / "state" / "enroll-01805c03.pending")
    with open_tpm(sw.tcti) as tpm:
        tpm.nv_define(index, 8, int(COUNTER_ATTRIBUTES))
        c0 = tpm.nv_increment(index, auth="owner")
    pending.save(index, 1, c0)
    p = _pcrtool(*args, check=0, cwd="/proc")
    e = json.loads(p.stdout)
    assert (e["counter_index"], e["c0"], e["f0"]) == (index, c0, 1)
    assert not os.path.exists(pending.path)                  # removed once the enrollment is out
    # without the record the same command is refused: the counter is someone's floor now
    p = _pcrtool(*args, check=4, cwd="/proc")
    assert "--previous" in p.stderr and p.stdout == ""


def test_enroll_output_follows_the_one_output_rule(env):
    """-o /dev/null stays a character device, -o - prints the enrollment (which then unlocks),
    a symlink is refused, and --recovery-key cannot share stdout with the enrollment."""
    import os
    import stat
    d, rel, sw = env
    t = ("--tcti", sw.tcti)
    _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--floor", 1, "-o", "/dev/null",
             "--recovery-key", d / "rk.txt", check=0, cwd=d)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert (d / "rk.txt").stat().st_mode & 0o777 == 0o600
    assert not (d / ".pcrtool-enroll.pending").exists()   # nothing is left in the current directory
    # a second first-enrolment would find the counter in use: the floor counter index differs
    p = _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--floor", 1, "--counter-index", "0x1805C01",
                 "-o", "-", "--recovery-key", d / "rk2.txt", check=0, cwd=d)
    e = json.loads(p.stdout)
    assert e["f0"] == 1 and "window: [1, 17]" in p.stderr
    (d / "e.json").write_text(p.stdout)
    _boot(sw, rel, 0)
    out = _pcrtool("tpm", "unlock", *t, "-e", d / "e.json", "-a", d / "a.pcrsig", check=0).stdout
    assert base64.b64decode(out) == bytes.fromhex((d / "rk2.txt").read_text())
    # the recovery key is never overwritten, even by a stream-output enrolment
    p = _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "--counter-index", "0x1805C02", "-o", "/dev/null",
                 "--recovery-key", d / "rk.txt", check=1, cwd=d)
    assert "refusing to overwrite" in p.stderr
    os.symlink(d / "target.json", d / "link.json")
    p = _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "-o", d / "link.json", check=1, cwd=d)
    assert "symlink" in p.stderr and not (d / "target.json").exists()
    p = _pcrtool("tpm", "enroll", *t, "-k", d / "pub.pem", "-o", "-", "--recovery-key", "-", check=2, cwd=d)
    assert "standard output" in p.stderr and p.stdout == ""
    # allowlist mode: the enrollment goes to stdout as well
    p = _pcrtool("tpm", "enroll", *t, "--allowlist", d / "rel.json", "-o", "-", check=0, cwd=d)
    assert json.loads(p.stdout)["mode"] != "signed"
