"""What `pcrtool tpm enroll | unlock | advance-floor | status` do, mode by mode.

The CLI (cli/tpm_enroll.py) parses options and prints; the decisions (floor, window, which
approval, advance-floor's limits) are the core's (policy/downgrade.py); this adapter reads the
files the options name, runs each mode's TPM steps in order (tpm/enroll.py, tpm/policy_allowlist.py)
and writes the results. The modes of `tpm enroll`:

- signed, first enrolment (``public_key``): a fresh floor counter; crash-resumable through the
  PendingEnrolment record;
- signed re-seal (``previous`` / ``widen``): unlock the previous enrolment (the TPM confirms its
  counter mapping), keep its secret and floor, seal again (a wider window with ``widen``);
- allowlist (``allowlist``): seal to the release tuples under the next epoch;
- allowlist update (``update`` + ``allowlist``): unlock, re-seal, store UPDATE.next durably, then
  increment the epoch (every older blob dies); unlock falls back to UPDATE.next after a crash.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pcrtool import fileio
from pcrtool.errors import PolicyRefused, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy.downgrade import check_advance, enrolment_window

DEFAULT_PCRS = (11,)


@dataclass(frozen=True, slots=True)
class EnrollRequest:
    """`tpm enroll`'s options, parsed (paths still unread; secrets already read by the CLI)."""

    output: Path
    public_key: str | None = None        # signed mode: a key reference (sign/keyfile)
    allowlist: Path | None = None        # allowlist mode: releases JSON
    floor: int | None = None
    window: int | None = None
    product: str = ""
    pcrs: tuple[int, ...] | None = None
    bank: HashAlg = HashAlg.SHA256
    counter_index: int | None = None
    secret_file: Path | None = None
    recovery_key: Path | None = None
    previous: Path | None = None
    widen: Path | None = None
    revive: tuple[int, int] | None = None
    approvals: Path | None = None
    update: Path | None = None
    owner_auth: bytes | None = None
    pin: bytes | None = None
    tcti: str | None = None


@dataclass(frozen=True, slots=True)
class EnrollOutcome:
    """What to tell the user: a ``summary`` (data) or a one-line ``message``; ``to_stdout``: the
    enrollment itself went to standard output (so anything else goes to stderr)."""

    summary: dict | None
    message: str
    to_stdout: bool


# --- reading the files options name ---------------------------------------------------------------

def load_any_enrollment(path: Path):
    """A signed (tpm/enrollment_file.Enrollment) or allowlist (tpm/policy_allowlist.AllowlistEnrollment)
    enrollment file, by its ``mode``."""
    from pcrtool.policy import strict
    from pcrtool.tpm.enrollment_file import _ENROLL_HINT, MAX_ENROLLMENT_BYTES, Enrollment
    from pcrtool.tpm.policy_allowlist import AllowlistEnrollment

    data = fileio.read_bytes(path, what="enrollment", limit=MAX_ENROLLMENT_BYTES + 1)
    doc = strict.load_device_json(data, str(path), max_bytes=MAX_ENROLLMENT_BYTES, hint=_ENROLL_HINT)
    if isinstance(doc, dict) and doc.get("mode") == "signed":
        return Enrollment.parse(data, source=str(path))
    return AllowlistEnrollment.parse(data, source=str(path))


def load_signed_enrollment(path: Path):
    e = load_any_enrollment(path)
    if e.mode != "signed":
        raise UsageError(f"{path} is an {e.mode} enrollment; this needs a signed-mode one")
    return e


def load_approvals(path: Path | None, needed_as: str = "--approvals"):
    """The approvals (.pcrsig) file ``path``; ``needed_as`` names the option when it is missing."""
    from pcrtool.policy.approvals import MAX_APPROVALS_BYTES, Approvals

    if path is None:
        raise UsageError(f"this needs {needed_as}")
    data = fileio.read_bytes(path, what="approvals", limit=MAX_APPROVALS_BYTES + 1)
    return Approvals.parse(data, source=str(path))


def _allowlist_tuples(path: Path, bank: HashAlg, pcrs):
    """(selected PCRs, [(label, values)] of the allowed releases) of an allowlist file."""
    from pcrtool.policy.releases_file import parse_releases, selected_pcrs

    releases, _ = parse_releases(fileio.read_text(path, what="allowlist"), source=str(path))
    chosen = selected_pcrs(releases, bank, list(pcrs) if pcrs else None)
    return chosen, [(r.label, r.selected(bank, chosen)) for r in releases if r.allowed]


def next_path(path: Path) -> Path:
    """Where an allowlist update keeps the new enrollment until its epoch increment is done."""
    return path.with_name(path.name + ".next")


def write_recovery_key(path: Path, secret: bytes) -> None:
    """0600, never overwritten — except that a re-run after a crash finds the same key there."""
    text = secret.hex() + "\n"
    try:
        if path.is_file() and not path.is_symlink() and path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    fileio.write_private(path, text, what="recovery key")


# --- tpm enroll ------------------------------------------------------------------------------------

def run_enroll(request: EnrollRequest) -> EnrollOutcome:
    """Run the mode ``request`` asks for (module docstring)."""
    # One output rule (fileio): '-' is stdout, character devices/FIFOs are written in place,
    # symlinks are refused; only an existing regular file counts as "exists already".
    streamed = fileio.is_stream_output(request.output, what="enrollment")
    to_stdout = fileio.is_stdout(request.output)
    if request.recovery_key is not None:
        fileio.is_stream_output(request.recovery_key, what="recovery key")   # refuse a symlink up front
        if to_stdout and fileio.is_stdout(request.recovery_key):
            raise UsageError("--output and --recovery-key cannot both go to standard output",
                             hint="write the recovery key to a file (0600) or a pipe of its own")
    if request.previous is not None and request.widen is not None:
        raise UsageError("give --previous or --widen, not both")
    replacing = request.previous or request.widen or request.update
    if not streamed and replacing is None and request.output.exists():
        raise UsageError(f"{request.output} exists already", hint="remove it or choose another --output")
    if request.previous is not None or request.widen is not None:
        return _reseal_signed(request, to_stdout)
    if request.update is not None:
        return _update_allowlist(request, to_stdout)
    if request.public_key and request.allowlist:
        raise UsageError("choose signed mode (--public-key) or allowlist mode (--allowlist)")
    if not request.public_key and not request.allowlist:
        raise UsageError("give --public-key (signed mode) or --allowlist (allowlist mode)")
    secret = fileio.read_bytes(request.secret_file, what="secret") if request.secret_file else os.urandom(32)
    if request.recovery_key is not None:
        write_recovery_key(request.recovery_key, secret)
    if request.public_key:
        summary = _enroll_signed(request, secret, streamed)
    else:
        summary = _enroll_allowlist(request, secret)
    return EnrollOutcome(summary, "", to_stdout)


def _enroll_signed(request: EnrollRequest, secret: bytes, streamed: bool) -> dict:
    from pcrtool.sign.keyfile import load_public_key_file
    from pcrtool.tpm import enroll as signed
    from pcrtool.tpm import enrollment_file

    counter = request.counter_index if request.counter_index is not None else enrollment_file.DEFAULT_COUNTER_INDEX
    pending = enrollment_file.PendingEnrolment.for_output(request.output, secret, counter, streamed=streamed)
    e = signed.enroll(request.tcti, load_public_key_file(request.public_key), floor=request.floor,
                      window=enrolment_window(request.window), bank=request.bank,
                      pcrs=request.pcrs or DEFAULT_PCRS, secret=secret, product=request.product,
                      revive=request.revive, owner_auth=request.owner_auth, counter_index=counter,
                      pending=pending, pin=request.pin)
    enrollment_file.write_enrollment(request.output, e)
    pending.remove()
    return {"mode": "signed", "c0": e.c0, "f0": e.f0, "window": [e.f0, e.max_svn], "product": e.product or None,
            "counter_index": f"{e.counter_index:#x}", "policy": e.policy, "output": str(request.output)}


def _enroll_allowlist(request: EnrollRequest, secret: bytes) -> dict:
    from pcrtool.tpm import policy_allowlist

    pcrs, tuples = _allowlist_tuples(request.allowlist, request.bank, request.pcrs)
    e = policy_allowlist.enroll_allowlist(
        request.tcti, tuples, bank=request.bank, pcrs=pcrs, secret=secret, index=request.counter_index,
        owner_auth=request.owner_auth, pin=request.pin,
        commit=lambda e: policy_allowlist.write_durably(request.output, e.to_json()))
    return {"mode": e.mode, "releases": len(tuples), "leaves": len(e.leaves), "index": f"{e.index:#x}",
            "epoch": e.epoch, "policy": e.policy, "output": str(request.output)}


def _reseal_signed(request: EnrollRequest, to_stdout: bool) -> EnrollOutcome:
    """--previous / --widen: unlock the previous enrolment, then seal its secret again with its
    floor kept (floor_decision) and its window kept or widened (enrolment_window)."""
    from pcrtool.tpm import enroll as signed
    from pcrtool.tpm import enrollment_file

    old = load_signed_enrollment(request.previous or request.widen)
    window = enrolment_window(request.window, old.window, widen=request.widen is not None)
    current = signed.unlock(request.tcti, old, load_approvals(request.approvals), pin=request.pin)
    if request.secret_file is not None \
            and fileio.read_bytes(request.secret_file, what="secret") != current.secret:
        raise UsageError("--secret differs from the secret the previous enrolment holds",
                         hint="a re-enrolment keeps the secret; enrol afresh for a new one")
    key = old.public_key()
    if request.public_key:
        from pcrtool.sign.keyfile import load_public_key_file
        key = load_public_key_file(request.public_key)
    new = signed.enroll(request.tcti, key, floor=request.floor, window=window, bank=old.hash_alg, pcrs=old.pcrs,
                        secret=current.secret, reuse=old, product=old.product, revive=request.revive,
                        owner_auth=request.owner_auth, pin=request.pin)
    if request.recovery_key is not None:
        write_recovery_key(request.recovery_key, current.secret)
    enrollment_file.write_enrollment(request.output, new)
    return EnrollOutcome(None, f"pcrtool: re-sealed with window {new.f0}…{new.max_svn}, floor kept → "
                               f"{request.output}", to_stdout)


def _update_allowlist(request: EnrollRequest, to_stdout: bool) -> EnrollOutcome:
    """--update: the new enrollment is stored durably as UPDATE.next BEFORE the epoch increment
    (unlock of UPDATE falls back to it), and under --output only after it: a crash at any point
    leaves a file that unlocks, and --output exists only once the old blobs are dead."""
    from pcrtool.tpm import policy_allowlist

    old = load_any_enrollment(request.update)
    if old.mode == "signed" or request.allowlist is None:
        raise UsageError("--update takes an allowlist-mode enrollment and --allowlist NEW.json")
    _, tuples = _allowlist_tuples(request.allowlist, old.hash_alg, old.pcrs)
    nxt = next_path(request.update)
    try:
        secret = policy_allowlist.unlock_allowlist(request.tcti, old, pin=request.pin).secret
    except PolicyRefused:
        if not nxt.exists():
            raise
        old = load_any_enrollment(nxt)   # an interrupted update got past its increment
        secret = policy_allowlist.unlock_allowlist(request.tcti, old, pin=request.pin).secret
    new = policy_allowlist.update_allowlist(request.tcti, old, tuples, owner_auth=request.owner_auth, secret=secret,
                                            pin=request.pin,
                                            commit=lambda e: policy_allowlist.write_durably(nxt, e.to_json()))
    policy_allowlist.write_durably(request.output, new.to_json())
    if nxt != request.output:
        nxt.unlink(missing_ok=True)
    return EnrollOutcome(None, f"pcrtool: allowlist now {len(new.leaves)} release tuple(s), epoch {new.epoch} → "
                               f"{request.output}", to_stdout)


# --- tpm unlock / advance-floor / status -----------------------------------------------------------

def run_unlock(tcti: str | None, enrollment: Path, approvals: Path | None, *, allow_unpinned_srk: bool = False,
               pin: bytes | None = None, warn: Callable[[str], None] = lambda _: None):
    """Unseal with the enrollment file (either mode); an allowlist enrollment whose update was
    interrupted after its epoch increment unlocks with UPDATE.next. Returns the UnlockResult."""
    from pcrtool.tpm import enroll as signed
    from pcrtool.tpm import policy_allowlist

    e = load_any_enrollment(enrollment)
    if not e.srk_name and allow_unpinned_srk:
        warn("the enrollment pins no storage root key (--allow-unpinned-srk): the session carrying "
             "the secret trusts whatever key the TPM presents; enrol again to pin it")
    if e.mode == "signed":
        return signed.unlock(tcti, e, load_approvals(approvals), allow_unpinned_srk=allow_unpinned_srk, pin=pin)
    try:
        return policy_allowlist.unlock_allowlist(tcti, e, allow_unpinned_srk=allow_unpinned_srk, pin=pin)
    except PolicyRefused:
        nxt = next_path(enrollment)
        if not nxt.exists():
            raise
    result = policy_allowlist.unlock_allowlist(tcti, load_any_enrollment(nxt), allow_unpinned_srk=allow_unpinned_srk,
                                               pin=pin)
    warn(f"unlocked with {nxt} (an interrupted --update): run the update again to finish it")
    return result


def run_advance_floor(tcti: str | None, enrollment: Path, to_svn: int, *, approvals: Path | None, force: bool,
                      owner_auth: bytes | None = None) -> tuple[int, int]:
    """Raise the floor to ``to_svn`` (check_advance decides whether it may; without ``force``
    the booted release, verified against every in-scope approval, must have svn ≥ ``to_svn``)."""
    from pcrtool.tpm import enroll as signed

    e = load_signed_enrollment(enrollment)
    check_advance(to_svn, e.max_svn, None)
    if not force:
        booted = signed.verified_booted_svn(tcti, e, load_approvals(approvals, "--approvals (or --force)"))
        check_advance(to_svn, e.max_svn, booted)
    return signed.advance_floor(tcti, e, to_svn, lock_path=enrollment, owner_auth=owner_auth)


def enrollment_status(tcti: str | None, enrollment: Path, approvals: Path | None) -> dict:
    """The enrollment's state: counter, floor, window and matching approvals (signed mode; reads
    the TPM), or epoch and leaves (allowlist mode; from the file)."""
    from pcrtool.tpm import enroll as signed
    from pcrtool.tpm import policy_allowlist

    e = load_any_enrollment(enrollment)
    if e.mode != "signed":
        return policy_allowlist.allowlist_status(e)
    return signed.status(tcti, e, load_approvals(approvals) if approvals is not None else None)
