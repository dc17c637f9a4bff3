"""The allowlist-mode validation matrix on a real swtpm (direct sealing and NV index modes)."""

from __future__ import annotations

import os
from typing import Sequence

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import allowlist as AL
from pcrtool.policy.releases import PolicyRelease
from pcrtool.tpm import policy_allowlist as P
from pcrtool.tpm import policy_session as S
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
    update_key = os.urandom(32)
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
            note(_attempt(c, secret, lambda: P.unlock_allowlist(sw.tcti, enrollment, attempt_anyway=True, **kw)))

        for mode in ("direct", "nv"):
            e = P.enroll_allowlist(sw.tcti, tuples, bank=bank, pcrs=pcrs, secret=secret, mode=mode,
                                   update_key=update_key)
            for r in allowed:
                cell(mode, "allowlisted release", r.label, ALLOW, r.measurements, e)
            cell(mode, "unknown release", "unknown", DENY, unknown_boot(pcrs, [bank]), e)
            for r in not_allowed:
                cell(mode, "release not on the allowlist", r.label, DENY, r.measurements, e)
            cell(mode, "tampered component", newest.label, DENY, tampered(newest.measurements), e)
            if revoked is None:
                note(Cell(f"[{mode}] revocation cells", "one release only", NA, NA))
                continue
            if mode == "direct":
                old_blob = e.blob_bytes
                # crash between the epoch increment and the re-seal
                with S.open_esys(sw.tcti) as esys:
                    h = S.nv_handle(esys, e.index)
                    S.nv_increment(esys, h)
                sw.reset_unclean()
                cell(mode, "crash during re-seal: old object dead", oldest.label, DENY,
                     oldest.measurements, e)
                e2 = P.enroll_allowlist(sw.tcti, revoked, bank=bank, pcrs=pcrs, secret=secret,
                                        mode=mode)
                cell(mode, "revoked release after re-seal", oldest.label, DENY, oldest.measurements, e2)
                cell(mode, "newest release after re-seal", newest.label, ALLOW, newest.measurements, e2)
                cell(mode, "copied old sealed object (old allowlist)", oldest.label, DENY,
                     oldest.measurements, e, blob=old_blob)
                with S.open_esys(sw.tcti) as esys:
                    S.undefine_nv(esys, S.nv_handle(esys, e.index))
                    h = S.define_counter(esys, e.index)
                    S.nv_increment(esys, h)
                cell(mode, "epoch counter deleted and re-defined (no revival)", oldest.label, DENY,
                     oldest.measurements, e, blob=old_blob)
            else:
                old_meta = e
                new_root = AL.build_allowlist_policy(revoked).root
                P.write_policy_nv(sw.tcti, e.index, update_key, new_root)
                from dataclasses import replace
                e2 = replace(e, leaves=tuple(x.hex() for x in AL.build_allowlist_policy(revoked).leaves))
                cell(mode, "revoked release after NV rewrite", oldest.label, DENY, oldest.measurements, e2)
                cell(mode, "old allowlist metadata replayed after NV rewrite", oldest.label, DENY,
                     oldest.measurements, old_meta)
                cell(mode, "newest release after NV rewrite (no re-seal)", newest.label, ALLOW,
                     newest.measurements, e2)
                c = Cell("[nv] NV rewrite with another update key", "-", DENY)
                try:
                    P.write_policy_nv(sw.tcti, e.index, os.urandom(32),
                                      AL.build_allowlist_policy(tuples).root)
                    c.actual = ALLOW
                except Exception as err:  # noqa: BLE001 - recorded in the matrix
                    c.actual, c.detail = DENY, getattr(err, "message", str(err))
                    rc = getattr(err, "rc", None)
                    c.rc = f"{rc:#x} {S.rc_name(rc)}" if rc else ""
                note(c)
                # owner deletes the index and re-defines it identically: cannot write it (no key)
                with S.open_esys(sw.tcti) as esys:
                    S.undefine_nv(esys, S.nv_handle(esys, e.index))
                    P.define_policy_nv(esys, e.index, bytes.fromhex(e.hmac_key_name))
                cell(mode, "NV index re-defined by the owner (unwritten)", oldest.label, DENY,
                     oldest.measurements, old_meta)
                # … or with owner-writable attributes holding the old allowlist: other Name
                with S.open_esys(sw.tcti) as esys:
                    S.undefine_nv(esys, S.nv_handle(esys, e.index))
                    _define_owner_written(esys, e.index, AL.nv_contents(AL.build_allowlist_policy(tuples).root))
                cell(mode, "NV index forged by the owner with the old allowlist", oldest.label, DENY,
                     oldest.measurements, old_meta)
    return matrix


def _define_owner_written(esys, index: int, data: bytes) -> None:
    from tpm2_pytss import types as T
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    from pcrtool.policy import digests as D

    attrs = int(D.TPMA_NV.OWNERWRITE | D.TPMA_NV.AUTHREAD | D.TPMA_NV.NO_DA)
    pub = T.TPM2B_NV_PUBLIC(T.TPMS_NV_PUBLIC(nvIndex=index, nameAlg=TPM2_ALG.SHA256, attributes=attrs,
                                             dataSize=len(data)))
    h = esys.nv_define_space(None, pub, ESYS_TR.OWNER)
    esys.nv_write(h, data, 0, ESYS_TR.OWNER)
