"""The unlock/downgrade validation matrix on a real swtpm (``pcrtool validate``).

For every scenario the swtpm is rebooted, the release's measurements are extended (boot
emulation) and unlock is attempted *through the TPM* (pcrtool's own early refusal is bypassed),
so every "deny" cell records the TPM's return code, not pcrtool's opinion.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

from pcrtool.errors import PcrtoolError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import digests
from pcrtool.policy.approvals import (SVN_MAX, ApprovalEntry, Approvals, ApprovalTarget, Sign, build_entries,
                                      sign_entries)
from pcrtool.policy.releases_file import Measurement, PolicyRelease
from pcrtool.tpm import enroll, enrollment_file
from pcrtool.tpm.enrollment_file import Enrollment
from pcrtool.tpm import nv
from pcrtool.tpm import policy_session
from pcrtool.tpm.rc import rc_name

ALLOW, DENY, NA = "allow", "deny", "n/a"
SECRET_SIZE = 32


@dataclass
class Cell:
    scenario: str
    release: str
    expected: str
    actual: str = ""
    rc: str = ""
    detail: str = ""
    commands: int = 0

    @property
    def ok(self) -> bool:
        return self.expected == NA or self.expected == self.actual

    def to_json(self) -> dict:
        return {"scenario": self.scenario, "release": self.release, "expected": self.expected,
                "actual": self.actual, "ok": self.ok, "tpm_rc": self.rc or None,
                "detail": self.detail, "tpm_commands": self.commands or None}


@dataclass
class Matrix:
    mode: str
    cells: list[Cell] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cells)

    def to_json(self) -> dict:
        return {"mode": self.mode, "ok": self.ok, "cells": [c.to_json() for c in self.cells]}


def _measure(sw, release_measurements: Sequence[Measurement], bank: HashAlg) -> None:
    """Reboot the swtpm (PCRs reset) and extend a boot's measurements."""
    sw.reboot()
    with policy_session.open_esys(sw.tcti) as esys:
        for m in release_measurements:
            values = PcrValues()
            for alg, digest in m.digests.items():
                values.set(alg, m.pcr, digest)
            try:
                policy_session.extend_pcrs(esys, values)
            except PcrtoolError:
                # a bank the swtpm does not have active: extend only the policy bank
                if bank in m.digests:
                    only = PcrValues()
                    only.set(bank, m.pcr, m.digests[bank])
                    policy_session.extend_pcrs(esys, only)


def tampered(measurements: Sequence[Measurement]) -> tuple[Measurement, ...]:
    """The same boot with the last component's digest changed (one flipped bit)."""
    if not measurements:
        return ()
    last = measurements[-1]
    changed = {alg: bytes([d[0] ^ 1]) + d[1:] for alg, d in last.digests.items()}
    return tuple(measurements[:-1]) + (Measurement(last.pcr, changed),)


def unknown_boot(pcrs: Sequence[int], banks: Sequence[HashAlg]) -> tuple[Measurement, ...]:
    return tuple(Measurement(p, {b: b.digest(b"pcrtool-unknown-release-%d" % p) for b in banks}) for p in pcrs)


def _attempt(cell: Cell, expect_secret: bytes, fn: Callable[[], enroll.UnlockResult]) -> Cell:
    try:
        result = fn()
    except PcrtoolError as e:
        cell.actual = DENY
        rc = getattr(e, "rc", None) or getattr(e, "tpm_rc", None)
        cell.rc = f"{rc:#x} {rc_name(rc)}" if rc else ""
        cell.detail = e.message
        return cell
    if result.secret == expect_secret:
        cell.actual, cell.commands = ALLOW, len(result.commands)
        # unlock does not read the counter (one TPM command less): floor is -1 then, not shown
        floor = f" (floor {result.floor})" if result.floor >= 0 else ""
        cell.detail = (f"unsealed with svn {result.svn}{floor}" if result.svn >= 0
                       else "unsealed") + f"; {len(result.commands)} TPM commands"
    else:
        cell.actual, cell.detail = "wrong-secret", "unsealed data differs from the enrolled secret"
    return cell


@dataclass
class SignedSetup:
    releases: list[PolicyRelease]
    approvals: Approvals
    public_key: object
    private_key: object | None = None  # lets validation sign extra scenarios (beyond window)
    bank: HashAlg = HashAlg.SHA256
    pcrs: tuple[int, ...] = (11,)
    counter_index: int = enrollment_file.DEFAULT_COUNTER_INDEX


def _sign_with(private_key) -> Sign:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if isinstance(private_key, rsa.RSAPrivateKey):
        return lambda tbs: private_key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return lambda tbs: private_key.sign(tbs, ec.ECDSA(hashes.SHA256()))


def run_signed_matrix(setup: SignedSetup, *, swtpm_factory=None, progress=None) -> Matrix:
    """Every scenario of the signed (downgrade-protected) mode on one fresh swtpm."""
    from pcrtool.swtpm import Swtpm

    bank, pcrs = setup.bank, setup.pcrs
    allowed = sorted((r for r in setup.releases if r.allowed), key=lambda r: r.svn)
    not_allowed = [r for r in setup.releases if not r.allowed]
    if not allowed:
        raise UsageError("no allowlisted release to validate", hint="mark at least one release allowed")
    for r in allowed:
        if not r.measurements:
            raise UsageError(f"release {r.label} has no measurements: its boot cannot be emulated",
                             hint="add \"measurements\" (the events to extend) to the releases file")
    lo, hi = allowed[0].svn, allowed[-1].svn
    newest = allowed[-1]
    older = [r for r in allowed if r.svn < hi]
    secret = os.urandom(SECRET_SIZE)
    matrix = Matrix("signed")
    pkfp = digests.public_key_fingerprint(setup.public_key)

    def note(cell: Cell) -> Cell:
        matrix.cells.append(cell)
        if progress:
            progress(cell)
        return cell

    def entry_for(release: PolicyRelease, approvals: Approvals = setup.approvals) -> ApprovalEntry | None:
        hits = approvals.find(bank, pcrs, pkfp, digests.policy_pcr(release.selected(bank, pcrs)))
        return hits[0] if hits else None

    # extra releases signed here when the private key is at hand
    beyond = None
    if setup.private_key is not None:
        meas = unknown_boot(pcrs, [bank])
        beyond_values = PolicyRelease("beyond-window", "", hi + 1, meas, _replay(meas)).selected(bank, pcrs)
        entries = sign_entries(build_entries([ApprovalTarget(beyond_values, hi + 1)], setup.public_key,
                                             [bank]), _sign_with(setup.private_key))
        beyond = (PolicyRelease("beyond-window", "", hi + 1, meas, _replay(meas)),
                  Approvals(tuple(entries)))

    with (swtpm_factory or Swtpm.start)() as sw:
        enrollment = enroll.enroll(sw.tcti, setup.public_key, floor=lo, window=hi - lo, bank=bank,
                                   pcrs=pcrs, secret=secret, counter_index=setup.counter_index)

        def unlock_cell(scenario, release_label, expected, measurements, approvals=setup.approvals,
                        enrollment_=None, **kw) -> Cell:
            _measure(sw, measurements, bank)
            cell = Cell(scenario, release_label, expected)
            return note(_attempt(cell, secret, lambda: enroll.unlock(
                sw.tcti, enrollment_ or enrollment, approvals, attempt_anyway=True, **kw)))

        # 1. every allowlisted release unlocks
        for r in allowed:
            unlock_cell("allowlisted release", r.label, ALLOW, r.measurements)
        # saved before the floor moves: a ticket and a copy of the sealed object
        saved_ticket = None
        old = older[0] if older else None
        if old is not None and entry_for(old) is not None:
            saved_ticket = _ticket(sw, enrollment, entry_for(old))
        saved_blob = enrollment.blob_bytes

        # 2. unknown / not allowlisted / tampered / other key
        unlock_cell("unknown release (no approval)", "unknown", DENY, unknown_boot(pcrs, [bank]))
        for r in not_allowed:
            unlock_cell("release not on the allowlist", r.label, DENY, r.measurements)
        unlock_cell("tampered component", f"{newest.label} (last digest changed)", DENY,
                    tampered(newest.measurements))
        other = _other_key_entry(newest, setup, bank, pcrs)
        unlock_cell("approval signed by another key", newest.label, DENY, newest.measurements,
                    entry_override=other)

        # 3. advance the floor to the newest svn, with a crash between increments
        if older:
            with policy_session.open_esys(sw.tcti) as esys:
                nv.increment_counter(esys, nv.open_nv(esys, setup.counter_index))
            sw.reset_unclean()
            with policy_session.open_esys(sw.tcti) as esys:
                floor_now = enrollment.floor(nv.read_counter(esys, nv.open_nv(esys, setup.counter_index)))
            c = Cell("unclean reset between increments: floor kept", f"floor {floor_now}", ALLOW)
            c.actual = ALLOW if floor_now == lo + 1 else DENY
            c.detail = f"counter survived power loss: floor {floor_now} (expected {lo + 1})"
            note(c)
            for r in older:
                if r.svn < floor_now:
                    unlock_cell("revoked after crash between increments", r.label, DENY, r.measurements)
            unlock_cell("newest release after crash between increments", newest.label, ALLOW,
                        newest.measurements)
            enroll.advance_floor(sw.tcti, enrollment, hi)
            for r in older:
                unlock_cell("below floor after advance (own approval replayed)", r.label, DENY, r.measurements)
            unlock_cell("newest release after floor advance", newest.label, ALLOW, newest.measurements)
            old_entry = entry_for(older[0])
            if old_entry is not None:
                unlock_cell("old approval presented on the newest boot", newest.label, DENY,
                            newest.measurements, entry_override=old_entry)
            if saved_ticket is not None:
                unlock_cell("saved VerifySignature ticket after floor moved", old.label, DENY,
                            old.measurements, ticket=saved_ticket, entry_override=entry_for(old))
            unlock_cell("copied sealed object after floor moved", older[0].label, DENY,
                        older[0].measurements, blob=saved_blob)
        else:
            note(Cell("downgrade cells", "only one svn in the allowlist", NA, NA,
                      detail="needs two allowlisted releases with different svn"))

        # 4. beyond the window, then a widening re-seal that keeps c0/f0
        if beyond is not None:
            rel, apps = beyond
            unlock_cell("svn beyond the enrolled window", f"svn {rel.svn}", DENY, rel.measurements, apps)
            _measure(sw, newest.measurements, bank)
            current = enroll.unlock(sw.tcti, enrollment, setup.approvals)
            widened = enroll.enroll(sw.tcti, setup.public_key, floor=None,
                                    window=enrollment.window + 1, bank=bank, pcrs=pcrs,
                                    secret=current.secret, counter_index=setup.counter_index,
                                    reuse=enrollment)
            unlock_cell("widened window (re-seal, same c0/f0)", f"svn {rel.svn}", ALLOW,
                        rel.measurements, apps, enrollment_=widened)
            if older:
                unlock_cell("revoked release against the re-sealed object", older[0].label, DENY,
                            older[0].measurements, enrollment_=widened)
        else:
            note(Cell("svn beyond the enrolled window", "-", NA, NA,
                      detail="needs the private key (--key) to sign a release above the window"))

        # 4b. attack classes of issue 13, each refused by the TPM
        if setup.private_key is not None and older:
            _attack_cells(sw, setup, enrollment, newest, older[0], unlock_cell, note)
        else:
            note(Cell("attack classes (scope, re-enrolment, forged approval)", "-", NA, NA,
                      detail="needs the private key (--key) and two svns"))

        # 5. crash during enrolment (fresh counter): still works, revoked still denied
        index2 = setup.counter_index + 1
        with policy_session.open_esys(sw.tcti) as esys:
            enroll.ensure_counter(esys, index2)
        sw.reset_unclean()
        # the re-run finds a written counter whose floor it cannot know: it must say what it accepts
        enrollment2 = enroll.enroll(sw.tcti, setup.public_key, floor=hi, window=0, bank=bank, pcrs=pcrs,
                                    secret=secret, counter_index=index2, revive=(hi, SVN_MAX))
        unlock_cell("unclean reset during enrolment, re-run", newest.label, ALLOW, newest.measurements,
                    enrollment_=enrollment2)
        for r in older[:1]:
            unlock_cell("unclean reset during enrolment: revoked release", r.label, DENY,
                        r.measurements, enrollment_=enrollment2)

        # 6. the owner deletes and re-defines the counter: no revival of revoked releases
        if older:
            with policy_session.open_esys(sw.tcti) as esys:
                nv.undefine_nv(esys, nv.open_nv(esys, setup.counter_index))
                h = nv.define_counter(esys, setup.counter_index)
                nv.increment_counter(esys, h)
            for r in older[:1]:
                unlock_cell("counter deleted and re-defined (no revival)", r.label, DENY, r.measurements)
            # … or replaced by an ordinary index holding 0 (the Name changes: every branch fails)
            with policy_session.open_esys(sw.tcti) as esys:
                nv.undefine_nv(esys, nv.open_nv(esys, setup.counter_index))
                _define_fake_counter(esys, setup.counter_index)
            for r in older[:1]:
                unlock_cell("counter replaced by an ordinary index holding 0", r.label, DENY, r.measurements)

        # 7. an owner password is set: enrolment takes it, unlock does not need it, and the counter
        # no longer moves without it
        owner = os.urandom(16).hex().encode()
        with policy_session.open_esys(sw.tcti) as esys:
            from tpm2_pytss.constants import ESYS_TR
            esys.hierarchy_change_auth(ESYS_TR.OWNER, owner)
        _measure(sw, newest.measurements, bank)
        owned = enroll.enroll(sw.tcti, setup.public_key, floor=hi, window=0, bank=bank, pcrs=pcrs, secret=secret,
                              counter_index=setup.counter_index + 2, owner_auth=owner)
        unlock_cell("owner password set: unlock without it", newest.label, ALLOW, newest.measurements,
                    enrollment_=owned)
        c = Cell("owner password set: counter increment without it", "-", DENY)
        with policy_session.open_esys(sw.tcti) as esys:
            try:
                nv.increment_counter(esys, nv.open_nv(esys, owned.counter_index))
                c.actual, c.detail = ALLOW, "the counter moved"
            except PcrtoolError as err:
                rc = getattr(err, "rc", None)
                c.actual, c.detail, c.rc = DENY, err.message, f"{rc:#x} {rc_name(rc)}" if rc else ""
        note(c)
    return matrix


def _attack_cells(sw, setup: SignedSetup, enrollment: Enrollment, newest: PolicyRelease, old: PolicyRelease,
                  unlock_cell, note) -> None:
    """One cell per attack class; every deny is the TPM's (return code recorded)."""
    bank, pcrs = setup.bank, setup.pcrs
    sign = _sign_with(setup.private_key)

    def live(b: HashAlg, sel) -> PcrValues:
        with policy_session.open_esys(sw.tcti) as esys:
            return policy_session.read_pcrs(esys, b, sel)

    def signed(values: PcrValues, svn: int, product: str = "") -> Approvals:
        return Approvals(tuple(sign_entries(build_entries([ApprovalTarget(values, svn)], setup.public_key,
                                                          product=product), sign)))

    _measure(sw, newest.measurements, bank)
    other_product = signed(live(bank, pcrs), newest.svn, "pcrtool-validate-other-product")
    unlock_cell("attack: approval signed for another product", newest.label, DENY, newest.measurements,
                other_product, entry_override=other_product.entries[0])
    wider = tuple(sorted(set(pcrs) | {23 if 23 not in pcrs else 22}))
    _measure(sw, newest.measurements, bank)
    wide = signed(live(bank, wider), newest.svn)
    unlock_cell("attack: enrollment PCR selection edited to match another approval", newest.label, DENY,
                newest.measurements, wide, enrollment_=replace(enrollment, pcrs=wider))
    other_bank = HashAlg.SHA1 if bank != HashAlg.SHA1 else HashAlg.SHA256
    _measure(sw, newest.measurements, bank)
    try:
        banked = signed(live(other_bank, pcrs), newest.svn)
    except PcrtoolError:
        banked = None
    if banked is not None:
        unlock_cell("attack: enrollment bank edited to match another bank's approval", newest.label, DENY,
                    newest.measurements, banked, enrollment_=replace(enrollment, bank=other_bank.bank_name))
    real = entry_of(setup, old, bank, pcrs)
    if real is not None:
        forged = ApprovalEntry(real.bank, real.pcrs, real.pkfp, real.pol, real.sig,
                               enrollment.scope.ref(newest.svn))
        unlock_cell("attack: forged approval (svn raised, old signature)", old.label, DENY, old.measurements,
                    entry_override=forged)
    # re-enrolment keeps the floor: the revoked release stays revoked under the new object
    _measure(sw, newest.measurements, bank)
    again = enroll.enroll(sw.tcti, setup.public_key, floor=None, window=enrollment.window, bank=bank, pcrs=pcrs,
                          secret=enroll.unlock(sw.tcti, enrollment, setup.approvals).secret, reuse=enrollment)
    unlock_cell("attack: revoked release after a re-enrolment (--previous)", old.label, DENY, old.measurements,
                enrollment_=again)
    c = Cell("attack: counter increment with its own empty auth", "-", DENY)
    with policy_session.open_esys(sw.tcti) as esys:
        h = nv.open_nv(esys, enrollment.counter_index)
        try:
            nv.increment_nv(esys, h)   # authorized with the index's own (empty) auth: no AUTHWRITE
            c.actual, c.detail = ALLOW, "the counter moved"
        except PcrtoolError as err:
            c.actual, c.detail = DENY, err.message
            rc = getattr(err, "rc", None)
            c.rc = f"{rc:#x} {rc_name(rc)}" if rc else ""
    note(c)


def entry_of(setup: SignedSetup, release: PolicyRelease, bank, pcrs) -> ApprovalEntry | None:
    hits = setup.approvals.find(bank, pcrs, digests.public_key_fingerprint(setup.public_key),
                                digests.policy_pcr(release.selected(bank, pcrs)))
    return hits[0] if hits else None


def _replay(measurements):
    from pcrtool.policy.releases_file import replay_measurements
    return replay_measurements(measurements)


def _ticket(sw, enrollment: Enrollment, entry: ApprovalEntry):
    """A VerifySignature ticket for ``entry`` obtained now, to be replayed later."""
    tpmt = digests.public_key_tpmt(enrollment.public_key())
    with policy_session.open_esys(sw.tcti) as esys:
        key = policy_session.load_external_key(esys, tpmt)
        try:
            return policy_session.verify_signature(esys, key, entry.tbs, entry.sig,
                                                   enrollment.public_key())
        finally:
            policy_session.flush(esys, key)


def _other_key_entry(release: PolicyRelease, setup: SignedSetup, bank, pcrs) -> ApprovalEntry:
    """The same approval (same pol, same svn) signed by a freshly generated key, presented with
    the enrolled key's fingerprint: the TPM's VerifySignature must reject it."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if digests.is_rsa_key(setup.public_key):  # a key of the same kind: the TPM's ECDSA/RSASSA check refuses it
        other = rsa.generate_private_key(public_exponent=65537, key_size=setup.public_key.key_size)
    else:
        other = ec.generate_private_key(setup.public_key.curve)
    entries = build_entries([ApprovalTarget(release.selected(bank, pcrs), release.svn)],
                            setup.public_key, [bank])
    signed = sign_entries(entries, _sign_with(other))
    return signed[0]


def _define_fake_counter(esys, index: int) -> None:
    from tpm2_pytss.constants import ESYS_TR

    attrs = int(digests.TPMA_NV.OWNERWRITE | digests.TPMA_NV.OWNERREAD | digests.TPMA_NV.AUTHREAD | digests.TPMA_NV.NO_DA)
    h = nv.define_nv(esys, index, digests.COUNTER_SIZE, attrs)
    nv.write_nv(esys, h, bytes(8), auth_handle=ESYS_TR.OWNER)
