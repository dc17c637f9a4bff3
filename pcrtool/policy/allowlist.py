"""Allowlist-mode policies (pcrlock-like, no signing key on the device), pure maths.

Each allowlisted release contributes ONE PolicyPCR leaf over its whole selected PCR tuple (all
PCRs together, so "kernel A only with cmdline A" holds — unlike pcrlock's per-PCR ORs), and a
PolicyOR tree of any size joins them. The secret is bound as authPolicy = tree root →
PolicyNV(epoch counter ≤ epoch). Changing the allowlist re-seals under epoch + 1 and then
increments the counter; every older blob dies with the increment. (An ``nv`` mode with
PolicyAuthorizeNV and an HMAC update key existed; it was removed because the update key lived on
the device and crossed the bus in clear — see pcrtool.tpm.policy_allowlist.)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from pcrtool.errors import UsageError
from pcrtool.model import PcrValues
from pcrtool.policy import digests



@dataclass(frozen=True, slots=True)
class AllowlistPolicy:
    """Leaves (one per distinct release tuple), the OR tree and each release's leaf index."""

    leaves: tuple[bytes, ...]
    tree: digests.PolicyOrTree
    leaf_of: dict  # release label -> leaf index

    @property
    def root(self) -> bytes:
        return self.tree.root


def build_allowlist_policy(tuples: Sequence[tuple[str, PcrValues]]) -> AllowlistPolicy:
    """One PolicyPCR leaf per distinct whole-release tuple, joined by a PolicyOR tree."""
    if not tuples:
        raise UsageError("the allowlist is empty", hint="allow at least one release")
    leaves: list[bytes] = []
    index: dict[bytes, int] = {}
    leaf_of: dict[str, int] = {}
    for label, values in tuples:
        leaf = digests.policy_pcr(values)
        if leaf not in index:
            index[leaf] = len(leaves)
            leaves.append(leaf)
        leaf_of[label] = index[leaf]
    return AllowlistPolicy(tuple(leaves), digests.PolicyOrTree.build(leaves), leaf_of)


def direct_policy(root: bytes, counter_name: bytes, epoch_bound: int) -> bytes:
    """Sealed authPolicy of the direct mode: root → PolicyNV(counter ≤ epoch_bound)."""
    return digests.policy_nv(counter_name, struct.pack(">Q", epoch_bound), digests.TPM_EO.UNSIGNED_LE, prev=root)
