"""Interop with systemd 252's systemd-measure: byte-identical sha256 approvals for an empty
policyRef and the same RSA key, and a secret sealed the way systemd-cryptenroll
--tpm2-public-key seals (PolicyAuthorize(K), empty policyRef) unlocks on swtpm with
systemd-measure's own approval — but not with the approval of another phase."""

import json
import os
import subprocess


import pytest

from signed_policy import unseal_signed  # noqa: E402
from tests.policy.helpers_policy import need_module, pem_private, pem_public, pkcs1_sha256, rsa_key  # noqa: E402

MEASURE = "/usr/lib/systemd/systemd-measure"
KEY = rsa_key()
PHASES = ["enter-initrd", "enter-initrd:leave-initrd"]


def _need_measure():
    from tests.policy.helpers_policy import IN_CI
    if not os.access(MEASURE, os.X_OK):
        (pytest.fail if IN_CI else pytest.skip)("systemd-measure (systemd 252) is not installed")


@pytest.fixture
def uki(tmp_path):
    sections = {"linux": os.urandom(4096), "osrel": b"ID=test\nVERSION_ID=1\n", "cmdline": b"root=/dev/vda ro",
                "initrd": os.urandom(1000)}
    for name, data in sections.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    return tmp_path, sections


def _measure(swtpm, d, verb, *extra):
    args = [MEASURE, verb, f"--linux={d / 'linux'}", f"--osrel={d / 'osrel'}", f"--cmdline={d / 'cmdline'}",
            f"--initrd={d / 'initrd'}", "--bank=sha256", *[f"--phase={p}" for p in PHASES], "--json=short", *extra]
    if verb == "sign":
        args.append(f"--tpm2-device={swtpm.tcti}")
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_sha256_entries_are_byte_identical_to_systemd_measure_sign(swtpm, uki):
    _need_measure()
    from pcrtool.model import HashAlg, PcrValues
    from pcrtool.policy import approvals as A

    d, _ = uki
    theirs = _measure(swtpm, d, "sign", f"--private-key={d / 'k.pem'}", f"--public-key={d / 'pub.pem'}")
    calc = _measure(swtpm, d, "calculate")
    targets = []
    for item in calc["sha256"]:
        v = PcrValues()
        v.set(HashAlg.SHA256, item["pcr"], bytes.fromhex(item["hash"]))
        targets.append(A.ApprovalTarget(v))
    ours = A.Approvals(tuple(A.sign_entries(A.build_entries(targets, KEY.public_key()), pkcs1_sha256(KEY))))
    mine = json.loads(ours.dumps())["sha256"]
    assert mine == theirs["sha256"]
    assert json.dumps(mine, separators=(",", ":")) == json.dumps(theirs["sha256"], separators=(",", ":"))
    # and pcrtool's parser reads systemd-measure's file (sha256 entries verify with SHA-256)
    parsed = A.Approvals.parse(json.dumps(theirs))
    for e in parsed.entries:
        A.verify_entry(e, KEY.public_key())


def _seal_systemd_style(swtpm, secret):
    from pcrtool.policy import digests as D
    from pcrtool.tpm import policy_session as S

    with S.open_esys(swtpm.tcti) as esys:
        srk = S.create_srk(esys)
        blob = S.seal(esys, srk, secret, D.policy_authorize(D.public_key_name(KEY.public_key())))
        S.flush(esys, srk)
    return blob


def _unseal_systemd_style(swtpm, blob, entry):
    """LoadExternal → PolicyPCR(11, live) → VerifySignature → PolicyAuthorize(empty ref) → Unseal."""
    from pcrtool.tpm import policy_session as S

    with S.open_esys(swtpm.tcti) as esys:
        srk = S.create_srk(esys)
        try:
            return unseal_signed(esys, srk, blob, entry, KEY.public_key(), b"")
        finally:
            S.flush(esys, srk)


def _boot_uki(swtpm, sections, phase):
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import Measurement
    from pcrtool.predict.uki import phase_measurements, section_measurements
    from pcrtool.tpm.policy_validate import _measure as boot

    named = {f".{k}": v for k, v in sections.items()}
    meas = section_measurements(named, [HashAlg.SHA256]) + phase_measurements(phase, [HashAlg.SHA256])
    boot(swtpm, [Measurement(m.pcr, dict(m.digests)) for m in meas], HashAlg.SHA256)


def test_secret_sealed_with_empty_policy_ref_unlocks_with_systemd_measure_approval(swtpm, uki):
    _need_measure()
    need_module("tpm2_pytss")
    from pcrtool.errors import TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy import digests as D
    from pcrtool.tpm import policy_session as S

    d, sections = uki
    theirs = A.Approvals.parse(json.dumps(_measure(swtpm, d, "sign", f"--private-key={d / 'k.pem'}",
                                                   f"--public-key={d / 'pub.pem'}")))
    calc = _measure(swtpm, d, "calculate")
    secret = os.urandom(32)
    blob = _seal_systemd_style(swtpm, secret)
    _boot_uki(swtpm, sections, "enter-initrd")
    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [11])
    want = [i["hash"] for i in calc["sha256"] if i.get("phase") == "enter-initrd"][0]
    assert live.get(HashAlg.SHA256, 11).hex() == want  # the emulated boot is the one systemd predicts
    entry = theirs.find(HashAlg.SHA256, (11,), D.public_key_fingerprint(KEY.public_key()), D.policy_pcr(live))[0]
    assert _unseal_systemd_style(swtpm, blob, entry) == secret
    other_phase = [e for e in theirs.entries if e.bank == HashAlg.SHA256 and e.pol != entry.pol][0]
    _boot_uki(swtpm, sections, "enter-initrd")
    with pytest.raises(TpmPolicyFailed):
        _unseal_systemd_style(swtpm, blob, other_phase)
