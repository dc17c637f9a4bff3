"""`pcrtool eventlog`: show, replay, verify, secureboot, cel — firmware event logs.

LOG defaults to the running machine's /sys/kernel/security/tpm0/binary_bios_measurements.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Parse, decode, replay and verify firmware event logs.")

_LOG_HELP = "Event log file (default: the running system's binary_bios_measurements; '-' = stdin)."


def _load(path: Optional[Path], *, allow_truncated: bool = False):
    from pcrtool import render, system
    from pcrtool.errors import FormatError
    from pcrtool.eventlog import parse_event_log

    data = system.read_event_log(path)
    source = str(path) if path is not None else "event log"
    try:
        return parse_event_log(data, source=source)
    except FormatError as e:
        if allow_truncated and e.partial is not None and getattr(e.partial, "events", None):
            render.warn(f"{e.message}; showing the {len(e.partial.events)} events before it")
            return e.partial
        raise


def _show_json_streaming(log_path, pcr, raw: bool, with_replay: bool) -> None:
    """Compact JSON for any size of log: validate every record first (nothing is printed for a
    corrupt log), then decode, replay and print chunk by chunk without keeping the events
    (large logs on two cores: ``pcrtool.eventlog.parallel``; ``PCRTOOL_JOBS=1`` = one process)."""
    import os

    from pcrtool import system
    from pcrtool.eventlog.parse import EventLogStream
    from pcrtool.eventlog.parallel import show_json

    buf = system.map_event_log(log_path)
    stream = EventLogStream(buf, source=str(log_path) if log_path is not None else "event log")
    jobs = os.environ.get("PCRTOOL_JOBS", "")
    show_json(buf, stream, decode=not raw, pcrs=pcr, with_replay=with_replay,
              workers=int(jobs) if jobs.isdigit() else None)


def _banks(text: Optional[str]):
    from pcrtool.model import HashAlg

    if not text:
        return None
    return [HashAlg.from_name(t) for t in text.split(",") if t.strip()]


@app.command()
def show(
    log_path: Optional[Path] = typer.Argument(None, metavar="LOG", help=_LOG_HELP),
    pcr: Optional[List[int]] = typer.Option(None, "--pcr", "-p",
                                            help="Only events of this PCR (repeatable; -1 = Windows' 0xFFFFFFFF)."),
    allow_truncated: bool = typer.Option(False, "--allow-truncated",
                                         help="Show the events before a truncated/corrupt record (exit 0)."),
    raw: bool = typer.Option(False, "--raw", help="JSON: leave out the decoded payloads."),
    with_replay: bool = typer.Option(False, "--replay", help="JSON: add the replayed PCR values (\"pcrs\")."),
) -> None:
    """List the events with their decoded payloads (table, or JSON with --json)."""
    from pcrtool import render
    from pcrtool.eventlog.decode import decode_event
    from pcrtool.eventlog.export import event_to_json

    if pcr:
        pcr = [p & 0xFFFFFFFF for p in pcr]
    if render.json_mode() and render.options().json != "pretty" and not allow_truncated:
        _show_json_streaming(log_path, pcr, raw, with_replay)
        return
    log = _load(log_path, allow_truncated=allow_truncated)
    events = [e for e in log.events if not pcr or e.pcr in pcr]
    if render.json_mode():
        from pcrtool.eventlog.export import log_header_json
        extra = {}
        if with_replay:
            from pcrtool.eventlog import replay as do_replay
            extra["pcrs"] = do_replay(log).pcrs.to_json()
        render.emit_json({**log_header_json(log),
                          "events": [event_to_json(e, log, decode=not raw) for e in events], **extra})
        return
    bank = log.banks[0] if log.banks else None
    for preferred in log.banks:
        if preferred.bank_name == "sha256":
            bank = preferred
    table = render.Table(["#", "pcr", "type", f"{bank.bank_name if bank else 'digest'}", "description"])
    for e in events:
        digest = e.digests.get(bank) if bank else None
        pcr_text = "-1" if e.pcr == 0xFFFFFFFF else str(e.pcr)
        table.add(e.index, pcr_text, e.event_type.name,
                  digest.hex()[:16] if digest else "-", decode_event(e, log).describe())
    render.emit_table(table)
    if log.padding:
        render.info(f"{log.padding[1]} bytes of padding at offset {log.padding[0]}")


@app.command()
def replay(
    log_path: Optional[Path] = typer.Argument(None, metavar="LOG", help=_LOG_HELP),
    banks: Optional[str] = typer.Option(None, "--bank", "-b", help="Banks to replay, e.g. sha256,sha1."),
    userspace_log: Optional[Path] = typer.Option(None, "--userspace-log",
                                                 help="Also replay systemd's tpm2-measure.log (JSON-SEQ; 'auto' = the running system's)."),
    text: bool = typer.Option(False, "--text", help="Print N:alg=hex lines (systemd-measure style)."),
) -> None:
    """Replay the log into PCR values per bank."""
    from pcrtool import render
    from pcrtool.eventlog import replay as do_replay

    log = _load(log_path)
    result = do_replay(log, banks=_banks(banks))
    if userspace_log is not None:
        from pcrtool.eventlog.userspace import extend_with_userspace

        extend_with_userspace(result, _userspace(userspace_log))
    for w in result.warnings:
        render.warn(w)
    if result.gaps and not render.json_mode():
        gapped = sorted({(g.alg.bank_name, g.pcr) for g in result.gaps})
        render.warn("events without a digest for their bank (replay gaps): "
                    + ", ".join(f"{b}:{p}" for b, p in gapped))
    if text and not render.json_mode():
        render.emit_text(result.pcrs.to_text())
        return
    table = render.Table(["pcr", "bank", "value", "events"])
    for v in result.pcrs:
        table.add(v.pcr, v.alg.bank_name, v.value.hex(), len(result.contributors.get(v.pcr, ())))
    render.emit(result.to_json(), table=table)


def _userspace(path: Path):
    """Records of systemd's userspace log; ``auto`` = /run/log/systemd/tpm2-measure.log."""
    from pcrtool import render, system
    from pcrtool.eventlog.userspace import parse_userspace_log

    real = None if str(path) == "auto" else path
    data, torn = system.read_userspace_log(real)
    source = str(real) if real is not None else str(system.default_userspace_log_path())
    if torn:
        render.warn(f"{source} is being written (sticky bit set); its last record may be incomplete")
    return parse_userspace_log(data, source=source)


@app.command()
def verify(
    log_path: Optional[Path] = typer.Argument(None, metavar="LOG", help=_LOG_HELP),
    pcrs_file: Optional[Path] = typer.Option(None, "--pcrs", metavar="FILE",
                                             help="PCR values: N:alg=hex lines, tpm2_pcrread YAML or JSON."),
    sysfs: bool = typer.Option(False, "--sysfs", help="Compare with /sys/class/tpm/tpm0/pcr-<bank>/<n>."),
    tcti: Optional[str] = typer.Option(None, "--tcti",
                                       help="Read the PCRs from a TPM (e.g. device:/dev/tpmrm0, swtpm:…); "
                                            "without any source, $PCRTOOL_TCTI is used if set."),
    userspace_log: Optional[Path] = typer.Option(None, "--userspace-log",
                                                 help="Also replay systemd's tpm2-measure.log ('auto' = the running system's)."),
) -> None:
    """Replay the log, compare with real PCR values, check payload digests (exit 3 on mismatch)."""
    from pcrtool import render
    from pcrtool.errors import ReplayMismatch, UsageError
    from pcrtool.eventlog import replay as do_replay
    from pcrtool.eventlog.compare import compare_with_pcrs
    from pcrtool.eventlog.families import verify_payload_digests

    sources = sum(x for x in (pcrs_file is not None, sysfs, tcti is not None))
    if sources > 1:
        raise UsageError("give only one of --pcrs, --sysfs, --tcti")
    log = _load(log_path)
    result = do_replay(log)
    if userspace_log is not None:
        from pcrtool.eventlog.userspace import extend_with_userspace

        records = _userspace(userspace_log)
        for rec in records:
            if rec.digest_valid() is False:
                where = f"PCR {rec.pcr}" if rec.pcr is not None else f"NV index {rec.nv_index:#x}"
                render.warn(f"userspace record {rec.index} ({where}): digest is not the hash of "
                            f"its string {rec.string!r:.60}")
        extend_with_userspace(result, records)
    warnings = verify_payload_digests(log)
    for w in warnings:
        render.warn(str(w))
    if sources == 0:
        import os

        from pcrtool import system
        if os.environ.get("PCRTOOL_TCTI"):
            tcti = os.environ["PCRTOOL_TCTI"]
        elif system.default_event_log_path().exists() and log_path is None:
            sysfs = True
        else:
            raise UsageError("nothing to compare with", hint="give --pcrs FILE, --sysfs or --tcti")
    actual = _actual_pcrs(pcrs_file, sysfs, tcti, result.banks)
    comparison = compare_with_pcrs(result, actual)
    table = render.Table(["pcr", "bank", "status", "replayed", "actual"])
    for row in comparison.rows:
        table.add(row.pcr, row.alg.bank_name, str(row.status),
                  row.replayed.hex() if row.replayed else "-", row.actual.hex())
    table.footer = _verdict(comparison, warnings)
    doc = {**comparison.to_json(), "payloadWarnings": [w.to_json() for w in warnings],
           "gaps": result.to_json()["gaps"]}
    render.emit(doc, table=table)
    if not comparison.rows:
        raise UsageError("no PCR of the log's banks to compare with",
                         hint=f"the log has banks {', '.join(b.bank_name for b in log.banks)}")
    if not comparison.ok:
        if not render.json_mode():
            for row in comparison.mismatches:
                render.info(f"PCR {row.pcr} {row.alg.bank_name} {row.status}: fed by events "
                            + ", ".join(map(str, row.events)))
        pcrs = comparison.mismatching_pcrs()
        raise ReplayMismatch(f"replayed PCR(s) {', '.join(map(str, pcrs))} differ from the actual values",
                             hint="the log does not describe this boot, or a PCR was extended outside it",
                             pcrs=pcrs)


def _verdict(comparison, warnings) -> str:
    """The one line after `eventlog verify`'s table."""
    if not comparison.rows:
        return "nothing compared"
    banks = ",".join(sorted({r.alg.bank_name for r in comparison.rows}))
    extra = f"; {len(warnings)} event payload warning(s)" if warnings else ""
    if comparison.ok:
        return f"OK: the log replays to all {len(comparison.rows)} PCR value(s) compared ({banks}){extra}"
    bad = ", ".join(map(str, comparison.mismatching_pcrs()))
    return (f"MISMATCH: PCR {bad} differ from the replayed log ({len(comparison.mismatches)} of "
            f"{len(comparison.rows)} value(s)){extra}")


def _actual_pcrs(pcrs_file, sysfs, tcti, banks):
    from pcrtool.model import PcrSelection, PcrValues

    if pcrs_file is not None:
        from pcrtool.fileio import read_text
        return PcrValues.parse(read_text(pcrs_file, what="PCR values file"), source=str(pcrs_file))
    if sysfs:
        from pcrtool import system
        return system.read_sysfs_pcrs(banks)
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        available = set(tpm.banks())
        selection = PcrSelection({alg: tuple(range(24)) for alg in banks if alg in available})
        return tpm.read_pcrs(selection)


@app.command()
def secureboot(
    log_path: Optional[Path] = typer.Argument(None, metavar="LOG", help=_LOG_HELP),
) -> None:
    """Secure Boot state: enabled?, PK/KEK/db/dbx, and the authority that verified each image."""
    from pcrtool import render
    from pcrtool.eventlog.secureboot import secure_boot_report

    report = secure_boot_report(_load(log_path))
    for w in report.warnings:
        render.warn(w)
    if render.json_mode():
        render.emit_json(report.to_json())
        return
    state = {True: "enabled", False: "disabled", None: "unknown"}[report.enabled]
    lines = [f"Secure Boot: {state}"]
    for name, value in report.modes.items():
        lines.append(f"{name}: {'yes' if value else 'no'}")
    for name, entries in report.databases.items():
        certs = [e for e in entries if "x509" in e]
        lines.append(f"{name}: {len(entries)} entries ({len(certs)} certificates)")
        for e in certs:
            x = e["x509"]
            lines.append(f"  {x['subject']}  sha256:{x['sha256Fingerprint'][:16]}")
    for a in report.shim_policy:
        lines.append(f"shim policy (#{a.event}): {a.description.splitlines()[0] if a.description else a.variable}")
    lines.append("Loaded images:")
    for img in report.images:
        auth = (img.authority.description if img.authority else
                "nothing (Secure Boot is off)" if report.enabled is False else "(no new authority logged)")
        lines.append(f"  #{img.event} PCR {img.pcr} {img.path}")
        lines.append(f"      verified by: {auth}")
    render.emit_text("\n".join(lines))


@app.command()
def cel(
    log_path: Optional[Path] = typer.Argument(None, metavar="LOG", help=_LOG_HELP),
    userspace_log: Optional[Path] = typer.Option(None, "--userspace-log",
                                                 help="Merge systemd's tpm2-measure.log (JSON-SEQ; 'auto' = the running system's)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to a file (atomically)."),
) -> None:
    """Export the (combined) log as TCG CEL-JSON."""
    import json

    from pcrtool import render
    from pcrtool.eventlog.cel import to_cel_json

    log = _load(log_path)
    records = to_cel_json(log, _userspace(userspace_log) if userspace_log is not None else None)
    if output is not None:
        from pcrtool.fileio import write_atomic
        write_atomic(output, (json.dumps(records, indent=1) + "\n").encode())
        return
    render.emit_json(records)
