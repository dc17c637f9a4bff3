"""`pcrtool tpm enroll | unlock | advance-floor | status` (owned by the policy work).

Denial-of-service limit (documented in --help and ARCHITECTURE.md "Threat model"): whoever holds
owner authorization can increment the floor counter (or delete it) and so stop every unlock —
never a bypass. Keep the recovery key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_TCTI_HELP = "TCTI of the TPM (default: $PCRTOOL_TCTI, else device:/dev/tpmrm0), e.g. swtpm:path=SOCK"
_OWNER_HELP = ("File holding the owner hierarchy's password (only when one is set; needed to define, "
               "initialise and increment counters, never to unlock).")


def _load_any_enrollment(path: Path):
    from pcrtool import fileio
    from pcrtool.policy import strict
    from pcrtool.tpm.enroll import _ENROLL_HINT, MAX_ENROLLMENT_BYTES

    data = fileio.read_bytes(path, what="enrollment", limit=MAX_ENROLLMENT_BYTES + 1)
    doc = strict.load_device_json(data, str(path), max_bytes=MAX_ENROLLMENT_BYTES, hint=_ENROLL_HINT)
    mode = doc.get("mode") if isinstance(doc, dict) else None
    if mode == "signed":
        from pcrtool.tpm.enroll import Enrollment
        return Enrollment.parse(data, source=str(path))
    from pcrtool.tpm.policy_allowlist import AllowlistEnrollment
    return AllowlistEnrollment.parse(data, source=str(path))


def _signed_enrollment(path: Path):
    from pcrtool.errors import UsageError

    e = _load_any_enrollment(path)
    if getattr(e, "mode", "") != "signed":
        raise UsageError(f"{path} is an {e.mode} enrollment; this needs a signed-mode one")
    return e


def _approvals(path: Optional[Path]):
    if path is None:
        return None
    from pcrtool import fileio
    from pcrtool.policy.approvals import MAX_APPROVALS_BYTES, Approvals
    data = fileio.read_bytes(path, what="approvals", limit=MAX_APPROVALS_BYTES + 1)
    return Approvals.parse(data, source=str(path))


def _secret_file(path: Optional[Path], what: str, max_len: int, *, allow_empty: bool) -> Optional[bytes]:
    """A password or PIN file: its bytes without one trailing newline, at most ``max_len``."""
    if path is None:
        return None
    from pcrtool import fileio
    from pcrtool.errors import UsageError
    data = fileio.read_bytes(path, what=what, limit=max_len + 1)
    if data.endswith(b"\n"):
        data = data[:-1]
    if len(data) > max_len or (not data and not allow_empty):
        raise UsageError(f"the {what} file must hold {0 if allow_empty else 1}…{max_len} bytes")
    return data


def _owner_auth(path: Optional[Path]) -> Optional[bytes]:
    return _secret_file(path, "owner password", 64, allow_empty=True)


def _pin(path: Optional[Path]) -> Optional[bytes]:
    return _secret_file(path, "PIN", 256, allow_empty=False)


_PIN_HELP = ("File holding a PIN: the sealed object also needs it (PolicyAuthValue), so neither a device on "
             "the TPM bus nor a copy of the disk can unseal without it; wrong PINs count against the TPM's "
             "dictionary-attack protection.")


def register(app) -> None:
    """Add the device-side policy commands to the `pcrtool tpm` group."""

    @app.command()
    def enroll(
        output: Path = typer.Option(..., "--output", "-o", help="Enrollment file to write (metadata + "
                                    "sealed blob, one atomic write, mode 0600)."),
        public_key: Optional[str] = typer.Option(None, "--public-key", "-k",
                                                 help="Signed mode: the release signing key (public)."),
        floor: Optional[int] = typer.Option(None, "--floor", help="Signed mode: starting floor f0 (lowest svn "
                                            "accepted; default 0 on a new counter, the previous floor with "
                                            "--previous)."),
        window: int = typer.Option(16, "--window", help="Signed mode: accept svn floor…floor+WINDOW."),
        product: str = typer.Option("", "--product", help="Signed mode: product/channel id the approvals "
                                    "must name (as `pcrtool policy approve --product`)."),
        allowlist: Optional[Path] = typer.Option(None, "--allowlist", help="Allowlist mode: releases JSON."),
        mode: str = typer.Option("direct", "--mode", help="Allowlist mode: direct (the nv mode was removed)."),
        pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs to bind (signed default 11)."),
        bank: str = typer.Option("sha256", "--bank", help="PCR bank."),
        counter_index: Optional[str] = typer.Option(None, "--counter-index", help="NV index of the floor "
                                                    "counter / epoch counter (hex)."),
        secret_file: Optional[Path] = typer.Option(None, "--secret", help="Secret to seal (default: 32 random "
                                                   "bytes; with --previous: the previous one)."),
        recovery_key: Optional[Path] = typer.Option(None, "--recovery-key", help="Write the secret here "
                                                    "(0600, never overwritten) for recovery without the TPM."),
        previous: Optional[Path] = typer.Option(None, "--previous", help="Signed mode: the enrolment this one "
                                                "replaces; it is unlocked first (needs --approvals and a booted "
                                                "approved release) and its floor is kept."),
        widen_from: Optional[Path] = typer.Option(None, "--widen", help="Like --previous, with a wider --window."),
        revive: Optional[str] = typer.Option(None, "--revive", help="Signed mode: allow a LOWER floor, naming "
                                             "the svns that unlock again (FIRST-LAST)."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Approvals for --previous/--widen."),
        update_from: Optional[Path] = typer.Option(None, "--update", help="Allowlist mode: change the allowlist "
                                                   "of this enrollment (unlock, re-seal, then bump the epoch)."),
        update_key: Optional[Path] = typer.Option(None, "--update-key", hidden=True),
        owner_auth_file: Optional[Path] = typer.Option(None, "--owner-auth-file", help=_OWNER_HELP),
        pin_file: Optional[Path] = typer.Option(None, "--pin-file", help=_PIN_HELP),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Seal a secret: signed mode (downgrade-protected, floor counter) or allowlist mode.

        Re-enrolling never lowers the floor silently: an existing floor counter needs --previous (its floor is kept) or an explicit --floor N --revive N-LAST. Limit: whoever holds owner authorization can increment or delete the counter and so stop every unlock (denial of service, never a bypass). Keep the --recovery-key copy of the secret offline (e.g. as a LUKS recovery keyslot).
        """  # noqa: E501
        import os

        from pcrtool import fileio, render
        from pcrtool.errors import UsageError
        from pcrtool.model import HashAlg
        from pcrtool.policy.downgrade import parse_revive

        alg = HashAlg.from_name(bank)
        chosen = _parse_pcrs(pcrs)
        index = _parse_index(counter_index)
        owner = _owner_auth(owner_auth_file)
        pin = _pin(pin_file)
        revived = parse_revive(revive) if revive else None
        if mode != "direct" or update_key is not None:
            from pcrtool.tpm.policy_allowlist import NV_MODE_REMOVED
            raise UsageError(NV_MODE_REMOVED if mode == "nv" or update_key is not None else
                             f"unknown --mode {mode!r}", hint="use --mode direct (the default)")
        if previous is not None and widen_from is not None:
            raise UsageError("give --previous or --widen, not both")
        # One output rule (fileio): '-' is stdout, character devices/FIFOs are written in place,
        # symlinks are refused; only an existing regular file counts as "exists already".
        streamed = fileio.is_stream_output(output, what="enrollment")
        to_stdout = fileio.is_stdout(output)
        if recovery_key is not None:
            fileio.is_stream_output(recovery_key, what="recovery key")   # refuse a symlink up front
            if to_stdout and fileio.is_stdout(recovery_key):
                raise UsageError("--output and --recovery-key cannot both go to standard output",
                                 hint="write the recovery key to a file (0600) or a pipe of its own")
        if not streamed and output.exists() and previous is None and widen_from is None \
                and update_from is None:
            raise UsageError(f"{output} exists already", hint="remove it or choose another --output")
        if previous is not None or widen_from is not None:
            from pcrtool.tpm import enroll as signed_mode
            old = _signed_enrollment(previous or widen_from)
            if widen_from is not None and window <= old.window:
                raise UsageError(f"--window {window} does not widen the enrolled window {old.window}")
            if previous is not None and window == 16 and old.window != 16:
                window = old.window
            current = signed_mode.unlock(tcti, old, _approvals(approvals) or _need("--approvals"), pin=pin)
            if secret_file is not None and fileio.read_bytes(secret_file, what="secret") != current.secret:
                raise UsageError("--secret differs from the secret the previous enrolment holds",
                                 hint="a re-enrolment keeps the secret; enrol afresh for a new one")
            key = old.public_key()
            if public_key:
                from pcrtool.sign.keyfile import load_public_key_file
                key = load_public_key_file(public_key)
            new = signed_mode.enroll(tcti, key, floor=floor, window=window, bank=old.hash_alg, pcrs=old.pcrs,
                           secret=current.secret, reuse=old, product=old.product, revive=revived,
                           owner_auth=owner, pin=pin)
            if recovery_key is not None:
                _write_recovery_key(recovery_key, current.secret)
            signed_mode.write_enrollment(output, new)
            render.info(f"pcrtool: re-sealed with window {new.f0}…{new.max_svn}, floor kept → {output}")
            return
        if update_from is not None:
            from pcrtool.policy.releases_file import parse_releases
            from pcrtool.tpm import policy_allowlist
            old = _load_any_enrollment(update_from)
            if getattr(old, "mode", "") == "signed" or allowlist is None:
                raise UsageError("--update takes an allowlist-mode enrollment and --allowlist NEW.json")
            releases, _ = parse_releases(fileio.read_text(allowlist, what="allowlist"), source=str(allowlist))
            tuples = [(r.label, r.selected(old.hash_alg, old.pcrs)) for r in releases if r.allowed]
            # The new enrollment is stored durably as UPDATE.next BEFORE the epoch increment (unlock
            # of UPDATE falls back to it), and under --output only after it: a crash at any point
            # leaves a file that unlocks, and --output exists only once the old blobs are dead.
            nxt = _next_path(update_from)
            from pcrtool.errors import PolicyRefused
            try:
                secret = policy_allowlist.unlock_allowlist(tcti, old, pin=pin).secret
            except PolicyRefused:
                if not nxt.exists():
                    raise
                old = _load_any_enrollment(nxt)   # an interrupted update got past its increment
                secret = policy_allowlist.unlock_allowlist(tcti, old, pin=pin).secret
            new = policy_allowlist.update_allowlist(tcti, old, tuples, owner_auth=owner, secret=secret, pin=pin,
                                     commit=lambda e: policy_allowlist.write_durably(nxt, e.to_json()))
            policy_allowlist.write_durably(output, new.to_json())
            if nxt != output:
                nxt.unlink(missing_ok=True)
            render.info(f"pcrtool: allowlist now {len(new.leaves)} release tuple(s), epoch {new.epoch} → {output}")
            return
        if public_key and allowlist:
            raise UsageError("choose signed mode (--public-key) or allowlist mode (--allowlist)")
        if not public_key and not allowlist:
            raise UsageError("give --public-key (signed mode) or --allowlist (allowlist mode)")
        secret = fileio.read_bytes(secret_file, what="secret") if secret_file else os.urandom(32)
        if recovery_key is not None:
            _write_recovery_key(recovery_key, secret)
        if public_key:
            from pcrtool.sign.keyfile import load_public_key_file
            from pcrtool.tpm import enroll as signed_mode
            counter = index if index is not None else signed_mode.DEFAULT_COUNTER_INDEX
            pending = signed_mode.PendingEnrolment.for_output(output, secret, counter, streamed=streamed)
            e = signed_mode.enroll(tcti, load_public_key_file(public_key), floor=floor, window=window, bank=alg,
                                   pcrs=chosen or [11], secret=secret, product=product, revive=revived,
                                   owner_auth=owner, counter_index=counter, pending=pending, pin=pin)
            signed_mode.write_enrollment(output, e)
            pending.remove()
            summary = {"mode": "signed", "c0": e.c0, "f0": e.f0, "window": [e.f0, e.max_svn],
                       "product": e.product or None, "counter_index": f"{e.counter_index:#x}",
                       "policy": e.policy, "output": str(output)}
        else:
            from pcrtool.policy.releases_file import parse_releases, selected_pcrs
            from pcrtool.tpm import policy_allowlist
            releases, _ = parse_releases(fileio.read_text(allowlist, what="allowlist"), source=str(allowlist))
            sel = selected_pcrs(releases, alg, chosen)
            tuples = [(r.label, r.selected(alg, sel)) for r in releases if r.allowed]
            e = policy_allowlist.enroll_allowlist(tcti, tuples, bank=alg, pcrs=sel, secret=secret, index=index, owner_auth=owner,
                                   pin=pin,
                                   commit=lambda e: policy_allowlist.write_durably(output, e.to_json()))
            summary = {"mode": e.mode, "releases": len(tuples), "leaves": len(e.leaves),
                       "index": f"{e.index:#x}", "epoch": e.epoch, "policy": e.policy, "output": str(output)}
        if to_stdout:   # standard output carries the enrollment itself: the summary goes to stderr
            render.info("\n".join(f"{k}: {v}" for k, v in summary.items()))
        else:
            render.emit(summary, text="\n".join(f"{k}: {v}" for k, v in summary.items()))

    @app.command()
    def unlock(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="File written by `pcrtool tpm enroll`."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Signed mode: the .pcrsig."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the secret here (0600); "
                                              "default: print it base64-encoded."),
        allow_unpinned_srk: bool = typer.Option(False, "--allow-unpinned-srk", help="Accept an enrollment "
                                                "without an SRK pin (a bus interposer could read the secret)."),
        pin_file: Optional[Path] = typer.Option(None, "--pin-file", help="The PIN, for an enrollment made with one."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Unseal the secret if the live PCRs are an accepted release (exit 4 when refused)."""
        import base64

        from pcrtool import fileio, render

        e = _load_any_enrollment(enrollment)
        if not e.srk_name and allow_unpinned_srk:
            render.warn("the enrollment pins no storage root key (--allow-unpinned-srk): the session carrying "
                        "the secret trusts whatever key the TPM presents; enrol again to pin it")
        if getattr(e, "mode", "") == "signed":
            from pcrtool.tpm import enroll as signed_mode
            result = signed_mode.unlock(tcti, e, _approvals(approvals) or _need("--approvals"),
                              allow_unpinned_srk=allow_unpinned_srk, pin=_pin(pin_file))
        else:
            from pcrtool.errors import PolicyRefused
            from pcrtool.tpm import policy_allowlist
            try:
                result = policy_allowlist.unlock_allowlist(tcti, e, allow_unpinned_srk=allow_unpinned_srk, pin=_pin(pin_file))
            except PolicyRefused:
                nxt = _next_path(enrollment)
                if not nxt.exists():
                    raise
                # an update of this enrollment was interrupted after its epoch increment
                result = policy_allowlist.unlock_allowlist(tcti, _load_any_enrollment(nxt), allow_unpinned_srk=allow_unpinned_srk,
                                            pin=_pin(pin_file))
                render.warn(f"unlocked with {nxt} (an interrupted --update): run the update again to finish it")
        render.info(f"pcrtool: unlocked ({len(result.commands)} TPM commands"
                    + (f", svn {result.svn}" if result.svn >= 0 else "") + ")")
        if output is not None:
            fileio.write_private(output, result.secret, what="secret")
        elif render.json_mode():
            render.emit_json({"secret": base64.b64encode(result.secret).decode(),
                              "svn": result.svn if result.svn >= 0 else None,
                              "tpm_commands": len(result.commands)})
        else:
            render.emit_text(base64.b64encode(result.secret).decode())

    @app.command("advance-floor")
    def advance_floor(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="Signed-mode enrollment file."),
        to: int = typer.Option(..., "--to", help="New floor (svn): releases below it stop unlocking."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a",
                                                 help="Check first that the booted release has svn ≥ --to "
                                                      "(every approval signature is verified first)."),
        force: bool = typer.Option(False, "--force", help="Skip the booted-release check (can brick "
                                                          "unlock until a newer release boots)."),
        owner_auth_file: Optional[Path] = typer.Option(None, "--owner-auth-file", help=_OWNER_HELP),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Raise the floor by NV_Increment only (atomic; no re-seal). Do it after the higher-svn release booted and was confirmed good. Parallel runs are serialized and end at --to.
        """  # noqa: E501
        from pcrtool import render
        from pcrtool.errors import PolicyRefused, UsageError
        from pcrtool.tpm import enroll as signed_mode

        e = _signed_enrollment(enrollment)
        if to > e.max_svn:
            raise UsageError(f"--to {to} is above the enrolled window (max svn {e.max_svn})",
                             hint="widen the window first (pcrtool tpm enroll --widen)")
        if not force:
            booted = signed_mode.verified_booted_svn(tcti, e, _approvals(approvals) or _need("--approvals (or --force)"))
            if booted < to:
                raise PolicyRefused(f"the booted release is approved with svn {booted}, below --to {to}",
                                    hint="boot and confirm the new release first, or pass --force")
        old, new = signed_mode.advance_floor(tcti, e, to, lock_path=enrollment, owner_auth=_owner_auth(owner_auth_file))
        render.emit({"old_floor": old, "floor": new}, text=f"floor {old} → {new}")

    @app.command()
    def status(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="Enrollment file."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Also match the live PCRs."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Counter, floor, window, TPM commands per unlock and which approval the live PCRs match."""
        from pcrtool import render

        e = _load_any_enrollment(enrollment)
        if getattr(e, "mode", "") != "signed":
            data = {"mode": e.mode, "index": f"{e.index:#x}", "epoch": e.epoch, "leaves": len(e.leaves),
                    "policy": e.policy, "srk_name": e.srk_name or None,
                    "unlock_tpm_commands": 9 + len(e.tree().path(0)) + (0 if e.srk and e.srk_name else 1)
                    + (1 if e.pin_salt else 0)}
        else:
            from pcrtool.tpm import enroll as signed_mode
            data = signed_mode.status(tcti, e, _approvals(approvals))
        render.emit(data, text="\n".join(f"{k}: {v}" for k, v in data.items()))


def _write_recovery_key(path: Path, secret: bytes) -> None:
    """0600, never overwritten — except that a re-run after a crash finds the same key there."""
    from pcrtool import fileio
    text = secret.hex() + "\n"
    try:
        if path.is_file() and not path.is_symlink() and path.read_text() == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    fileio.write_private(path, text, what="recovery key")


def _next_path(path: Path) -> Path:
    """Where an allowlist update keeps the new enrollment until its epoch increment is done."""
    return path.with_name(path.name + ".next")


def _parse_pcrs(text: Optional[str]):
    if not text:
        return None
    from pcrtool.errors import UsageError
    try:
        pcrs = sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise UsageError(f"--pcrs {text!r} is not a comma-separated list of PCR indices", hint="e.g. 7,11") from None
    if not all(0 <= p <= 23 for p in pcrs):
        raise UsageError(f"--pcrs {text!r}: PCR indices are 0…23")
    return pcrs


def _parse_index(text: Optional[str]):
    if not text:
        return None
    from pcrtool.errors import UsageError
    try:
        value = int(text, 16)
    except ValueError:
        raise UsageError(f"--counter-index {text!r} is not hex", hint="e.g. 0x01805C00") from None
    if not 0x01000000 <= value <= 0x01FFFFFF:
        raise UsageError(f"--counter-index {text!r} is not an NV index (0x01000000…0x01FFFFFF)")
    return value


def _need(option: str):
    from pcrtool.errors import UsageError
    raise UsageError(f"this needs {option}")
