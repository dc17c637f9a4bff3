"""Independent check: after enrolment, tpm2-tools trial sessions (tpm2_startauthsession,
tpm2_policypcr, tpm2_policyauthorize, tpm2_policynv, tpm2_policyor) on the same swtpm reproduce
the digests pcrtool computed in software — the live PolicyPCR digest, each svn branch and the
sealed root. tpm2-tools talks to swtpm without a resource manager: flush after every command."""

import hashlib
import os
import struct
import subprocess

from tests.policy.helpers_policy import need_module, need_tool, pem_public, rsa_key  # noqa: E402

KEY = rsa_key()


def _tools(swtpm, tmp_path):
    env = dict(os.environ, TPM2TOOLS_TCTI=swtpm.tcti)

    def run(*args):
        p = subprocess.run([need_tool(args[0]), *map(str, args[1:])], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{args}: {p.stderr}"
        subprocess.run([need_tool("tpm2_flushcontext"), "-t"], env=env, capture_output=True, timeout=60)
        return p.stdout
    return run


def _ref(svn: int) -> bytes:
    """policyRef of an approval for svn, bank sha256, PCR 11, no product (spelled out here)."""
    return hashlib.sha256(f"pcrtool-svn={svn},bank=sha256,pcrs=11".encode()).digest()


def test_trial_sessions_reproduce_enrolment_digests(swtpm, tmp_path):
    need_module("tpm2_pytss")
    need_tool("tpm2_startauthsession")
    from pcrtool.model import HashAlg
    from pcrtool.policy import digests as D
    from pcrtool.policy.downgrade import branch_digests
    from pcrtool.policy.releases_file import Measurement
    from pcrtool.tpm import enroll as E
    from pcrtool.tpm import policy_session as S
    from pcrtool.tpm.policy_validate import _measure

    e = E.enroll(swtpm.tcti, KEY.public_key(), floor=4, window=3, bank=HashAlg.SHA256, pcrs=[11],
                 secret=b"s" * 32)
    _measure(swtpm, [Measurement(11, {HashAlg.SHA256: hashlib.sha256(b"uki").digest()})], HashAlg.SHA256)
    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [11])
    run = _tools(swtpm, tmp_path)

    # PolicyPCR over the live PCR 11
    run("tpm2_startauthsession", "-S", "s.ctx")
    run("tpm2_policypcr", "-S", "s.ctx", "-l", "sha256:11", "-L", "pcr.pol")
    run("tpm2_flushcontext", "s.ctx")
    assert (tmp_path / "pcr.pol").read_bytes() == D.policy_pcr(live)

    # each branch: PolicyAuthorize(K, ref_s) → PolicyNV(counter ≤ c0 + s − f0, ule)
    (tmp_path / "key.name").write_bytes(bytes.fromhex(e.key_name))
    branches = []
    for s in range(e.f0, e.max_svn + 1):
        (tmp_path / "ref.bin").write_bytes(_ref(s))
        (tmp_path / "bound.bin").write_bytes(struct.pack(">Q", D.counter_bound(e.c0, e.f0, s)))
        run("tpm2_startauthsession", "-S", "s.ctx")
        run("tpm2_policyauthorize", "-S", "s.ctx", "-i", "pcr.pol", "-q", "ref.bin", "-n", "key.name",
            "-L", "auth.pol")
        run("tpm2_policynv", "-S", "s.ctx", "-i", "bound.bin", hex(e.counter_index), "ule", "-L", f"b{s}.pol")
        run("tpm2_flushcontext", "s.ctx")
        branches.append(f"b{s}.pol")
        assert (tmp_path / f"b{s}.pol").read_bytes() == branch_digests(
            bytes.fromhex(e.key_name), bytes.fromhex(e.counter_name), e.c0, e.f0, e.window, e.scope)[s - e.f0]

    # the sealed root: PolicyOR over the four branches (continuing from the last branch's session)
    (tmp_path / "ref.bin").write_bytes(_ref(e.max_svn))
    run("tpm2_startauthsession", "-S", "s.ctx")
    run("tpm2_policyauthorize", "-S", "s.ctx", "-i", "pcr.pol", "-q", "ref.bin", "-n", "key.name")
    run("tpm2_policynv", "-S", "s.ctx", "-i", "bound.bin", hex(e.counter_index), "ule")
    run("tpm2_policyor", "-S", "s.ctx", "-L", "root.pol", "sha256:" + ",".join(branches))
    run("tpm2_flushcontext", "s.ctx")
    assert (tmp_path / "root.pol").read_bytes().hex() == e.policy


def test_tpm2_tools_key_name_versus_pcrtool(swtpm, tmp_path):
    """tpm2_loadexternal with systemd's attributes gives the Name pcrtool binds policies to."""
    need_tool("tpm2_loadexternal")
    from pcrtool.policy import digests as D

    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    run = _tools(swtpm, tmp_path)
    run("tpm2_loadexternal", "-C", "o", "-G", "rsa", "-u", "pub.pem", "-a", "decrypt|sign|userwithauth",
        "-c", "k.ctx", "-n", "k.name")
    assert (tmp_path / "k.name").read_bytes() == D.public_key_name(KEY.public_key())
