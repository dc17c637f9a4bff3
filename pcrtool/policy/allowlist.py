"""Allowlist-mode policies (pcrlock-like, no signing key on the device), pure maths.

Each allowlisted release contributes ONE PolicyPCR leaf over its whole selected PCR tuple (all
PCRs together, so "kernel A only with cmdline A" holds — unlike pcrlock's per-PCR ORs), and a
PolicyOR tree of any size joins them. Two ways to bind a secret:

- **direct**: authPolicy = tree root → PolicyNV(epoch counter ≤ c_seal). Changing the allowlist
  means increment the counter and re-seal; every older blob dies with the increment.
- **nv**: authPolicy = PolicyAuthorizeNV(index). The index (ordinary, 34 bytes: TPMT_HA of the
  tree root) may be rewritten only through PolicySigned with an HMAC update key, so an owner who
  deletes and re-defines it cannot write it (same Name, but no key) and a re-definition with other
  attributes has another Name. Revocation rewrites the index; no re-seal.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import digests as D

NV_POLICY_SIZE = 34  # TPMT_HA: u16 hashAlg + 32-byte digest
NV_POLICY_ATTRIBUTES = (D.TPMA_NV.POLICYWRITE | D.TPMA_NV.WRITEALL | D.TPMA_NV.AUTHREAD
                        | D.TPMA_NV.NO_DA)


@dataclass(frozen=True, slots=True)
class AllowlistPolicy:
    """Leaves (one per distinct release tuple), the OR tree and each release's leaf index."""

    leaves: tuple[bytes, ...]
    tree: D.PolicyOrTree
    leaf_of: dict  # release label -> leaf index

    @property
    def root(self) -> bytes:
        return self.tree.root

    def index_of_digest(self, policy_pcr_digest: bytes) -> int | None:
        try:
            return self.leaves.index(policy_pcr_digest)
        except ValueError:
            return None


def build_allowlist_policy(tuples: Sequence[tuple[str, PcrValues]]) -> AllowlistPolicy:
    """One PolicyPCR leaf per distinct whole-release tuple, joined by a PolicyOR tree."""
    if not tuples:
        raise UsageError("the allowlist is empty", hint="allow at least one release")
    leaves: list[bytes] = []
    index: dict[bytes, int] = {}
    leaf_of: dict[str, int] = {}
    for label, values in tuples:
        leaf = D.policy_pcr(values)
        if leaf not in index:
            index[leaf] = len(leaves)
            leaves.append(leaf)
        leaf_of[label] = index[leaf]
    return AllowlistPolicy(tuple(leaves), D.PolicyOrTree.build(leaves), leaf_of)


def direct_policy(root: bytes, counter_name: bytes, epoch_bound: int) -> bytes:
    """Sealed authPolicy of the direct mode: root → PolicyNV(counter ≤ epoch_bound)."""
    return D.policy_nv(counter_name, struct.pack(">Q", epoch_bound), D.TPM_EO.UNSIGNED_LE, prev=root)


def nv_index_policy(hmac_key_name: bytes) -> bytes:
    """authPolicy of the allowlist NV index: writes need PolicySigned by the HMAC update key."""
    return D.policy_signed(hmac_key_name)


def nv_index_name(index: int, hmac_key_name: bytes) -> bytes:
    return D.nv_name(index, NV_POLICY_ATTRIBUTES, NV_POLICY_SIZE, auth_policy=nv_index_policy(hmac_key_name))


def nv_contents(root: bytes) -> bytes:
    """TPMT_HA(sha256, root): what PolicyAuthorizeNV compares the session digest with."""
    return struct.pack(">H", int(HashAlg.SHA256)) + root


def nv_sealed_policy(index: int, hmac_key_name: bytes) -> bytes:
    return D.policy_authorize_nv(nv_index_name(index, hmac_key_name))
