"""Downgrade protection maths (ARCHITECTURE.md "Downgrade protection"), pure.

The device floor is ``f0 + counter − c0``; a release with security version s may unlock while
``counter ≤ c0 + s − f0``. The sealed object's authPolicy is a PolicyOR tree over one branch per
svn in f0…f0+window: ``PolicyAuthorize(K, SHA256(ref(s, scope))) → PolicyNV(counter ≤ bound)``,
where ``ref(s, scope)`` (pcrtool.policy.scope) also names the enrolled product, bank and PCR
selection: an approval signed for another scope has another policyRef and matches no branch.

Re-enrolment (``floor_decision``) never lowers the floor silently: the floor comes from the
previous enrolment, whose c0/f0 the TPM has just confirmed by unsealing through them.

The decisions live here, pure and tested without a TPM (tests/policy/test_downgrade.py); the
adapter (pcrtool/tpm/enroll.py) only reads the counter, seals, increments and unseals:
``choose_approval`` (which approval unlock presents), ``floor_of``, ``floor_decision`` and
``parse_revive`` (the floor of a (re-)enrolment), ``enrolment_window`` (--window with --previous
/ --widen), ``check_advance`` (advance-floor's --to against the window and the booted release).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.errors import PolicyRefused, UsageError
from pcrtool.policy import digests
from pcrtool.policy.approvals import ApprovalEntry, policy_ref_bytes
from pcrtool.policy.scope import SVN_MAX, Scope


DEFAULT_WINDOW = 16
MAX_WINDOW = 4096          # svns one enrolment accepts beyond its floor (PolicyOR tree of ≤ 4097 leaves)
REVIVE_ALL = 2 ** 31 - 1   # "every svn from the floor up" in --revive N-REVIVE_ALL


def floor_of(c0: int, f0: int, counter: int) -> int:
    """The device floor: the lowest svn that still unlocks, ``f0 + counter − c0``."""
    return f0 + counter - c0


def branch_digests(key_name: bytes, counter_name: bytes, c0: int, f0: int, window: int,
                   scope: Scope) -> list[bytes]:
    """Leaves of the enrolment tree: one per svn f0…f0+window, each for exactly ``scope``."""
    return [digests.svn_branch(key_name, policy_ref_bytes(scope.ref(s)), counter_name, digests.counter_bound(c0, f0, s))
            for s in range(f0, f0 + window + 1)]


def enrolment_tree(key_name: bytes, counter_name: bytes, c0: int, f0: int, window: int,
                   scope: Scope) -> digests.PolicyOrTree:
    """The PolicyOR tree whose root a signed enrolment's object is sealed to."""
    return digests.PolicyOrTree.build(branch_digests(key_name, counter_name, c0, f0, window, scope))


def choose_approval(entries: list[ApprovalEntry], f0: int, max_svn: int) -> tuple[ApprovalEntry | None, str]:
    """The approval unlock presents to the TPM, from ``entries`` (in scope, matching the live PCRs,
    highest svn first): the highest svn inside the window f0…max_svn — the TPM's PolicyNV decides
    whether it is above the floor, so unlock needs no counter read. Returns (entry, reason): a
    non-empty reason says why pcrtool can already see the TPM would refuse."""
    in_window = [x for x in entries if x.svn is not None and f0 <= x.svn <= max_svn]
    if in_window:
        return in_window[0], ""
    svns = [x.svn for x in entries if x.svn is not None]
    if not svns:
        if entries:
            return entries[0], "the approval carries no security version (systemd-style entry)"
        return None, "no approval matches the live PCRs (unknown or tampered release)"
    best = max(svns)
    entry = next(x for x in entries if x.svn == best)
    if best > max_svn:
        return entry, (f"release svn {best} is beyond the enrolled window (max svn {max_svn}); "
                       "re-seal with a wider window while an accepted release is booted")
    return entry, f"release svn {best} is below the enrolled window (lowest svn {f0}: revoked)"


def enrolment_window(requested: int | None, previous_window: int | None = None, *, widen: bool = False) -> int:
    """The window of an enrolment: ``requested`` (default DEFAULT_WINDOW); re-sealing with
    --previous keeps the previous window unless another is asked for; --widen must widen it."""
    if widen:
        if previous_window is None:
            raise UsageError("--widen needs the enrolment it widens")
        if requested is None or requested <= previous_window:
            raise UsageError(f"--window {requested if requested is not None else DEFAULT_WINDOW} does not widen "
                             f"the enrolled window {previous_window}", hint=f"e.g. --window {2 * previous_window or 1}")
        return requested
    if requested is not None:
        return requested
    return previous_window if previous_window is not None else DEFAULT_WINDOW


def check_window(window: int, f0: int = 0) -> None:
    """A window of 0…MAX_WINDOW svns, and floor + window not above the highest svn."""
    if not 0 <= window <= MAX_WINDOW:
        raise UsageError(f"window {window} out of range 0…{MAX_WINDOW}")
    if f0 + window > SVN_MAX:
        raise UsageError(f"floor {f0} + window {window} is above svn {SVN_MAX}")


def check_same_counter(previous_counter_name: bytes, counter_name: bytes) -> None:
    """A re-enrolment keeps the previous floor only on the very counter it was enrolled on: a
    counter deleted and defined again (another Name) carries no floor any more."""
    if previous_counter_name != counter_name:
        raise PolicyRefused("the floor counter was redefined since the previous enrolment",
                            hint="its floor is gone: enrol with --floor N --revive … explicitly")


def check_advance(to_svn: int, max_svn: int, booted_svn: int | None) -> None:
    """advance-floor's rules: ``--to`` inside the enrolled window, and (unless forced:
    ``booted_svn`` None) not above the svn of the verified, booted release — raising the floor
    past the running release would stop its next unlock."""
    if to_svn > max_svn:
        raise UsageError(f"--to {to_svn} is above the enrolled window (max svn {max_svn})",
                         hint="widen the window first (pcrtool tpm enroll --widen)")
    if booted_svn is not None and booted_svn < to_svn:
        raise PolicyRefused(f"the booted release is approved with svn {booted_svn}, below --to {to_svn}",
                            hint="boot and confirm the new release first, or pass --force")


def revoked_reason(svn: int, floor: int) -> str:
    """Why the TPM refused a release's PolicyNV: its svn is below the device floor."""
    return f"release svn {svn} is below the device floor {floor} (revoked)"


@dataclass(frozen=True, slots=True)
class FloorDecision:
    c0: int
    f0: int
    revived: tuple[int, int] | None = None   # (lo, hi) svns a lowered floor lets unlock again


def parse_revive(text: str) -> tuple[int, int]:
    """``--revive A-B`` (or ``A``): the svns an explicitly lowered floor lets unlock again."""
    lo, sep, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi if sep else lo)
    except ValueError:
        raise UsageError(f"--revive {text!r} is not SVN or FIRST-LAST", hint="e.g. --revive 3-4") from None
    if not 0 <= a <= b:
        raise UsageError(f"--revive {text!r} is not an ascending svn range")
    return a, b


def floor_decision(*, counter: int, previous: tuple[int, int] | None, requested: int | None,
                   revive: tuple[int, int] | None, counter_existed: bool) -> FloorDecision:
    """Where a (re-)enrolment's c0/f0 come from.

    - ``previous`` = (c0, f0) of the enrolment being replaced, confirmed by the TPM (it unsealed
      through them): the mapping is kept, so the floor stays exactly where it was. A lower
      ``requested`` floor needs ``revive`` naming exactly the svns it lets unlock again; a higher
      one is refused (raise it with advance-floor, which is atomic and keeps old blobs in step).
    - no previous enrolment but the counter exists: its mapping is unknown (lost or never ours);
      refused unless ``requested`` is given with ``revive`` (the explicit statement that every
      svn from ``requested`` up unlocks again).
    - a fresh counter: the first enrolment, c0 = its value, f0 = ``requested`` (default 0).
    """
    if previous is not None:
        c0, f0 = previous
        current = floor_of(c0, f0, counter)
        if requested is None or requested == current:
            if revive is not None:
                raise UsageError("--revive given but the floor is not lowered")
            return FloorDecision(c0, f0)
        if requested > current:
            raise UsageError(f"--floor {requested} is above the device floor {current}",
                             hint="re-enrol at the current floor and raise it with `pcrtool tpm advance-floor`")
        want = (requested, current - 1)
        if revive != want:
            raise PolicyRefused(
                f"--floor {requested} lowers the device floor {current}: svn {want[0]}…{want[1]} would "
                "unlock again", hint=f"if that is intended, add --revive {want[0]}-{want[1]}")
        return FloorDecision(counter, requested, want)
    if counter_existed:
        if requested is None or revive is None:
            n = "N" if requested is None else str(requested)
            raise PolicyRefused(
                "the floor counter exists already but no previous enrolment was given: its floor is "
                "unknown and enrolling would reset it",
                hint=f"pass --previous OLD.json (its floor is kept), or, if it is lost, --floor {n} "
                     f"--revive {n}-{REVIVE_ALL} to accept every svn from {n} up again")
        if revive != (requested, REVIVE_ALL):
            raise PolicyRefused(f"without the previous enrolment every svn from {requested} up may unlock",
                                hint=f"say so: --revive {requested}-{REVIVE_ALL}")
        return FloorDecision(counter, requested, revive)
    return FloorDecision(counter, 0 if requested is None else requested)
