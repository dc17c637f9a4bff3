"""The downgrade-protection decisions (pcrtool/policy/downgrade.py), pure: no TPM. The adapter
(tpm/enroll.py) executes what these decide; the swtpm tests check the TPM agrees."""

from __future__ import annotations

import pytest

from pcrtool.errors import PolicyRefused, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy.approvals import ApprovalEntry
from pcrtool.policy.downgrade import (DEFAULT_WINDOW, MAX_WINDOW, REVIVE_ALL, FloorDecision, check_advance,
                                      check_same_counter, check_window, choose_approval, enrolment_window,
                                      floor_decision, floor_of, parse_revive, revoked_reason)
from pcrtool.policy.scope import SVN_MAX
from pcrtool.policy.scope import Scope

SCOPE = Scope(HashAlg.SHA256, (11,), "")


def entry(svn: int | None) -> ApprovalEntry:
    return ApprovalEntry(HashAlg.SHA256, (11,), bytes(32), bytes([svn or 0]) * 32,
                         ref=SCOPE.ref(svn) if svn is not None else None)


def newest_first(*svns):
    return sorted((entry(s) for s in svns), key=lambda x: -1 if x.svn is None else x.svn, reverse=True)


# --- floor_of -------------------------------------------------------------------------------------

@pytest.mark.parametrize("c0, f0, counter, floor", [(5, 0, 5, 0), (5, 3, 7, 5), (0, 2, 0, 2), (10, 1, 13, 4)])
def test_the_floor_moves_one_svn_per_counter_increment(c0, f0, counter, floor):
    assert floor_of(c0, f0, counter) == floor


# --- choose_approval ------------------------------------------------------------------------------

def test_unlock_presents_the_highest_svn_inside_the_window():
    chosen, reason = choose_approval(newest_first(9, 6, 4), f0=3, max_svn=7)
    assert (chosen.svn, reason) == (6, "")


def test_an_svn_beyond_the_window_is_refused_early_naming_the_window():
    chosen, reason = choose_approval(newest_first(9), f0=3, max_svn=7)
    assert chosen.svn == 9
    assert reason.startswith("release svn 9 is beyond the enrolled window (max svn 7)")


def test_an_svn_below_the_window_is_refused_early_as_revoked():
    chosen, reason = choose_approval(newest_first(2, 1), f0=3, max_svn=7)
    assert chosen.svn == 2 and reason == "release svn 2 is below the enrolled window (lowest svn 3: revoked)"


def test_a_systemd_style_entry_is_refused_early_and_no_entry_at_all_too():
    chosen, reason = choose_approval(newest_first(None), f0=0, max_svn=16)
    assert chosen.svn is None and "no security version" in reason
    assert choose_approval([], f0=0, max_svn=16) == (None, "no approval matches the live PCRs (unknown or tampered "
                                                           "release)")


def test_the_window_edges_are_inside():
    assert choose_approval(newest_first(3), f0=3, max_svn=7) == (entry(3), "")
    assert choose_approval(newest_first(7), f0=3, max_svn=7) == (entry(7), "")


# --- floor_decision (re-enrolment) ----------------------------------------------------------------

def test_a_fresh_counter_starts_at_the_requested_floor():
    assert floor_decision(counter=1, previous=None, requested=None, revive=None, counter_existed=False) \
        == FloorDecision(1, 0)
    assert floor_decision(counter=1, previous=None, requested=4, revive=None, counter_existed=False) \
        == FloorDecision(1, 4)


def test_re_enrolment_keeps_the_previous_mapping_and_so_the_floor():
    d = floor_decision(counter=9, previous=(5, 2), requested=None, revive=None, counter_existed=True)
    assert d == FloorDecision(5, 2) and floor_of(d.c0, d.f0, 9) == 6
    assert floor_decision(counter=9, previous=(5, 2), requested=6, revive=None, counter_existed=True) == d


def test_re_enrolment_refuses_a_higher_floor_and_a_revive_without_a_lowering():
    with pytest.raises(UsageError, match="above the device floor 6"):
        floor_decision(counter=9, previous=(5, 2), requested=7, revive=None, counter_existed=True)
    with pytest.raises(UsageError, match="--revive given but the floor is not lowered"):
        floor_decision(counter=9, previous=(5, 2), requested=None, revive=(3, 5), counter_existed=True)


def test_a_lower_floor_needs_revive_naming_exactly_the_svns_that_unlock_again():
    with pytest.raises(PolicyRefused, match=r"svn 4…5 would unlock again") as e:
        floor_decision(counter=9, previous=(5, 2), requested=4, revive=None, counter_existed=True)
    assert e.value.hint == "if that is intended, add --revive 4-5"
    with pytest.raises(PolicyRefused):
        floor_decision(counter=9, previous=(5, 2), requested=4, revive=(4, 6), counter_existed=True)
    d = floor_decision(counter=9, previous=(5, 2), requested=4, revive=(4, 5), counter_existed=True)
    assert d == FloorDecision(9, 4, (4, 5)) and floor_of(d.c0, d.f0, 9) == 4


def test_an_existing_counter_without_the_previous_file_needs_revive_of_everything():
    with pytest.raises(PolicyRefused, match="floor counter exists already") as e:
        floor_decision(counter=9, previous=None, requested=None, revive=None, counter_existed=True)
    assert f"--revive N-{REVIVE_ALL}" in e.value.hint and "--previous" in e.value.hint
    with pytest.raises(PolicyRefused, match="every svn from 3 up"):
        floor_decision(counter=9, previous=None, requested=3, revive=(3, 8), counter_existed=True)
    assert floor_decision(counter=9, previous=None, requested=3, revive=(3, REVIVE_ALL), counter_existed=True) \
        == FloorDecision(9, 3, (3, REVIVE_ALL))


@pytest.mark.parametrize("text, parsed", [("3-4", (3, 4)), ("5", (5, 5)), ("0-2147483647", (0, REVIVE_ALL))])
def test_parse_revive(text, parsed):
    assert parse_revive(text) == parsed


@pytest.mark.parametrize("text", ["4-3", "x", "-1", "1-", "1-2-3"])
def test_parse_revive_refuses_what_is_not_an_ascending_range(text):
    with pytest.raises(UsageError):
        parse_revive(text)


# --- enrolment_window -----------------------------------------------------------------------------

def test_the_window_defaults_and_is_kept_by_a_re_seal():
    assert enrolment_window(None) == DEFAULT_WINDOW == 16
    assert enrolment_window(4) == 4
    assert enrolment_window(None, 8) == 8           # --previous keeps the enrolled window
    assert enrolment_window(16, 8) == 16            # unless one is asked for
    assert enrolment_window(32, 8, widen=True) == 32


@pytest.mark.parametrize("requested", [None, 4, 8])
def test_widen_must_widen(requested):
    with pytest.raises(UsageError, match="does not widen the enrolled window 8"):
        enrolment_window(requested, 8, widen=True)


def test_the_window_is_bounded_and_fits_below_the_highest_svn():
    check_window(0)
    check_window(MAX_WINDOW)
    check_window(16, SVN_MAX - 16)
    with pytest.raises(UsageError, match="out of range"):
        check_window(MAX_WINDOW + 1)
    with pytest.raises(UsageError, match="out of range"):
        check_window(-1)
    with pytest.raises(UsageError, match="is above svn"):
        check_window(16, SVN_MAX - 15)


def test_a_re_enrolment_keeps_its_floor_only_on_the_same_counter():
    name = b"\x00\x0b" + bytes(32)
    check_same_counter(name, name)
    with pytest.raises(PolicyRefused, match="redefined since the previous enrolment"):
        check_same_counter(name, b"\x00\x0b" + bytes(31) + b"\x01")


# --- check_advance --------------------------------------------------------------------------------

def test_advance_stays_inside_the_window_and_below_the_booted_release():
    check_advance(5, 7, None)
    check_advance(5, 7, 5)
    with pytest.raises(UsageError, match="above the enrolled window"):
        check_advance(8, 7, None)
    with pytest.raises(PolicyRefused, match="approved with svn 4, below --to 5"):
        check_advance(5, 7, 4)


def test_revoked_reason_names_svn_and_floor():
    assert revoked_reason(2, 3) == "release svn 2 is below the device floor 3 (revoked)"
