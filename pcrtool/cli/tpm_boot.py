"""`pcrtool tpm boot-release`: boot a predicted release into a TPM (one TPM2_PCR_Extend per event).

The predictions file (`pcrtool predict release`) carries, per release and phase, the events whose
replay from reset gives the predicted values. Extending them into a TPM whose PCRs are at reset —
a fresh or rebooted swtpm — puts it in the state the release's boot would, so `tpm enroll`,
`tpm unlock` or a clevis pin can be tried against it. Registered into `pcrtool tpm` by cli/tpm.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _find_release(releases, wanted: str, source: str):
    """A release by ``NAME-VERSION``, ``NAME VERSION``, or its version alone when unambiguous."""
    from pcrtool.errors import UsageError

    hits = [r for r in releases if wanted in (f"{r.name}-{r.version}", f"{r.name} {r.version}")]
    if not hits:
        hits = [r for r in releases if r.version == wanted]
    if len(hits) == 1:
        return hits[0]
    names = ", ".join(f"{r.name}-{r.version}" for r in releases)
    if not hits:
        raise UsageError(f"no release {wanted!r} in {source}", hint=f"releases: {names}")
    raise UsageError(f"{wanted!r} names {len(hits)} releases in {source}", hint=f"use NAME-VERSION: {names}")


def boot_release(
    predictions: Path = typer.Argument(..., help="Predictions file from `pcrtool predict release`."),
    release: str = typer.Argument(..., metavar="RELEASE", help="NAME-VERSION (or VERSION) of the release to boot."),
    phase: Optional[str] = typer.Option(None, "--phase", help="Phase path (default: the release's first)."),
    pcrs: Optional[str] = typer.Option(None, "--pcrs", help="Only extend these PCRs, e.g. 7,11."),
    tcti: Optional[str] = typer.Option(None, "--tcti", "-T", metavar="TCTI",
                                       help="TPM to extend (default $PCRTOOL_TCTI, else device:/dev/tpmrm0)."),
) -> None:
    """Extend a predicted release's events into a TPM whose PCRs are at reset, then check that
    the TPM holds the predicted values (exit 3 when it does not)."""
    from pcrtool import fileio, render
    from pcrtool.errors import MismatchError, PcrtoolError
    from pcrtool.eventlog.replay import initial_pcr_value
    from pcrtool.model import PcrSelection
    from pcrtool.predict.manifest import load_predictions
    from pcrtool.predict.uki import normalize_phase
    from pcrtool.tpm import open_tpm

    releases = load_predictions(fileio.read_bytes(predictions, what="predictions file"), source=str(predictions))
    r = _find_release(releases, release, str(predictions))
    key = normalize_phase(phase) if phase is not None else r.phases[0]
    if key not in r.predictions:
        raise PcrtoolError(f"{r.id} has no phase {phase!r}", hint=f"phases: {', '.join(map(repr, r.phases))}")
    events = r.measurements.get(key)
    if not events:
        raise PcrtoolError(f"{r.id} phase {key!r} has no event list (precomputed values): its boot cannot "
                           "be replayed", hint="predict it from artefacts ([uki], [boot], [secureboot]…)")
    only = {int(p) for p in pcrs.split(",")} if pcrs else None
    events = [m for m in events if only is None or m.pcr in only]
    touched = sorted({m.pcr for m in events})
    with open_tpm(tcti) as tpm:
        active = [b for b in r.banks if b in tpm.banks()]
        if not active:
            raise PcrtoolError(f"the TPM has none of the release's banks ({', '.join(b.bank_name for b in r.banks)})")
        sel = PcrSelection({b: tuple(touched) for b in active})
        before = tpm.read_pcrs(sel)
        dirty = sorted({p for b in active for p in touched if before.get(b, p) != initial_pcr_value(b, p)})
        if dirty:
            raise PcrtoolError(f"PCR {','.join(map(str, dirty))} of the TPM are not at reset: booting "
                               f"{r.id} on top would not give its values",
                               hint="restart the TPM first (a fresh swtpm, or `pcrtool swtpm` again)")
        for m in events:
            tpm.extend(m.pcr, {b: d for b, d in m.digests.items() if b in active})
        after = tpm.read_pcrs(sel)
    predicted = r.predictions[key]
    bad = sorted({p for b in active for p in touched
                  if predicted.get(b, p) is not None and after.get(b, p) != predicted.get(b, p)})
    out = {"release": f"{r.name}-{r.version}", "svn": r.svn, "phase": key, "events": len(events),
           "pcrs": touched, "banks": [b.bank_name for b in active], "matches": not bad,
           "values": {b.bank_name: {str(p): after.get(b, p).hex() for p in touched} for b in active}}
    render.emit(out, text=f"booted {r.id} (svn {r.svn}, phase {key or ':'}): {len(events)} event(s) into "
                          f"PCR {','.join(map(str, touched))}; the TPM "
                          + ("holds the predicted values" if not bad else f"differs in PCR {bad}"))
    if bad:
        raise MismatchError(f"after booting {r.id} the TPM differs from the prediction in PCR "
                            f"{','.join(map(str, bad))}", pcrs=tuple(bad))


def register(app: typer.Typer) -> None:
    app.command("boot-release")(boot_release)
