"""`pcrtool pcrlock`: systemd-pcrlock's files — write .pcrlock records and pcrlock.d trees for
releases (byte-identical to `systemd-pcrlock lock-*`), read them and pcrlock.json policies.

The lock-* commands take files where systemd reads the running machine (EFI variables, the
firmware log, the root disk): a build host can write what the target will need.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("systemd-pcrlock: write .pcrlock records and pcrlock.d trees, read them and pcrlock.json.")

_OUT = "Write the .pcrlock here ('-' = stdout)."


def _read(path, what: str) -> bytes:
    from pcrtool.fileio import read_bytes
    return read_bytes(path, what=what)


def _write(output: str, f, what: str = ".pcrlock file") -> None:
    from pcrtool import fileio, render
    data = f.dumps()
    if fileio.is_stdout(output):
        import sys
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    fileio.write_atomic(output, data, what=what)
    render.info(f"wrote {output} ({len(f.records)} record(s))")


def _log(path: Path):
    from pcrtool.eventlog import parse_event_log
    return parse_event_log(_read(path, "event log"), source=str(path))


@app.command("lock-pe")
def lock_pe(file: Path = typer.Argument(..., help="PE binary (boot loader, add-on …)."),
            pcr: int = typer.Option(4, "--pcr", min=0, max=23, help="PCR (default 4)."),
            output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-pe`: the PE's Authenticode hash in every bank."""
    from pcrtool.pcrlock import lock_pe as lock
    _write(output, lock(_read(file, "PE binary"), pcr=pcr))


@app.command("lock-uki")
def lock_uki(file: Path = typer.Argument(..., help="UKI."),
             output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-uki`: PCR 4 PE hash, then the stub's PCR 11 section records."""
    from pcrtool.pcrlock import lock_uki as lock
    _write(output, lock(_read(file, "UKI")))


@app.command("lock-kernel-cmdline")
def lock_kernel_cmdline(file: Path = typer.Argument(..., help="File holding the kernel command line."),
                        output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-kernel-cmdline FILE`: PCR 9, UTF-16LE with NUL."""
    from pcrtool.errors import FormatError
    from pcrtool.pcrlock import lock_kernel_cmdline as lock
    try:
        text = _read(file, "command line").decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{file}: the command line is not UTF-8") from None
    _write(output, lock(text))


@app.command("lock-kernel-initrd")
def lock_kernel_initrd(file: Path = typer.Argument(..., help="initrd file."),
                       output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-kernel-initrd FILE`: PCR 9, the initrd's digest."""
    from pcrtool.pcrlock import lock_kernel_initrd as lock
    _write(output, lock(_read(file, "initrd")))


@app.command("lock-secureboot-policy")
def lock_secureboot_policy(
        var: List[str] = typer.Option([], "--var", metavar="NAME=FILE",
                                      help="A variable (SecureBoot, PK, KEK, db, dbx, dbt, dbr): ESL, .auth "
                                           "or efivarfs dump; SecureBoot may be 0 or 1. Repeatable."),
        efivars: Optional[Path] = typer.Option(None, "--efivars", help="An efivarfs directory (NAME-GUID files)."),
        output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-secureboot-policy`, from variable files instead of this machine's."""
    from pcrtool.errors import UsageError
    from pcrtool.pcrlock import lock_secureboot_policy as lock
    from pcrtool.predict.secureboot import _GUID_OF, read_variable_file

    values: dict[str, bytes | None] = {}
    if efivars is not None:
        for name, guid in _GUID_OF.items():
            p = efivars / f"{name}-{guid}"
            if p.exists():
                raw = _read(p, f"EFI variable {name}")
                if len(raw) < 4:
                    raise UsageError(f"{p}: not an efivarfs file (no attribute word)")
                values[name] = raw[4:]
    for item in var:
        name, sep, value = item.partition("=")
        if not sep or name not in _GUID_OF:
            raise UsageError(f"--var {item!r}: expected NAME=FILE with NAME one of {', '.join(_GUID_OF)}")
        if name == "SecureBoot" and value in ("0", "1"):
            values[name] = bytes([int(value)])
        else:
            values[name] = read_variable_file(_read(value, f"variable {name}"), name=name, source=value)
    _write(output, lock(values))


@app.command("lock-secureboot-authority")
def lock_secureboot_authority(log: Path = typer.Argument(..., help="Firmware event log of the target."),
                              output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-secureboot-authority`: the log's PCR 7 authority records (Secure
    Boot off: nothing is written, exit 0, as systemd)."""
    from pcrtool import render
    from pcrtool.pcrlock import lock_secureboot_authority as lock, secure_boot_enabled
    parsed = _log(log)
    if not secure_boot_enabled(parsed):
        render.info("Secure Boot is off in this log: no authority .pcrlock (as systemd-pcrlock)")
        return
    _write(output, lock(parsed))


def _firmware(which: str, log: Path, early: str, late: str) -> None:
    from pcrtool.pcrlock import lock_firmware
    e, lt = lock_firmware(_log(log), which)
    _write(early, e)
    _write(late, lt)


@app.command("lock-firmware-code")
def lock_firmware_code(log: Path = typer.Argument(..., help="Firmware event log of the target."),
                       early: str = typer.Option(..., "--early", help="250-firmware-code-early .pcrlock to write."),
                       late: str = typer.Option(..., "--late", help="550-firmware-code-late .pcrlock to write.")) -> None:
    """As `systemd-pcrlock lock-firmware-code`: PCRs 0 and 2 (and PCR 4 up to the boot loader)."""
    _firmware("code", log, early, late)


@app.command("lock-firmware-config")
def lock_firmware_config(log: Path = typer.Argument(..., help="Firmware event log of the target."),
                         early: str = typer.Option(..., "--early", help="250-firmware-config-early .pcrlock."),
                         late: str = typer.Option(..., "--late", help="550-firmware-config-late .pcrlock.")) -> None:
    """As `systemd-pcrlock lock-firmware-config`: PCRs 1 and 3 (and PCR 5 up to its separator)."""
    _firmware("config", log, early, late)


@app.command("lock-gpt")
def lock_gpt(disk: Path = typer.Argument(..., help="Whole-disk image (or block device)."),
             output: str = typer.Option(..., "--output", "-o", help=_OUT)) -> None:
    """As `systemd-pcrlock lock-gpt DISK`: PCR 5, the GPT header and its used entries."""
    from pcrtool.pcrlock import lock_gpt as lock
    _write(output, lock(_read(disk, "disk image")))


@app.command()
def tree(manifests: List[Path] = typer.Argument(None, metavar="[MANIFEST...]", help="Release manifests (TOML/JSON)."),
         allowlist: Optional[Path] = typer.Option(None, "--allowlist", help="Only allowlisted releases get a variant."),
         demo_releases: Optional[Path] = typer.Option(None, "--demo-releases",
                                                      help="Releases in pcrtool's demo format (inline UKI sections)."),
         reference_log: Optional[Path] = typer.Option(None, "--reference-log",
                                                      help="Target's firmware log: firmware components from it."),
         output: Path = typer.Option(..., "--output", "-o", help="pcrlock.d directory to write (must not exist)."),
         ) -> None:
    """Write a pcrlock.d tree: one variant per allowlisted release in every component
    (NNN-name.pcrlock.d/<name>-<version>.pcrlock). Use with systemd's own components:
    systemd-pcrlock make-policy --components=/usr/lib/pcrlock.d --components=DIR."""
    import json
    import shutil

    from pcrtool import render
    from pcrtool.cli.predict import _reader_for
    from pcrtool.errors import UsageError
    from pcrtool.pcrlock.tree import demo_components, manifest_components, tree_files
    from pcrtool.predict.manifest import parse_allowlist, parse_manifest

    if output.exists() or output.is_symlink():
        raise UsageError(f"{output} exists already", hint="give a new directory (a tree is written whole)")
    if not manifests and demo_releases is None:
        raise UsageError("give release manifests or --demo-releases")
    allow = parse_allowlist(_read(allowlist, "allowlist"), source=str(allowlist)) if allowlist else None
    ref = _read(reference_log, "reference log") if reference_log else None
    releases = []
    for path in manifests or []:
        m = parse_manifest(_read(path, "manifest"), source=str(path))
        if allow is not None and not allow.allows(m.name, m.version, m.svn):
            render.info(f"{m.name} {m.version}: not allowlisted, no variant")
            continue
        releases.append(manifest_components(m, _reader_for(path), reference_log=ref))
    if demo_releases is not None:
        releases += demo_components(json.loads(_read(demo_releases, "demo releases")))
    files = tree_files(releases)
    tmp = output.with_name(f".{output.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, data in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        tmp.rename(output)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        from pcrtool.errors import PcrtoolError
        raise PcrtoolError(f"cannot write {output}: {e.strerror}") from None
    comps = sorted({rel.split("/")[0] for rel in files})
    render.emit({"output": str(output), "components": comps, "releases": [r.variant for r in releases]},
                text=f"wrote {output}: {len(comps)} component(s) × {len(releases)} release(s)")


def _tree_files(directory: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.name.endswith(".pcrlock"):
            out[p.name] = _read(p, ".pcrlock")
        elif p.is_dir() and p.name.endswith(".pcrlock.d"):
            for q in sorted(p.iterdir()):
                if q.is_file() and q.name.endswith(".pcrlock"):
                    out[f"{p.name}/{q.name}"] = _read(q, ".pcrlock")
    return out


@app.command()
def show(path: Path = typer.Argument(..., help="A .pcrlock file, a pcrlock.d directory or a pcrlock.json.")) -> None:
    """Show records, components and variants, or a policy's accepted values."""
    import json

    from pcrtool import render
    from pcrtool.pcrlock import PcrlockFile, PcrlockPolicy
    from pcrtool.pcrlock.tree import read_tree

    if path.is_dir():
        comps = read_tree(_tree_files(path))
        doc = [{"component": c.id, "variants": [{"id": v.id, "path": v.path,
                                                  "records": [r.to_json() for r in v.file.records]}
                                                 for v in c.variants]} for c in comps]
        table = render.Table(["component", "variant", "records (pcr:sha256)"])
        for c in comps:
            for v in c.variants:
                table.add(c.id, v.id, " ".join(f"{r.pcr}:{(r.digest(_sha256()) or b'').hex()[:12]}"
                                              for r in v.file.records) or "(none)")
        render.emit(doc, table=table)
        return
    data = _read(path, "file")
    try:
        is_policy = isinstance(json.loads(data), dict) and "pcrValues" in json.loads(data)
    except ValueError:
        is_policy = False
    if is_policy:
        pol = PcrlockPolicy.parse(data, source=str(path))
        table = render.Table(["pcr", f"accepted {pol.bank.bank_name} values"])
        for pcr, vals in sorted(pol.values.items()):
            table.add(pcr, " ".join(v.hex() for v in vals))
        render.emit({"pcrBank": pol.bank.bank_name, "nvIndex": pol.nv_index,
                     "pcrValues": [{"pcr": p, "values": [v.hex() for v in vals]} for p, vals in sorted(pol.values.items())]},
                    table=table)
        return
    f = PcrlockFile.parse(data, source=str(path))
    table = render.Table(["pcr", "bank", "digest"])
    for r in f.records:
        for alg, d in r.digests:
            table.add(r.pcr, alg.bank_name, d.hex())
    render.emit({"records": [r.to_json() for r in f.records]}, table=table)


def _sha256():
    from pcrtool.model import HashAlg
    return HashAlg.SHA256


@app.command()
def predict(components: List[Path] = typer.Option(..., "--components", metavar="DIR",
                                                 help="pcrlock.d directories, in systemd's order (repeatable)."),
            pcr: List[int] = typer.Option(..., "--pcr", min=0, max=23, help="PCR to predict (repeatable)."),
            location: Optional[str] = typer.Option("760-:940-", "--location",
                                                   help="START[:END] as systemd-pcrlock's (default 760-:940-; "
                                                        "make-policy.service uses 770)."),
            bank: str = typer.Option("sha256", "--bank", help="Bank.")) -> None:
    """The values systemd-pcrlock predicts from components alone (every combination of variants,
    PCRs from reset): what make-policy puts into pcrlock.json when the log matches."""
    from pcrtool import render
    from pcrtool.model import HashAlg
    from pcrtool.pcrlock.tree import merge_trees, predict_tree, read_tree

    start, _, end = (location or "").partition(":")
    comps = merge_trees([read_tree(_tree_files(d)) for d in components])
    alg = HashAlg.from_name(bank)
    out = predict_tree(comps, sorted(set(pcr)), alg, start=start or None, end=(end or start) or None)
    doc = {"pcrBank": alg.bank_name, "pcrValues": [{"pcr": p, "values": sorted(v.hex() for v in vals)}
                                                   for p, vals in sorted(out.items())]}
    table = render.Table(["pcr", f"{alg.bank_name} values"])
    for item in doc["pcrValues"]:
        table.add(item["pcr"], " ".join(item["values"]))
    render.emit(doc, table=table)


@app.command()
def accepts(policy: Path = typer.Argument(..., help="pcrlock.json (systemd-pcrlock make-policy)."),
            predictions: Path = typer.Option(..., "--predictions",
                                             help="Predictions file (pcrtool predict release)."),
            phase: Optional[str] = typer.Option(None, "--phase", help="Phase path to check (default: each release's first)."),
            ) -> None:
    """Which predicted releases a pcrlock policy accepts (PolicyOR per PCR, AND across PCRs)."""
    from pcrtool import render
    from pcrtool.pcrlock import PcrlockPolicy
    from pcrtool.predict.predictions import load_predictions

    pol = PcrlockPolicy.parse(_read(policy, "pcrlock.json"), source=str(policy))
    releases = load_predictions(_read(predictions, "predictions file"), source=str(predictions))
    rows = []
    table = render.Table(["release", "svn", "allowlisted", "policy", "why not"])
    for r in releases:
        ok, why = pol.accepts(r.values(phase))
        rows.append({"release": r.id, "svn": r.svn, "allowed": r.allowed, "accepted": ok, "problems": why})
        table.add(r.id, r.svn, "yes" if r.allowed else "no", "accepts" if ok else "refuses", "; ".join(why))
    render.emit({"pcrBank": pol.bank.bank_name, "pcrs": sorted(pol.values), "releases": rows}, table=table)
