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
        window: Optional[int] = typer.Option(None, "--window", help="Signed mode: accept svn floor…floor+WINDOW "
                                             "(default 16; with --previous: the previous window)."),
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
        from pcrtool import render
        from pcrtool.errors import UsageError
        from pcrtool.model import HashAlg
        from pcrtool.policy.downgrade import parse_revive
        from pcrtool.tpm.enroll_modes import EnrollRequest, run_enroll

        if mode != "direct" or update_key is not None:
            from pcrtool.tpm.policy_allowlist import NV_MODE_REMOVED
            raise UsageError(NV_MODE_REMOVED if mode == "nv" or update_key is not None else
                             f"unknown --mode {mode!r}", hint="use --mode direct (the default)")
        chosen = _parse_pcrs(pcrs)
        outcome = run_enroll(EnrollRequest(
            output=output, public_key=public_key, allowlist=allowlist, floor=floor, window=window, product=product,
            pcrs=tuple(chosen) if chosen else None, bank=HashAlg.from_name(bank),
            counter_index=_parse_index(counter_index), secret_file=secret_file, recovery_key=recovery_key,
            previous=previous, widen=widen_from, revive=parse_revive(revive) if revive else None,
            approvals=approvals, update=update_from, owner_auth=_owner_auth(owner_auth_file), pin=_pin(pin_file),
            tcti=tcti))
        if outcome.summary is None:
            render.info(outcome.message)
        elif outcome.to_stdout:   # standard output carries the enrollment itself: the summary goes to stderr
            render.info("\n".join(f"{k}: {v}" for k, v in outcome.summary.items()))
        else:
            render.emit(outcome.summary, text="\n".join(f"{k}: {v}" for k, v in outcome.summary.items()))

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
        from pcrtool.tpm.enroll_modes import run_unlock

        result = run_unlock(tcti, enrollment, approvals, allow_unpinned_srk=allow_unpinned_srk, pin=_pin(pin_file),
                            warn=render.warn)
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
        from pcrtool.tpm.enroll_modes import run_advance_floor

        old, new = run_advance_floor(tcti, enrollment, to, approvals=approvals, force=force,
                                     owner_auth=_owner_auth(owner_auth_file))
        render.emit({"old_floor": old, "floor": new}, text=f"floor {old} → {new}")

    @app.command()
    def status(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="Enrollment file."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Also match the live PCRs."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Counter, floor, window, TPM commands per unlock and which approval the live PCRs match."""
        from pcrtool import render
        from pcrtool.tpm.enroll_modes import enrollment_status

        data = enrollment_status(tcti, enrollment, approvals)
        render.emit(data, text="\n".join(f"{k}: {v}" for k, v in data.items()))


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
