"""`pcrtool predict`: the PCR values a release will produce (PCR 11 UKI, 4 boot chain, 7 Secure
Boot, 12/9 command lines, 5 GPT), release manifests → predictions file, substitution into a log."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Predict the PCR values a release will produce.")

BANK_HELP = "PCR bank (repeatable): sha1, sha256, sha384, sha512"


def _banks(names: Optional[List[str]], default: tuple[str, ...]) -> list:
    from pcrtool.model import HashAlg

    return list(dict.fromkeys(HashAlg.from_name(n) for n in (names or default)))


def _read(path, what: str) -> bytes:
    from pcrtool.fileio import read_bytes

    return read_bytes(path, what=what)


def _emit_values(values, measurements=None, extra: dict | None = None) -> None:
    from pcrtool import render

    data = {"pcrs": values.to_json()}
    if measurements is not None:
        data["events"] = [{"pcr": m.pcr, "type": m.event_type.name if m.event_type is not None else "userspace",
                           "description": m.description,
                           "digests": {a.bank_name: d.hex() for a, d in m.digests.items()}} for m in measurements]
    data |= extra or {}
    render.emit(data, text=values.to_text())


# --- PCR 11 ------------------------------------------------------------------------------------

def _section_option(name: str):
    return typer.Option(None, f"--{name}", metavar="PATH", help=f"File with the .{name} section")


@app.command()
def uki(
    uki_file: Optional[Path] = typer.Argument(None, metavar="[UKI]", help="A unified kernel image (or give section files)"),
    linux: Optional[Path] = _section_option("linux"),
    osrel: Optional[Path] = _section_option("osrel"),
    cmdline: Optional[Path] = _section_option("cmdline"),
    initrd: Optional[Path] = _section_option("initrd"),
    ucode: Optional[Path] = _section_option("ucode"),
    splash: Optional[Path] = _section_option("splash"),
    dtb: Optional[Path] = _section_option("dtb"),
    uname: Optional[Path] = _section_option("uname"),
    sbat: Optional[Path] = _section_option("sbat"),
    pcrpkey: Optional[Path] = _section_option("pcrpkey"),
    profile: Optional[Path] = _section_option("profile"),
    dtbauto: Optional[Path] = _section_option("dtbauto"),
    hwids: Optional[Path] = _section_option("hwids"),
    efifw: Optional[Path] = _section_option("efifw"),
    profile_number: Optional[int] = typer.Option(None, "--profile-number", help="Multi-profile UKI: measure profile @N"),
    stub: str = typer.Option("auto", "--stub", help="systemd-stub version whose section list applies: auto (.sdmagic), newest, or e.g. 252"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: all four)"),
    phase: Optional[List[str]] = typer.Option(None, "--phase", help="Boot phase path (repeatable), e.g. enter-initrd or ':' (default: systemd-measure's four)"),
) -> None:
    """PCR 11 as systemd-stub + systemd-pcrextend produce it (systemd-measure calculate)."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.predict.uki import predict_pcr11, sections_from_uki

    files = {k: v for k, v in dict(linux=linux, osrel=osrel, cmdline=cmdline, initrd=initrd, ucode=ucode,
                                   splash=splash, dtb=dtb, uname=uname, sbat=sbat, pcrpkey=pcrpkey,
                                   profile=profile, dtbauto=dtbauto, hwids=hwids, efifw=efifw).items() if v}
    if (uki_file is None) == (not files):
        raise UsageError("give either a UKI file or section files (--linux=… …)",
                         hint="e.g. pcrtool predict uki fooos.efi, or --linux=vmlinuz --initrd=initrd.img")
    banks = _banks(bank, ("sha1", "sha256", "sha384", "sha512"))
    if uki_file is not None:
        if stub not in ("auto", "newest") and not stub.isdigit():
            raise UsageError(f"--stub takes auto, newest or a version number, not {stub!r}")
        version = "auto" if stub == "auto" else (None if stub == "newest" else int(stub))
        sections = sections_from_uki(_read(uki_file, "UKI"), profile=profile_number, stub=version)
    else:
        if ".linux" not in {f".{k}" for k in files}:
            raise UsageError("--linux is required with section files", hint="the kernel is the one mandatory section")
        sections = {f".{k}": _read(v, f".{k} section file") for k, v in files.items()}
        if stub.isdigit():
            from pcrtool.predict.uki import measured_sections
            sections = {k: v for k, v in sections.items() if k in measured_sections(int(stub))}
    pred = predict_pcr11(sections, banks, phase)
    if render.json_mode():
        render.emit_json(pred.to_measure_json())
    else:
        import sys
        # As systemd-measure calculate: the phase label on stderr, the values on stdout.
        for p in pred.phases:
            sys.stdout.flush()
            render.info(f"# PCR[11] Phase <{p or ':'}>")
            sys.stdout.write("".join(f"11:{alg.bank_name}={pred.value(p, alg).hex()}\n" for alg in pred.banks))
        sys.stdout.flush()


# --- PCR 4 -------------------------------------------------------------------------------------

def _warn_unaligned(name: str, data: bytes) -> None:
    """An unsigned image whose length is not a multiple of 8: signing pads it to 8 bytes and the
    padding is hashed, so the signed file's Authenticode digest (what firmware measures when the
    signed file boots) differs from this one."""
    from pcrtool import render
    from pcrtool.errors import PcrtoolError
    from pcrtool.pe import PeImage

    if len(data) % 8 == 0:
        return
    try:
        signed = PeImage.parse(data).cert_table_size > 0
    except PcrtoolError:
        return  # not a PE: the digest itself reports it
    if not signed:
        render.warn(f"{name}: unsigned and {len(data)} bytes, not a multiple of 8: signing pads it to 8 bytes "
                    f"(hashed), so the signed file's Authenticode digest differs; predict from the signed "
                    f"file (or pad the image to 8 bytes before predicting)")


@app.command()
def pe(
    images: List[Path] = typer.Argument(..., metavar="IMAGE...", help="Boot chain in load order: shim, loader, UKI/kernel"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: sha256)"),
    separator: str = typer.Option("00000000", "--separator", metavar="HEX", help="PCR 4 separator value"),
) -> None:
    """PCR 4: EFI action, separator, then each image's Authenticode digest."""
    from pcrtool.model import parse_hex
    from pcrtool.predict.events import replay_measurements
    from pcrtool.predict.pe import boot_chain_measurements

    banks = _banks(bank, ("sha256",))
    chain = [(str(p), _read(p, "PE image")) for p in images]
    for name, data in chain:
        _warn_unaligned(name, data)
    ms = boot_chain_measurements(chain, banks, separator_value=parse_hex(separator, what="--separator", size=4))
    _emit_values(replay_measurements(ms, banks), ms)


# --- PCR 7 -------------------------------------------------------------------------------------

def _variable_bytes(path: Path, name: str, fmt: str, owner) -> bytes:
    from pcrtool.predict.secureboot import variable_from_file

    return variable_from_file(_read(path, f"{name} file"), name=name, filename=path.name, fmt=fmt,
                              owner=owner, source=str(path))


@app.command()
def secureboot(
    secure_boot: str = typer.Option("1", "--secureboot", metavar="0|1|FILE", help="SecureBoot variable: 0, 1 or a file"),
    pk: Optional[Path] = typer.Option(None, "--pk", metavar="FILE", help="PK: ESL, .auth, efivarfs dump or certificate"),
    kek: Optional[Path] = typer.Option(None, "--kek", metavar="FILE", help="KEK (same forms)"),
    db: Optional[Path] = typer.Option(None, "--db", metavar="FILE", help="db (same forms)"),
    dbx: Optional[Path] = typer.Option(None, "--dbx", metavar="FILE", help="dbx (same forms)"),
    fmt: str = typer.Option("auto", "--format", help="Variable file format: auto, esl, auth, efivarfs, raw"),
    owner: str = typer.Option("00000000-0000-0000-0000-000000000000", "--owner", metavar="GUID",
                              help="SignatureOwner for certificates given as .crt/.pem/.der"),
    authority: Optional[List[str]] = typer.Option(None, "--authority", metavar="GUID=CERT",
                                                  help="db entry (owner GUID and certificate) that verified an image; repeatable"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: sha256)"),
) -> None:
    """PCR 7: Secure Boot variables (absent = empty), separator, authority events."""
    import uuid

    from pcrtool.errors import UsageError
    from pcrtool.predict.events import replay_measurements
    from pcrtool.predict.secureboot import (
        authority_variable, certificate_der, policy_variables, read_variable_file, secureboot_measurements,
    )

    try:
        owner_guid = uuid.UUID(owner)
    except ValueError:
        raise UsageError(f"--owner is not a GUID: {owner!r}") from None
    banks = _banks(bank, ("sha256",))
    values: dict = {}
    if secure_boot in ("0", "1"):
        values["SecureBoot"] = bytes([int(secure_boot)])
    else:
        values["SecureBoot"] = read_variable_file(_read(secure_boot, "SecureBoot file"), name="SecureBoot",
                                                  fmt=fmt, source=secure_boot)
    for name, path in (("PK", pk), ("KEK", kek), ("db", db), ("dbx", dbx)):
        if path is not None:
            values[name] = _variable_bytes(path, name, fmt, owner_guid)
    auths = []
    for item in authority or []:
        guid_text, sep, cert_path = item.partition("=")
        if not sep:
            raise UsageError(f"--authority takes GUID=CERTFILE, not {item!r}")
        try:
            guid = uuid.UUID(guid_text)
        except ValueError:
            raise UsageError(f"--authority: not a GUID: {guid_text!r}") from None
        auths.append(authority_variable(guid, certificate_der(_read(cert_path, "authority certificate"))))
    ms = secureboot_measurements(policy_variables(values), auths, banks)
    _emit_values(replay_measurements(ms, banks), ms)


# --- PCR 12 / 9 --------------------------------------------------------------------------------

@app.command()
def cmdline(
    text: str = typer.Argument(..., help="The kernel command line"),
    pcr: int = typer.Option(12, "--pcr", help="12: systemd-stub/sd-boot EV_IPL; 9: Linux EFI stub LoadOptions"),
    nul: bool = typer.Option(True, "--nul/--no-nul", help="Hash the UTF-16 NUL terminator (real boots: yes)"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: sha256)"),
) -> None:
    """PCR 12 or 9 from a command line (UTF-16LE)."""
    from pcrtool.errors import UsageError
    from pcrtool.predict.cmdline import linux_load_options_measurement, stub_cmdline_measurement
    from pcrtool.predict.events import replay_measurements

    banks = _banks(bank, ("sha256",))
    if pcr == 12:
        ms = [stub_cmdline_measurement(text, banks, nul=nul)]
    elif pcr == 9:
        ms = [linux_load_options_measurement(text, banks, nul=nul)]
    else:
        raise UsageError(f"--pcr must be 12 or 9, not {pcr}")
    _emit_values(replay_measurements(ms, banks), ms)


# --- PCR 5 -------------------------------------------------------------------------------------

@app.command()
def gpt(
    disk: Path = typer.Argument(..., help="Disk image with a GPT"),
    sector_size: int = typer.Option(512, "--sector-size", help="Logical sector size"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: sha256)"),
) -> None:
    """PCR 5's EV_EFI_GPT_EVENT from a disk image (the event alone, from reset)."""
    from pcrtool.fileio import read_bytes
    from pcrtool.predict.events import replay_measurements
    from pcrtool.predict.gpt import gpt_measurement

    banks = _banks(bank, ("sha256",))
    head = read_bytes(disk, what="disk image", limit=sector_size * 2 + 128 * 1024 * 4)
    ms = [gpt_measurement(head, banks, sector_size=sector_size)]
    _emit_values(replay_measurements(ms, banks), ms)


# --- releases ----------------------------------------------------------------------------------

def _reader_for(manifest: Path):
    base = manifest.parent

    def read(path: str) -> bytes:
        p = Path(path)
        return _read(p if p.is_absolute() else base / p, f"artefact of {manifest}")
    return read


@app.command()
def release(
    manifests: List[Path] = typer.Argument(..., metavar="MANIFEST...", help="Release manifests (TOML or JSON)"),
    allowlist: Optional[Path] = typer.Option(None, "--allowlist", help="Releases allowed to unlock (TOML or JSON)"),
    reference_log: Optional[Path] = typer.Option(None, "--reference-log", help="Target's event log: substitute into it"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the predictions file here (default: stdout)"),
    strict: bool = typer.Option(False, "--strict", help="Fail (exit 1, nothing written) on any release-set "
                                                        "warning: allowlist entries matching nothing or "
                                                        "another svn, svns not rising with the version, "
                                                        "shared svns, nothing allowed."),
) -> None:
    """Predict release manifests and write the predictions file policies read.

    \b
    Manifest (TOML/JSON; README "Release format reference", `pcrtool predict template`):
      name, version (UAPI order), svn (integer): required
      banks (sha256), pcrs (what is predicted), phases (enter-initrd)
      uki: path = "x.efi" | uki.sections: linux = "vmlinuz" …  (PCR 11)
      boot: chain = ["shimx64.efi", "uki", "uki.linux"]        (PCR 4)
      secureboot: SecureBoot = 1, PK/KEK/db/dbx = "file"       (PCR 7)
      cmdline: stub = "…", kernel = "…", initrd = "file"       (PCR 12/9)
      values: "0" = {sha256 = "hex"}                           (given)
      reference_log = "tpm.log"                          (substitution)
    Allowlist: allow = [{name = "x", version = "2.1" | "*", svn = 3}]
    """
    import json

    from pcrtool import render
    from pcrtool.fileio import read_bytes, write_atomic
    from pcrtool.predict.manifest import (check_release_set, dump_predictions, parse_allowlist, parse_manifest,
                                          predict_release)

    allow = parse_allowlist(read_bytes(allowlist, what="allowlist"), source=str(allowlist)) if allowlist else None
    ref = read_bytes(reference_log, what="reference log") if reference_log else None
    parsed = [(path, parse_manifest(read_bytes(path, what="manifest"), source=str(path))) for path in manifests]
    findings = check_release_set([(m.name, m.version, m.svn) for _, m in parsed], allow, source=str(allowlist))
    for finding in findings:
        render.warn(finding)
    if findings and strict:
        from pcrtool.errors import PcrtoolError
        raise PcrtoolError(f"{len(findings)} release-set warning(s) with --strict; nothing written",
                           hint="fix the manifests or the allowlist (see the warnings above)")
    releases = []
    for path, m in parsed:
        allowed = allow.allows(m.name, m.version, m.svn) if allow is not None else True
        r = predict_release(m, _reader_for(path), reference_log=ref, allowed=allowed)
        for note in r.notes:
            render.warn(f"{r.id}: {note}")
        releases.append(r)
    if allow is None:
        render.warn("no --allowlist: every release is marked allowed")
    doc = dump_predictions(releases)
    text = json.dumps(doc, indent=2) + "\n"
    if output is not None:
        write_atomic(output, text, what="predictions file")
        n_allowed = sum(1 for r in releases if r.allowed)
        render.info(f"wrote {len(releases)} release(s) to {output} ({n_allowed} allowed)")
    else:
        render.emit_text(text) if not render.json_mode() else render.emit_json(doc)


@app.command()
def template(
    kind: str = typer.Argument("uki", help="uki, shim-grub, secureboot or allowlist."),
) -> None:
    """Print an annotated template of a release manifest or an allowlist (every key explained)."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.predict.templates import TEMPLATES

    if kind not in TEMPLATES:
        raise UsageError(f"unknown template {kind!r}", hint=f"use one of {', '.join(TEMPLATES)}")
    render.emit({"kind": kind, "template": TEMPLATES[kind]}, text=TEMPLATES[kind])


@app.command("from-log")
def from_log(
    log_file: Path = typer.Argument(..., metavar="LOG", help="Reference event log of the target (binary_bios_measurements)"),
    uki_file: Optional[Path] = typer.Option(None, "--uki", help="New UKI: PCR 11 sections (and PCR 4 if in --boot)"),
    boot: Optional[List[Path]] = typer.Option(None, "--boot", metavar="IMAGE", help="New boot chain image, in load order (repeatable)"),
    sb_pk: Optional[Path] = typer.Option(None, "--pk", metavar="FILE", help="New PK (ESL, .auth, efivarfs dump)"),
    sb_kek: Optional[Path] = typer.Option(None, "--kek", metavar="FILE", help="New KEK (ESL, .auth, efivarfs dump)"),
    sb_db: Optional[Path] = typer.Option(None, "--db", metavar="FILE", help="New db (ESL, .auth, efivarfs dump)"),
    sb_dbx: Optional[Path] = typer.Option(None, "--dbx", metavar="FILE", help="New dbx (ESL, .auth, efivarfs dump)"),
    stub_cmdline: Optional[str] = typer.Option(None, "--stub-cmdline", help="New command line measured by the stub (PCR 12)"),
    kernel_cmdline: Optional[str] = typer.Option(None, "--kernel-cmdline", help="New LoadOptions measured by the Linux EFI stub (PCR 9)"),
    phase: Optional[str] = typer.Option(None, "--phase", help="Boot phase path appended to PCR 11, e.g. enter-initrd"),
    shim: Optional[Path] = typer.Option(None, "--shim", metavar="FILE", help="shim → GRUB chain: new shim (PCR 4, 7 SbatLevel/vendor authority, 14)"),
    grub: Optional[Path] = typer.Option(None, "--grub", metavar="FILE", help="New signed GRUB image (PCR 4; its embedded config for --grub-config)"),
    kernel: Optional[Path] = typer.Option(None, "--kernel", metavar="FILE", help="New kernel GRUB boots (PCR 4 twice with Secure Boot on, PCR 9 file)"),
    grub_config: Optional[Path] = typer.Option(None, "--grub-config", metavar="FILE", help="New grub.cfg: PCR 8/9 interpreted from the configs (needs --grub)"),
    grub_file: Optional[List[str]] = typer.Option(None, "--grub-file", metavar="PATH=FILE", help="A file the grub.cfg names, e.g. /boot/initrd.img=initrd.img (repeatable)"),
    grub_device: str = typer.Option("hd0", "--grub-device", help="GRUB's name of the ESP disk, as in the log"),
    grub_cmdline: Optional[str] = typer.Option(None, "--grub-cmdline", help="New arguments of GRUB's linux command (kernel_cmdline:), substituted into the log"),
    initrd: Optional[Path] = typer.Option(None, "--initrd", metavar="FILE", help="New initrd GRUB loads (PCR 9), substituted into the log"),
    kernel_path: Optional[str] = typer.Option(None, "--kernel-path", help="New kernel path in GRUB's linux command"),
    initrd_path: Optional[str] = typer.Option(None, "--initrd-path", help="New initrd path in GRUB's initrd command"),
    pcr: Optional[List[int]] = typer.Option(None, "--pcr", help="Only show these PCRs (repeatable)"),
    bank: Optional[List[str]] = typer.Option(None, "--bank", help=BANK_HELP + " (default: sha256)"),
) -> None:
    """Substitute a new release's events into a reference log and replay (pcr-oracle's model).

    \b
    shim → GRUB → kernel: --shim, --grub, --kernel replace PCR 4/7/14 events; GRUB's PCR 8/9 come
    from --grub-config (interpreted: pcrtool.predict.grub.PREDICTED_CONSTRUCTS) or are the log's
    with --grub-cmdline/--initrd/--kernel-path/--initrd-path substituted (search, load_env … kept).
    """
    from pcrtool import render
    from pcrtool.model import PcrValues
    from pcrtool.predict.cmdline import linux_load_options_measurement, stub_cmdline_measurement
    from pcrtool.predict.pe import application_measurement
    from pcrtool.predict.secureboot import (
        EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, Variable, read_variable_file, variable_measurement,
    )
    from pcrtool.predict.substitute import substitute_log
    from pcrtool.predict.uki import phase_measurements, section_measurements, sections_from_uki

    banks = _banks(bank, ("sha256",))
    release = []
    log_bytes = _read(log_file, "event log")
    if boot:
        _check_boot_count(log_bytes, len(boot), chain=shim is not None or grub is not None)
    for img in boot or []:
        release.append(application_measurement(_read(img, "boot image"), banks, name=str(img)))
    optional = []
    if uki_file is not None:
        from pcrtool.predict.cmdline import (
            LINUX_LOAD_OPTIONS_TAG, kernel_load_options, linux_stub_measurements, tag_of,
        )
        from pcrtool.predict.substitute import logged_secure_boot

        uki_bytes = _read(uki_file, "UKI")
        release += section_measurements(sections_from_uki(uki_bytes), banks)
        # the kernel's own PCR 9 events follow the UKI, where the reference kernel made them; its
        # load options are --kernel-cmdline (replacing, never adding), else the stub's command line
        # when systemd-stub used it instead of .cmdline (Secure Boot off), else .cmdline
        all_sections = sections_from_uki(uki_bytes, stub=None)
        follow = None
        if kernel_cmdline is None:
            follow, why = kernel_load_options(all_sections, stub=stub_cmdline,
                                              secure_boot=logged_secure_boot(log_bytes))
            for note in why:
                render.warn(note)
        optional = [e for e in linux_stub_measurements(all_sections, banks, load_options=follow)
                    if kernel_cmdline is None or tag_of(e) != LINUX_LOAD_OPTIONS_TAG]
    for name, path in (("PK", sb_pk), ("KEK", sb_kek), ("db", sb_db), ("dbx", sb_dbx)):
        if path is not None:
            data = read_variable_file(_read(path, f"{name} file"), name=name, source=str(path))
            guid = EFI_GLOBAL_VARIABLE if name in ("PK", "KEK") else EFI_IMAGE_SECURITY_DATABASE
            release.append(variable_measurement(Variable(name, guid, data), banks))
    if stub_cmdline is not None:
        release.append(stub_cmdline_measurement(stub_cmdline, banks))
    if kernel_cmdline is not None:
        _require_stub_load_options(log_bytes)
        release.append(linux_load_options_measurement(kernel_cmdline, banks))
    if phase:
        release += phase_measurements(phase, banks)
    chain_given = any(v is not None for v in (shim, grub, kernel, grub_config, grub_cmdline, initrd,
                                              kernel_path, initrd_path)) or bool(grub_file)
    if chain_given:
        release += _chain_from_log(log_bytes, banks, shim=shim, grub=grub, kernel=kernel, grub_config=grub_config,
                                   grub_file=grub_file or [], grub_device=grub_device, grub_cmdline=grub_cmdline,
                                   initrd=initrd, kernel_path=kernel_path, initrd_path=initrd_path)
    result = substitute_log(log_bytes, release, banks, if_present=optional)
    for note in result.notes:
        render.warn(note)
    values = result.values
    if pcr:
        values = PcrValues({a: {p: v for p, v in pcrs.items() if p in pcr} for a, pcrs in values.values.items()})
    render.emit({"pcrs": values.to_json(), "replaced": result.replaced, "unknown": result.unknown,
                 "notes": result.notes}, text=values.to_text())


def _require_stub_load_options(log_bytes: bytes) -> None:
    """--kernel-cmdline predicts the Linux EFI stub's PCR 9 load-options event: refuse it when the
    reference kernel made none (e.g. GRUB hands the command line over; it measures kernel_cmdline:)."""
    from pcrtool.errors import UsageError
    from pcrtool.eventlog import parse_event_log
    from pcrtool.predict.cmdline import LINUX_LOAD_OPTIONS_TAG
    from pcrtool.tcg.constants import EventType

    log = parse_event_log(log_bytes)
    tags = {int.from_bytes(e.data[:4], "little") for e in log.events
            if e.pcr == 9 and e.event_type == EventType.EV_EVENT_TAG and len(e.data) >= 4}
    if LINUX_LOAD_OPTIONS_TAG in tags:
        return
    grub = any(e.pcr == 8 and e.data.startswith(b"kernel_cmdline: ") for e in log.events)
    raise UsageError("the reference log's kernel did not measure its load options (no Linux EFI stub "
                     "PCR 9 event): --kernel-cmdline would add an event this boot never makes",
                     hint="GRUB boots: use --grub-cmdline (PCR 8 kernel_cmdline:)" if grub else
                     "predict the command line where this boot measures it")


def _chain_from_log(log_bytes: bytes, banks, *, shim, grub, kernel, grub_config, grub_file, grub_device,
                    grub_cmdline, initrd, kernel_path, initrd_path) -> list:
    """shim → GRUB → kernel measurements for from-log (see pcrtool.predict.chain)."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.predict.chain import ChainParts, chain_measurements, grub_from_log
    from pcrtool.predict.grub import BootTrace, Unpredictable, debian_signed_trace, read_grub_image
    from pcrtool.predict.substitute import logged_secure_boot

    files = {}
    for item in grub_file:
        path, sep, local = item.partition("=")
        if not sep or not path:
            raise UsageError(f"--grub-file takes PATH=FILE, not {item!r}", hint="e.g. /boot/initrd.img=initrd.img")
        files[path] = _read(Path(local), f"--grub-file {path}")
    secure_boot = logged_secure_boot(log_bytes)
    parts = ChainParts(secure_boot=secure_boot)
    if shim is not None:
        parts.shim = _read(shim, "shim image")
    grub_bytes = _read(grub, "GRUB image") if grub is not None else None
    parts.grub = grub_bytes
    kernel_bytes = _read(kernel, "kernel") if kernel is not None else None
    if grub_config is not None:
        if grub_bytes is None:
            raise UsageError("--grub-config needs --grub (its embedded config and prefix come first)")
        if any(v is not None for v in (grub_cmdline, initrd, kernel_path, initrd_path)):
            raise UsageError("--grub-config predicts the command line and initrd from the config",
                             hint="give them in the config (and --grub-file), or drop --grub-config")
        image = read_grub_image(grub_bytes)
        files[f"({grub_device}){image.prefix or ''}/grub.cfg"] = _read(grub_config, "grub.cfg")
        try:
            trace = debian_signed_trace(image, files, banks, device=grub_device)
        except Unpredictable as e:
            raise UsageError(f"grub.cfg: {e.message}",
                             hint="drop --grub-config and substitute into the log's GRUB events "
                                  "(--grub-cmdline, --initrd …)") from None
        if trace.kernel is not None:
            named = files.get(trace.kernel)
            if kernel_bytes is None and isinstance(named, bytes):
                kernel_bytes = named
            if kernel_bytes is None:
                raise UsageError(f"the config boots {trace.kernel}: give it (--kernel or --grub-file)")
            if trace.kernel not in files:
                files[trace.kernel] = kernel_bytes
                trace = debian_signed_trace(image, files, banks, device=grub_device)
        render.info(f"GRUB boots {trace.kernel} with command line {trace.cmdline!r}")
        parts.trace = trace
    elif any(v is not None for v in (grub_cmdline, initrd, kernel_path, initrd_path, kernel)) or files:
        parts.trace = BootTrace(grub_from_log(
            log_bytes, banks, kernel_path=kernel_path, kernel=kernel_bytes, args=grub_cmdline,
            initrd_path=initrd_path, initrd=_read(initrd, "initrd") if initrd is not None else None, files=files))
    parts.kernel = kernel_bytes
    return chain_measurements(parts, banks)


def _check_boot_count(log_bytes: bytes, given: int, *, chain: bool) -> None:
    """--boot replaces every PCR 4 application event: say so when the counts differ (a shim → GRUB
    boot with Secure Boot on measures the kernel twice; use --shim/--grub/--kernel for it)."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.eventlog import parse_event_log
    from pcrtool.tcg.constants import EventType

    if chain:
        raise UsageError("give the boot chain with --boot or with --shim/--grub/--kernel, not both")
    logged = sum(1 for e in parse_event_log(log_bytes).events
                 if e.pcr == 4 and e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    if logged != given:
        grub = " (a shim → GRUB boot: use --shim, --grub and --kernel)" if logged == given + 1 else ""
        render.warn(f"the reference log has {logged} PCR 4 application event(s), --boot gives {given}: "
                    f"PCR 4 will not match a boot like the reference{grub}")
