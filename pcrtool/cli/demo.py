"""`pcrtool demo`: the end-to-end story in under a minute, on a private swtpm.

1. inspect the bundled firmware event log (a real OVMF + swtpm Secure Boot capture; parse, replay
   and compare with the PCRs the TPM held after that boot);
2. predict four UKI releases on top of it (PCR 7 from the log, PCR 11 from the UKI sections);
3. make an ephemeral signing key and sign approvals with the svn in the policyRef;
4. run the validation matrix (signed mode with downgrade protection, and allowlist mode) on swtpm.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Run the bundled end-to-end demo (ephemeral key, swtpm matrix).")

DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"


def build_demo_releases(log_bytes: bytes, spec: dict):
    """(PolicyRelease list, policy PCRs, parsed log, replay) from the log and the release spec."""
    from pcrtool.eventlog import parse_event_log, replay
    from pcrtool.model import HashAlg
    from pcrtool.policy.releases_file import Measurement, PolicyRelease, replay_measurements
    from pcrtool.predict.uki import phase_measurements, predict_pcr11, section_measurements

    bank = HashAlg.SHA256
    log = parse_event_log(log_bytes, source="demo event log")
    replayed = replay(log)
    pcrs = tuple(spec.get("pcrs", [7, 11]))
    phase = spec.get("phase", "enter-initrd")
    firmware = [Measurement(e.pcr, {bank: e.digests[bank]}) for e in log.events
                if e.pcr in pcrs and e.pcr != 11 and bank in e.digests and _extended(e)]
    releases = []
    for r in spec["releases"]:
        sections = {k: v.encode() for k, v in r["sections"].items()}
        stub = section_measurements(sections, [bank]) + phase_measurements(phase, [bank])
        meas = tuple(firmware) + tuple(Measurement(m.pcr, {bank: m.digests[bank]}) for m in stub)
        predicted = replay_measurements(meas)
        # the PCR 11 prediction must equal systemd-measure's algorithm as pcrtool.predict implements it
        expect11 = predict_pcr11(sections, [bank], [phase]).value(phase, bank)
        assert predicted.get(bank, 11) == expect11, "PCR 11 replay disagrees with predict_pcr11"
        for p in pcrs:
            if p != 11 and replayed.pcrs.get(bank, p) is not None:
                assert predicted.get(bank, p) == replayed.pcrs.get(bank, p), f"PCR {p} differs from the log"
        releases.append(PolicyRelease(r["name"], r["version"], int(r["svn"]), meas, predicted,
                                      bool(r.get("allowed", True))))
    return releases, pcrs, log, replayed


def _extended(event) -> bool:
    from pcrtool.tcg.constants import EventType
    return event.event_type != EventType.EV_NO_ACTION


def releases_json(releases, pcrs, public_pem: str) -> str:
    return json.dumps({"public_key": public_pem, "pcrs": list(pcrs), "releases": [
        {"name": r.name, "version": r.version, "svn": r.svn, "allowed": r.allowed,
         "measurements": [{"pcr": m.pcr, **{a.bank_name: d.hex() for a, d in m.digests.items()}}
                          for m in r.measurements]} for r in releases]}, indent=1) + "\n"


@app.command()
def demo(
    keep: Optional[Path] = typer.Option(None, "--keep", metavar="DIR",
                                        help="Write the demo's key, releases and approvals to DIR "
                                             "(must not exist) so you can rerun `pcrtool validate`."),
    log: Optional[Path] = typer.Option(None, "--log", help="Use this firmware event log instead of "
                                       "the bundled one (its PCR 7 events are kept)."),
) -> None:
    """Inspect an event log, predict releases, sign approvals with an ephemeral key and prove the
    unlock/downgrade matrix on swtpm (signed mode with floor counter, and allowlist mode)."""
    import os

    os.environ.setdefault("TSS2_LOG", "all+none")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from pcrtool import fileio, render
    from pcrtool.cli.validate import emit_matrices
    from pcrtool.errors import InputFileError
    from pcrtool.model import HashAlg
    from pcrtool.policy.approvals import Approvals, ApprovalTarget, build_entries, sign_entries, verify_entry
    from pcrtool.policy import digests
    from pcrtool.tpm.policy_allowlist_validate import run_allowlist_matrix
    from pcrtool.tpm.policy_validate import SignedSetup, _sign_with, run_signed_matrix

    started = time.monotonic()
    bank = HashAlg.SHA256
    say = render.info
    log_bytes = fileio.read_bytes(log or DEMO_DIR / "ovmf-secureboot-eventlog.bin", what="event log")
    spec = json.loads(fileio.read_text(DEMO_DIR / "releases.json", what="demo releases"))
    releases, pcrs, parsed, replayed = build_demo_releases(log_bytes, spec)
    say(f"[1/4] event log: {len(parsed.events)} events, banks "
        f"{', '.join(b.bank_name for b in parsed.banks)}; replayed PCR 7 = "
        f"{replayed.pcrs.get(bank, 7).hex()[:16]}…")
    if log is None:  # the bundled capture comes with the PCRs the TPM held after that boot
        from pcrtool.model import PcrValues
        captured = PcrValues.parse(fileio.read_text(DEMO_DIR / "ovmf-secureboot-pcrs.json"), source="captured PCRs")
        same = [p for p in range(8) if replayed.pcrs.get(bank, p) == captured.get(bank, p)]
        say(f"      replay equals the TPM's PCRs after the real OVMF boot for PCRs {same}")
    for r in releases:
        say(f"[2/4] release {r.label:<18} svn {r.svn} {'allowlisted' if r.allowed else 'NOT allowlisted'}: "
            + ", ".join(f"PCR {p}={r.predicted.get(bank, p).hex()[:12]}…" for p in pcrs))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    entries = sign_entries(build_entries(
        [ApprovalTarget(r.selected(bank, pcrs), r.svn, r.label) for r in releases if r.allowed],
        public, [bank]), _sign_with(key))
    approvals = Approvals(tuple(entries))
    for e in entries:
        verify_entry(e, public)
    say(f"[3/4] ephemeral RSA-2048 key {digests.public_key_fingerprint(public).hex()[:16]}…; "
        f"{len(entries)} approvals signed over pol || SHA256(\"pcrtool-svn=N\")")
    if keep is not None:
        if keep.exists():
            raise InputFileError(f"{keep} exists already", hint="give a new directory for --keep")
        keep.mkdir(parents=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fileio.write_private(keep / "signing-key.pem", pem)
        pub_pem = public.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        fileio.write_atomic(keep / "releases.json", releases_json(releases, pcrs, pub_pem))
        fileio.write_atomic(keep / "approvals.pcrsig", approvals.dumps(pretty=True))
        say(f"      kept in {keep}/: rerun with `pcrtool validate --allowlist {keep}/releases.json "
            f"--approvals {keep}/approvals.pcrsig --key {keep}/signing-key.pem`")
    say("[4/4] validation matrix on swtpm …")
    signed = run_signed_matrix(SignedSetup(releases, approvals, public, key, bank, pcrs))
    allow = run_allowlist_matrix(releases, bank, pcrs)
    elapsed = time.monotonic() - started
    unlock_costs = sorted({c.commands for m in (signed, allow) for c in m.cells if c.commands})
    emit_matrices([signed, allow], extra={"seconds": round(elapsed, 2),
                                          "tpm_commands_per_unlock": unlock_costs})
    say(f"pcrtool demo: done in {elapsed:.1f} s; TPM commands per unlock: "
        f"{', '.join(map(str, unlock_costs))}")
