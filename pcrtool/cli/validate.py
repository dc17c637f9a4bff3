"""`pcrtool validate`: prove the unlock/downgrade matrix of releases on a real swtpm."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Prove the unlock/downgrade matrix of releases on swtpm.")


def load_key_any(path: str):
    """(public key, private key or None) from a private key, public key or certificate file."""
    from cryptography.hazmat.primitives import serialization

    from pcrtool import fileio
    from pcrtool.sign.keyfile import load_public_key_file

    if path.startswith("pkcs11:"):  # a token key: its public half (the token signs nothing here)
        return load_public_key_file(path), None
    path = path.removeprefix("file:")
    data = fileio.read_bytes(path, what="key")
    for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
        try:
            private = loader(data, password=None)
            return private.public_key(), private
        except (ValueError, TypeError):
            pass
    return load_public_key_file(path), None


def matrix_table(matrix):
    from pcrtool.render import Table

    t = Table(["ok", "scenario", "release", "expected", "actual", "tpm rc", "detail"],
              title=f"unlock matrix ({matrix.mode} mode)")
    for c in matrix.cells:
        t.add("✓" if c.ok else "✗", c.scenario, c.release, c.expected, c.actual, c.rc or "-",
              c.detail)
    return t


def emit_matrices(matrices, extra: dict | None = None) -> None:
    from pcrtool import render
    from pcrtool.errors import MismatchError

    data = {"ok": all(m.ok for m in matrices), "matrices": [m.to_json() for m in matrices]}
    if extra:
        data.update(extra)
    if render.json_mode():
        render.emit_json(data)
    else:
        for m in matrices:
            render.emit_table(matrix_table(m))
    bad = sum(1 for m in matrices for c in m.cells if not c.ok)
    total = sum(len(m.cells) for m in matrices)
    if bad:
        raise MismatchError(f"{bad} of {total} matrix cells did not behave as expected",
                            hint="a cell that unlocks where it should deny is a security bug")
    render.info(f"pcrtool: all {total} matrix cells behaved as expected")


@app.command()
def validate(
    allowlist: Path = typer.Option(..., "--allowlist", metavar="FILE",
                                   help="Releases JSON (measurements per release) or a predictions file."),
    approvals: Optional[Path] = typer.Option(None, "--approvals", metavar="FILE",
                                             help="The .pcrsig approvals (signed mode)."),
    key: Optional[str] = typer.Option(None, "--key", metavar="KEY",
                                      help="Signing key: public key/certificate, a pkcs11: URI, or the private key "
                                           "(then validation also signs a beyond-window release)."),
    pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs the policy binds, e.g. 7,11 "
                                       "(default: every PCR the releases set)."),
    bank: str = typer.Option("sha256", "--bank", help="PCR bank of the policy."),
    mode: str = typer.Option("auto", "--mode", help="signed, allowlist, both, or auto "
                             "(signed if --approvals is given, plus allowlist)."),
) -> None:
    """Start swtpm, enrol, and try every scenario: allowlisted releases unlock; revoked, tampered,
    unknown, wrongly signed, replayed and beyond-window ones do not. Exit 0 only if every cell of
    the matrix matches its expectation."""
    os.environ.setdefault("TSS2_LOG", "all+none")
    from pcrtool import fileio
    from pcrtool.errors import UsageError
    from pcrtool.model import HashAlg
    from pcrtool.policy.approvals import Approvals
    from pcrtool.policy.releases_file import parse_releases, selected_pcrs

    releases, doc = parse_releases(fileio.read_text(allowlist, what="allowlist"), source=str(allowlist))
    alg = HashAlg.from_name(bank)
    chosen = selected_pcrs(releases, alg, [int(p) for p in pcrs.split(",")] if pcrs else None)
    modes = {"auto": ["signed", "allowlist"] if approvals else ["allowlist"], "both": ["signed", "allowlist"],
             "signed": ["signed"], "allowlist": ["allowlist"]}.get(mode)
    if modes is None:
        raise UsageError(f"unknown --mode {mode!r}", hint="signed, allowlist, both or auto")
    matrices = []
    if "signed" in modes:
        if approvals is None:
            raise UsageError("signed mode needs --approvals")
        from pcrtool.policy.approvals import MAX_APPROVALS_BYTES
        apps = Approvals.parse(fileio.read_bytes(approvals, what="approvals", limit=MAX_APPROVALS_BYTES + 1),
                               source=str(approvals))
        if key:
            public, private = load_key_any(key)
        elif doc.get("public_key"):
            from cryptography.hazmat.primitives.serialization import load_pem_public_key
            public, private = load_pem_public_key(doc["public_key"].encode()), None
        else:
            raise UsageError("the signing key is unknown", hint="give --key PUBLIC.pem (or the private key)")
        matrices.append(run_signed(releases, apps, public, private, alg, chosen))
    if "allowlist" in modes:
        matrices.append(run_allowlist(releases, alg, chosen))
    emit_matrices(matrices)


def run_signed(releases, apps, public, private, alg, pcrs):
    from pcrtool.tpm.policy_validate import SignedSetup, run_signed_matrix

    return run_signed_matrix(SignedSetup(releases, apps, public, private, alg, tuple(pcrs)))


def run_allowlist(releases, alg, pcrs):
    from pcrtool.tpm.policy_allowlist_validate import run_allowlist_matrix

    return run_allowlist_matrix(releases, alg, tuple(pcrs))
