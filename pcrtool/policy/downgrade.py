"""Downgrade protection maths (ARCHITECTURE.md "Downgrade protection"), pure.

The device floor is ``f0 + counter − c0``; a release with security version s may unlock while
``counter ≤ c0 + s − f0``. The sealed object's authPolicy is a PolicyOR tree over one branch per
svn in f0…f0+window: ``PolicyAuthorize(K, SHA256("pcrtool-svn=s")) → PolicyNV(counter ≤ bound)``.
"""

from __future__ import annotations

from pcrtool.policy import digests as D
from pcrtool.policy.approvals import policy_ref_bytes, svn_ref


def floor_of(c0: int, f0: int, counter: int) -> int:
    return f0 + counter - c0


def branch_digests(key_name: bytes, counter_name: bytes, c0: int, f0: int, window: int) -> list[bytes]:
    """Leaves of the enrolment tree: one per svn f0…f0+window."""
    return [D.svn_branch(key_name, policy_ref_bytes(svn_ref(s)), counter_name, D.counter_bound(c0, f0, s))
            for s in range(f0, f0 + window + 1)]


def enrolment_tree(key_name: bytes, counter_name: bytes, c0: int, f0: int, window: int) -> D.PolicyOrTree:
    return D.PolicyOrTree.build(branch_digests(key_name, counter_name, c0, f0, window))
