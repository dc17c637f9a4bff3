"""`pcrtool tpm enroll | unlock | advance-floor | status` (owned by the policy work).

Denial-of-service limit (documented in --help): whoever holds owner authorization can increment
the floor counter (or delete it) and so stop every unlock — never a bypass. Keep the recovery key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

_TCTI_HELP = "TCTI of the TPM (default: $PCRTOOL_TCTI, else device:/dev/tpmrm0), e.g. swtpm:path=SOCK"


def _load_any_enrollment(path: Path):
    import json

    from pcrtool import fileio
    from pcrtool.errors import FormatError

    text = fileio.read_text(path, what="enrollment")
    try:
        mode = json.loads(text).get("mode")
    except (json.JSONDecodeError, AttributeError):
        raise FormatError(f"{path}: not a pcrtool enrollment file") from None
    if mode == "signed":
        from pcrtool.tpm.enroll import Enrollment
        return Enrollment.parse(text, source=str(path))
    from pcrtool.tpm.policy_allowlist import AllowlistEnrollment
    return AllowlistEnrollment.parse(text, source=str(path))


def _approvals(path: Optional[Path]):
    if path is None:
        return None
    from pcrtool import fileio
    from pcrtool.policy.approvals import Approvals
    return Approvals.parse(fileio.read_text(path, what="approvals"), source=str(path))


def register(app) -> None:
    """Add the device-side policy commands to the `pcrtool tpm` group."""

    @app.command()
    def enroll(
        output: Path = typer.Option(..., "--output", "-o", help="Enrollment file to write (metadata + "
                                    "sealed blob, one atomic write, mode 0600)."),
        public_key: Optional[str] = typer.Option(None, "--public-key", "-k",
                                                 help="Signed mode: the release signing key (public)."),
        floor: int = typer.Option(0, "--floor", help="Signed mode: starting floor f0 (lowest svn accepted)."),
        window: int = typer.Option(16, "--window", help="Signed mode: accept svn f0…f0+WINDOW."),
        allowlist: Optional[Path] = typer.Option(None, "--allowlist", help="Allowlist mode: releases JSON."),
        mode: str = typer.Option("direct", "--mode", help="Allowlist mode: direct or nv."),
        update_key: Optional[Path] = typer.Option(None, "--update-key", help="nv mode: HMAC update key file "
                                                  "(created 0600 if missing)."),
        pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs to bind (signed default 11)."),
        bank: str = typer.Option("sha256", "--bank", help="PCR bank."),
        counter_index: Optional[str] = typer.Option(None, "--counter-index", help="NV index of the floor "
                                                    "counter / allowlist index (hex)."),
        secret_file: Optional[Path] = typer.Option(None, "--secret", help="Secret to seal (default: 32 random bytes)."),
        recovery_key: Optional[Path] = typer.Option(None, "--recovery-key", help="Write the secret here "
                                                    "(0600, never overwritten) for recovery without the TPM."),
        widen_from: Optional[Path] = typer.Option(None, "--widen", help="Re-seal an existing signed "
                                                  "enrollment with a wider --window (same c0/f0); needs "
                                                  "--approvals and a booted accepted release."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Approvals for --widen."),
        update_from: Optional[Path] = typer.Option(None, "--update", help="Allowlist mode: change the "
                                                   "allowlist of this enrollment (nv: rewrite the index "
                                                   "with --update-key; direct: unlock, bump the epoch, re-seal)."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Seal a secret: signed mode (downgrade-protected, floor counter) or allowlist mode.

        Limit: whoever holds owner authorization (often empty on Linux) can increment or delete the floor counter and so stop every unlock (denial of service, never a bypass). Keep the --recovery-key copy of the secret offline (e.g. as a LUKS recovery keyslot).
        """  # noqa: E501
        import os

        from pcrtool import fileio, render
        from pcrtool.errors import UsageError
        from pcrtool.model import HashAlg

        alg = HashAlg.from_name(bank)
        chosen = [int(p) for p in pcrs.split(",")] if pcrs else None
        index = int(counter_index, 16) if counter_index else None
        if output.exists() and widen_from is None and update_from is None:
            raise UsageError(f"{output} exists already", hint="remove it or choose another --output")
        if widen_from is not None:
            from pcrtool.tpm import enroll as E
            old = E.read_enrollment(widen_from)
            if window <= old.window:
                raise UsageError(f"--window {window} does not widen the enrolled window {old.window}")
            current = E.unlock(tcti, old, _approvals(approvals) or _need("--approvals"))
            new = E.enroll(tcti, old.public_key(), floor=old.f0, window=window, bank=old.hash_alg,
                           pcrs=old.pcrs, secret=current.secret, counter_index=old.counter_index, reuse=old)
            E.write_enrollment(output, new)
            render.info(f"pcrtool: re-sealed with window {new.f0}…{new.max_svn} → {output}")
            return
        if update_from is not None:
            from pcrtool.policy.releases import parse_releases
            from pcrtool.tpm import policy_allowlist as P
            old = _load_any_enrollment(update_from)
            if getattr(old, "mode", "") == "signed" or allowlist is None:
                raise UsageError("--update takes an allowlist-mode enrollment and --allowlist NEW.json")
            releases, _ = parse_releases(fileio.read_text(allowlist, what="allowlist"), source=str(allowlist))
            tuples = [(r.label, r.selected(old.hash_alg, old.pcrs)) for r in releases if r.allowed]
            key = fileio.read_bytes(update_key, what="update key") if update_key else None
            new = P.update_allowlist(tcti, old, tuples, update_key=key)
            fileio.write_atomic(output, new.to_json(), mode=0o600, what="enrollment")
            render.info(f"pcrtool: allowlist now {len(new.leaves)} release tuple(s) → {output}")
            return
        secret = fileio.read_bytes(secret_file, what="secret") if secret_file else os.urandom(32)
        if recovery_key is not None:
            fileio.write_private(recovery_key, secret.hex() + "\n", what="recovery key")
        if public_key and allowlist:
            raise UsageError("choose signed mode (--public-key) or allowlist mode (--allowlist)")
        if public_key:
            from pcrtool.sign.keyfile import load_public_key_file
            from pcrtool.tpm import enroll as E
            e = E.enroll(tcti, load_public_key_file(public_key), floor=floor, window=window, bank=alg,
                         pcrs=chosen or [11], secret=secret,
                         counter_index=index if index is not None else E.DEFAULT_COUNTER_INDEX)
            E.write_enrollment(output, e)
            summary = {"mode": "signed", "c0": e.c0, "f0": e.f0, "window": [e.f0, e.max_svn],
                       "counter_index": f"{e.counter_index:#x}", "policy": e.policy, "output": str(output)}
        elif allowlist:
            from pcrtool.policy.releases import parse_releases, selected_pcrs
            from pcrtool.tpm import policy_allowlist as P
            releases, _ = parse_releases(fileio.read_text(allowlist, what="allowlist"), source=str(allowlist))
            sel = selected_pcrs(releases, alg, chosen)
            tuples = [(r.label, r.selected(alg, sel)) for r in releases if r.allowed]
            key = None
            if mode == "nv":
                if update_key is None:
                    raise UsageError("nv mode needs --update-key FILE")
                if update_key.exists():
                    key = fileio.read_bytes(update_key, what="update key")
                else:
                    key = os.urandom(32)
                    fileio.write_private(update_key, key, what="update key")
            e = P.enroll_allowlist(tcti, tuples, bank=alg, pcrs=sel, secret=secret, mode=mode,
                                   index=index, update_key=key)
            fileio.write_atomic(output, e.to_json(), mode=0o600, what="enrollment")
            summary = {"mode": e.mode, "releases": len(tuples), "leaves": len(e.leaves),
                       "index": f"{e.index:#x}", "policy": e.policy, "output": str(output)}
        else:
            raise UsageError("give --public-key (signed mode) or --allowlist (allowlist mode)")
        render.emit(summary, text="\n".join(f"{k}: {v}" for k, v in summary.items()))

    @app.command()
    def unlock(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="File written by `pcrtool tpm enroll`."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Signed mode: the .pcrsig."),
        output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the secret here (0600); "
                                              "default: print it base64-encoded."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Unseal the secret if the live PCRs are an accepted release (exit 4 when refused)."""
        import base64

        from pcrtool import fileio, render

        e = _load_any_enrollment(enrollment)
        if not e.srk_name:
            render.warn("the enrollment pins no storage root key (written before pcrtool pinned it): the "
                        "session carrying the secret trusts whatever key the TPM presents; enrol again to pin it")
        if getattr(e, "mode", "") == "signed":
            from pcrtool.tpm import enroll as E
            result = E.unlock(tcti, e, _approvals(approvals) or _need("--approvals"))
        else:
            from pcrtool.tpm import policy_allowlist as P
            result = P.unlock_allowlist(tcti, e)
        render.info(f"pcrtool: unlocked ({len(result.commands)} TPM commands"
                    + (f", svn {result.svn}, floor {result.floor}" if result.svn >= 0 else "") + ")")
        if output is not None:
            fileio.write_private(output, result.secret, what="secret")
        elif render.json_mode():
            render.emit_json({"secret": base64.b64encode(result.secret).decode(),
                              "svn": result.svn if result.svn >= 0 else None,
                              "floor": result.floor if result.floor >= 0 else None,
                              "tpm_commands": len(result.commands)})
        else:
            render.emit_text(base64.b64encode(result.secret).decode())

    @app.command("advance-floor")
    def advance_floor(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="Signed-mode enrollment file."),
        to: int = typer.Option(..., "--to", help="New floor (svn): releases below it stop unlocking."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a",
                                                 help="Check first that the booted release has svn ≥ --to."),
        force: bool = typer.Option(False, "--force", help="Skip the booted-release check (can brick "
                                                          "unlock until a newer release boots)."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Raise the floor by NV_Increment only (atomic; no re-seal). Do it after the higher-svn release booted and was confirmed good.
        """  # noqa: E501
        from pcrtool import render
        from pcrtool.errors import PolicyRefused, UsageError
        from pcrtool.tpm import enroll as E

        e = E.read_enrollment(enrollment)
        if to > e.max_svn:
            raise UsageError(f"--to {to} is above the enrolled window (max svn {e.max_svn})",
                             hint="widen the window first (pcrtool tpm enroll --widen)")
        if not force:
            st = E.status(tcti, e, _approvals(approvals) or _need("--approvals (or --force)"))
            svns = [s for s in st.get("matching_svns", []) if s is not None]
            if not svns or max(svns) < to:
                raise PolicyRefused(f"the booted release is not approved with svn ≥ {to}",
                                 hint="boot and confirm the new release first, or pass --force")
        old, new = E.advance_floor(tcti, e, to)
        render.emit({"old_floor": old, "floor": new}, text=f"floor {old} → {new}")

    @app.command()
    def status(
        enrollment: Path = typer.Option(..., "--enrollment", "-e", help="Enrollment file."),
        approvals: Optional[Path] = typer.Option(None, "--approvals", "-a", help="Also match the live PCRs."),
        tcti: Optional[str] = typer.Option(None, "--tcti", "-T", help=_TCTI_HELP),
    ) -> None:
        """Counter, floor, window and which approval the live PCRs match."""
        from pcrtool import render

        e = _load_any_enrollment(enrollment)
        if getattr(e, "mode", "") != "signed":
            data = {"mode": e.mode, "index": f"{e.index:#x}", "leaves": len(e.leaves), "policy": e.policy}
        else:
            from pcrtool.tpm import enroll as E
            data = E.status(tcti, e, _approvals(approvals))
        render.emit(data, text="\n".join(f"{k}: {v}" for k, v in data.items()))


def _need(option: str):
    from pcrtool.errors import UsageError
    raise UsageError(f"this needs {option}")
