"""Property tests: PolicyOR trees of any size replay every leaf to the root with 2…8-branch ORs;
allowlist leaves are whole tuples (dedupe, mixing PCRs of two releases is not a leaf); the signed
enrolment branches bind svn, key, counter and bound."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import digests as D
from pcrtool.policy.allowlist import build_allowlist_policy, direct_policy
from pcrtool.policy.approvals import policy_ref_bytes
from pcrtool.policy.scope import Scope
from pcrtool.policy.downgrade import branch_digests


@settings(deadline=None, max_examples=40)
@given(st.integers(min_value=1, max_value=3000), st.data())
def test_every_leaf_reaches_the_root(n, data):
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree = D.PolicyOrTree.build(leaves)
    for i in data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)):
        path = tree.path(i)
        assert all(2 <= len(g) <= 8 for g in path)
        assert tree.replay(i) == tree.root


@settings(deadline=None, max_examples=30)
@given(st.integers(min_value=2, max_value=200))
def test_a_digest_outside_the_tree_has_no_path(n):
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(n)]
    tree = D.PolicyOrTree.build(leaves)
    outsider = hashlib.sha256(b"outsider").digest()
    digest = outsider
    group = tree.path(0)[0]
    assert digest not in group  # the TPM refuses PolicyOR when the running digest is not listed


def _tuple(a: bytes, b: bytes) -> PcrValues:
    v = PcrValues()
    v.set(HashAlg.SHA256, 7, a)
    v.set(HashAlg.SHA256, 11, b)
    return v


def test_allowlist_binds_whole_tuples_and_dedupes():
    a7, b7, a11, b11 = (hashlib.sha256(x).digest() for x in (b"a7", b"b7", b"a11", b"b11"))
    pol = build_allowlist_policy([("A", _tuple(a7, a11)), ("B", _tuple(b7, b11)), ("A2", _tuple(a7, a11))])
    assert len(pol.leaves) == 2 and pol.leaf_of["A"] == pol.leaf_of["A2"]
    assert D.policy_pcr(_tuple(a7, b11)) not in pol.leaves  # no mixing across releases
    assert pol.leaves.index(D.policy_pcr(_tuple(b7, b11))) == pol.leaf_of["B"]


def test_direct_policy_layout():
    root = hashlib.sha256(b"root").digest()
    name = D.nv_name(0x01805C10, D.COUNTER_ATTRIBUTES, 8)
    assert direct_policy(root, name, 7) == D.policy_nv(name, (7).to_bytes(8, "big"), D.TPM_EO.UNSIGNED_LE, prev=root)


@settings(deadline=None, max_examples=50)
@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 64))
def test_svn_branches_differ_by_svn_and_bound(c0, f0, window):
    key = D.name_of(b"key")
    counter = D.nv_name(0x01805C00, D.COUNTER_ATTRIBUTES, 8)
    scope = Scope(HashAlg.SHA256, (7, 11), "acme")
    branches = branch_digests(key, counter, c0, f0, window, scope)
    assert len(branches) == window + 1 and len(set(branches)) == window + 1
    s = f0 + window
    assert branches[-1] == D.policy_nv(counter, (c0 + window).to_bytes(8, "big"), D.TPM_EO.UNSIGNED_LE,
                                       prev=D.policy_authorize(key, policy_ref_bytes(
                                           f"pcrtool-svn={s},product=acme,bank=sha256,pcrs=7+11")))
    # another scope gives other branches everywhere
    other = branch_digests(key, counter, c0, f0, window, Scope(HashAlg.SHA256, (11,), "acme"))
    assert not set(other) & set(branches)
