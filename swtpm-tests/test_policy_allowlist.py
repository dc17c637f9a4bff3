"""Allowlist mode on real swtpm: every matrix cell (epoch counter; the nv mode was removed), and PolicyOR trees of
1, 8, 9, 64 and 1,000 whole-release tuples (allow for members, deny for others; the TPM's own
trial-session digest equals pcrtool's tree root)."""

import hashlib

import pytest

from tests.policy.helpers_policy import need_module, need_tool, releases_json  # noqa: E402

ALLOWLIST_CELLS = [
    (f"[direct] {s}", e) for s, e in [
        ("allowlisted release", "allow"), ("unknown release", "deny"),
        ("release not on the allowlist", "deny"), ("tampered component", "deny")]
] + [
    ("[direct] crash before the epoch increment: new object unlocks", "allow"),
    ("[direct] revoked release after re-seal", "deny"),
    ("[direct] newest release after re-seal", "allow"),
    ("[direct] copied old sealed object (old allowlist)", "deny"),
    ("[direct] epoch counter deleted and re-defined (no revival)", "deny"),
]


@pytest.fixture(scope="module")
def matrix():
    need_module("tpm2_pytss")
    need_tool("swtpm")
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import parse_releases
    from pcrtool.tpm.policy_allowlist_validate import run_allowlist_matrix

    releases, _ = parse_releases(releases_json(svns=(1, 2, 3), pcrs=(7, 11)))
    return run_allowlist_matrix(releases, HashAlg.SHA256, (7, 11))


@pytest.mark.parametrize("scenario,expected", ALLOWLIST_CELLS, ids=[c[0] for c in ALLOWLIST_CELLS])
def test_allowlist_matrix_cell(matrix, scenario, expected):
    cells = [c for c in matrix.cells if c.scenario == scenario]
    assert cells, f"scenario {scenario!r} was not run"
    for c in cells:
        assert c.actual == expected, f"{c.release}: {c.detail}"
        if expected == "deny":
            assert c.rc


def test_allowlist_matrix_has_no_unexpected_cells(matrix):
    assert {c.scenario for c in matrix.cells} == {s for s, _ in ALLOWLIST_CELLS}
    assert matrix.ok


def _release_values(n: int, tag: str):
    """n releases whose PCR 7 and 11 each got one distinct measurement."""
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import Measurement, PolicyRelease, replay_measurements

    out = []
    for i in range(n):
        meas = (Measurement(7, {HashAlg.SHA256: hashlib.sha256(f"{tag}-sb-{i % 3}".encode()).digest()}),
                Measurement(11, {HashAlg.SHA256: hashlib.sha256(f"{tag}-uki-{i}".encode()).digest()}))
        out.append(PolicyRelease(f"r{i}", "", i, meas, replay_measurements(meas)))
    return out


@pytest.mark.parametrize("n", [1, 8, 9, 64, 1000])
def test_or_tree_of_n_releases_on_swtpm(swtpm, n):
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused, TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.policy import digests as D
    from pcrtool.tpm import policy_allowlist as P
    from pcrtool.tpm import policy_session as S
    from pcrtool.tpm.policy_validate import _measure, unknown_boot

    bank, pcrs = HashAlg.SHA256, (7, 11)
    releases = _release_values(n, f"t{n}")
    tuples = [(r.label, r.selected(bank, pcrs)) for r in releases]
    e = P.enroll_allowlist(swtpm.tcti, tuples, bank=bank, pcrs=pcrs, secret=b"k" * 32)
    tree = e.tree()
    assert len(tree.leaves) == n
    for i in sorted({0, n // 2, n - 1}):
        _measure(swtpm, releases[i].measurements, bank)
        result = P.unlock_allowlist(swtpm.tcti, e)
        assert result.secret == b"k" * 32
        # TPM trial session: PolicyPCR with the release's digest, then the tree path → the root
        with S.open_esys(swtpm.tcti) as esys:
            sess = S.start_trial_session(esys)
            sel = S.pcr_selection(bank, pcrs)
            esys.policy_pcr(sess, D.pcr_digest(releases[i].selected(bank, pcrs)), sel)
            S.policy_or_path(esys, sess, tree.path(i))
            assert S.policy_digest(esys, sess) == tree.root
            S.flush(esys, sess)
    # a tuple mixing two allowlisted releases' PCRs (7 of one, 11 of another) is not allowlisted
    if n >= 2:
        mixed = (releases[0].measurements[0], releases[1].measurements[1])
        if releases[0].measurements[0].digests != releases[1].measurements[0].digests:
            _measure(swtpm, mixed, bank)
            with pytest.raises((PolicyRefused, TpmPolicyFailed)):
                P.unlock_allowlist(swtpm.tcti, e, attempt_anyway=True)
    _measure(swtpm, unknown_boot(pcrs, [bank]), bank)
    with pytest.raises(TpmPolicyFailed):
        P.unlock_allowlist(swtpm.tcti, e, attempt_anyway=True)
    with pytest.raises(PolicyRefused):
        P.unlock_allowlist(swtpm.tcti, e)
