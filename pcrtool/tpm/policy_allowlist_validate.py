"""The allowlist-mode validation matrix on a real swtpm (direct sealing with an epoch counter)."""

from __future__ import annotations

import os
from typing import Sequence

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg
from pcrtool.policy.releases_file import PolicyRelease
from pcrtool.tpm import policy_allowlist
from pcrtool.tpm import nv
from pcrtool.tpm import policy_session
from pcrtool.tpm.policy_validate import (ALLOW, DENY, NA, Cell, Matrix, _attempt, _measure,
                                         tampered, unknown_boot)


def run_allowlist_matrix(releases: Sequence[PolicyRelease], bank: HashAlg, pcrs: tuple[int, ...],
                         *, progress=None) -> Matrix:
    from pcrtool.swtpm import Swtpm

    allowed = sorted((r for r in releases if r.allowed), key=lambda r: r.svn)
    not_allowed = [r for r in releases if not r.allowed]
    if not allowed:
        raise UsageError("no allowlisted release to validate")
    for r in allowed:
        if not r.measurements:
            raise UsageError(f"release {r.label} has no measurements: its boot cannot be emulated")
    newest, oldest = allowed[-1], allowed[0]
    secret = os.urandom(32)
    matrix = Matrix("allowlist")

    def note(cell):
        matrix.cells.append(cell)
        if progress:
            progress(cell)

    tuples = [(r.label, r.selected(bank, pcrs)) for r in allowed]
    revoked = [(r.label, r.selected(bank, pcrs)) for r in allowed if r is not oldest] if len(allowed) > 1 else None

    with Swtpm.start() as sw:
        def cell(mode, scenario, rel_label, expected, measurements, enrollment, **kw):
            _measure(sw, measurements, bank)
            c = Cell(f"[{mode}] {scenario}", rel_label, expected)
            note(_attempt(c, secret, lambda: policy_allowlist.unlock_allowlist(sw.tcti, enrollment, attempt_anyway=True, **kw)))

        mode = "direct"
        e = policy_allowlist.enroll_allowlist(sw.tcti, tuples, bank=bank, pcrs=pcrs, secret=secret)
        for r in allowed:
            cell(mode, "allowlisted release", r.label, ALLOW, r.measurements, e)
        cell(mode, "unknown release", "unknown", DENY, unknown_boot(pcrs, [bank]), e)
        for r in not_allowed:
            cell(mode, "release not on the allowlist", r.label, DENY, r.measurements, e)
        cell(mode, "tampered component", newest.label, DENY, tampered(newest.measurements), e)
        if revoked is None:
            note(Cell(f"[{mode}] revocation cells", "one release only", NA, NA))
            return matrix
        old_blob = e.blob_bytes
        # crash after the new object is sealed and stored, before the epoch increment
        saved = []
        _measure(sw, newest.measurements, bank)
        secret_now = policy_allowlist.unlock_allowlist(sw.tcti, e).secret
        try:
            policy_allowlist.enroll_allowlist(sw.tcti, revoked, bank=bank, pcrs=pcrs, secret=secret_now,
                                              index=e.index, pinned_srk=e.pinned_srk, commit=_crash(saved))
        except _Crash:
            pass
        sw.reset_unclean()
        cell(mode, "crash before the epoch increment: new object unlocks", newest.label, ALLOW,
             newest.measurements, saved[0])
        e2 = policy_allowlist.enroll_allowlist(sw.tcti, revoked, bank=bank, pcrs=pcrs, secret=secret, index=e.index,
                                               pinned_srk=e.pinned_srk)
        cell(mode, "revoked release after re-seal", oldest.label, DENY, oldest.measurements, e2)
        cell(mode, "newest release after re-seal", newest.label, ALLOW, newest.measurements, e2)
        cell(mode, "copied old sealed object (old allowlist)", oldest.label, DENY,
             oldest.measurements, e, blob=old_blob)
        with policy_session.open_esys(sw.tcti) as esys:
            nv.undefine_nv(esys, nv.open_nv(esys, e.index))
            h = nv.define_counter(esys, e.index)
            nv.increment_counter(esys, h)
        cell(mode, "epoch counter deleted and re-defined (no revival)", oldest.label, DENY,
             oldest.measurements, e, blob=old_blob)
    return matrix


class _Crash(Exception):
    pass


def _crash(saved: list):
    """A commit that stores the enrollment and then "loses power" before the epoch increment."""
    def commit(e):
        saved.append(e)
        raise _Crash()
    return commit
