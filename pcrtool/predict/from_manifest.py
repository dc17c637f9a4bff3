"""Predict a release from its manifest: every source (UKI, boot chain, Secure Boot variables,
command lines, shim → GRUB chain, precomputed values), optionally substituted into the target's
reference log.

Imports go one way: ``manifest`` (parsing, the contract names) imports this module; this module
never imports ``manifest`` — it reads a parsed manifest through :class:`ReleaseManifest`, the
protocol ``pcrtool.predict.manifest.ReleaseManifest`` satisfies.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Mapping, Protocol, Sequence

from pcrtool.errors import FormatError
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues
from pcrtool.eventlog.replay import initial_pcr_value
from pcrtool.predict.events import Measurement, replay_measurements
from pcrtool.predict.fields import ManifestError, _banks, _hex, _int, _req, _str
from pcrtool.predict.predictions import Release



class ReleaseManifest(Protocol):
    """What :func:`predict_release` reads of a validated manifest (``parse_manifest``'s result)."""

    name: str
    version: str
    svn: int
    banks: tuple[HashAlg, ...]
    pcrs: tuple[int, ...] | None
    phases: tuple[str, ...]
    doc: Mapping[str, Any]
    source: str

#: A file reader the caller supplies (the pure core never opens files): path → bytes.
Reader = Callable[[str], bytes]


def _read(reader: Reader, path: Any, key: str, source: str) -> bytes:
    return reader(_str(path, key, source))


def _uki_sections(m: ReleaseManifest, reader: Reader) -> dict[str, bytes] | None:
    from pcrtool.predict.uki import MEASURED_SECTIONS, measured_sections, sections_from_uki

    uki = m.doc.get("uki")
    if uki is None:
        return None
    src = f"{m.source} [uki]"
    unknown = sorted(set(uki) - {"path", "profile", "sections", "stub", "linux_stub"})
    if unknown:
        raise ManifestError(f"{src}: unknown field {unknown[0]!r}", hint="path, profile, sections, stub, linux_stub")
    if not isinstance(uki.get("linux_stub", False), bool):
        raise ManifestError(f"{src}: 'linux_stub' must be true or false")
    if ("path" in uki) == ("sections" in uki):
        raise ManifestError(f"{src}: give exactly one of 'path' or 'sections'")
    stub = _int(uki["stub"], "uki.stub", src, 200, 999) if "stub" in uki else None
    if "path" in uki:
        profile = _int(uki["profile"], "uki.profile", src, 0, 255) if "profile" in uki else None
        return sections_from_uki(_read(reader, uki["path"], "uki.path", src), profile=profile,
                                 stub="auto" if stub is None else stub)
    secs = uki["sections"]
    if not isinstance(secs, dict):
        raise ManifestError(f"{src}: 'sections' must be a table of section name → file")
    out: dict[str, Any] = {}
    for key, path in secs.items():
        name = "." + key.lstrip(".")
        if name not in MEASURED_SECTIONS:
            raise ManifestError(f"{src}: unknown UKI section {key!r}",
                                hint="one of " + ", ".join(s.lstrip(".") for s in MEASURED_SECTIONS))
        if stub is not None and name not in measured_sections(stub):
            continue
        if isinstance(path, dict):  # precomputed digests of the section content, one per bank
            digests = {}
            for bank, value in path.items():
                alg = _banks([bank], src)[0]
                digests[alg] = _hex(value, f"uki.sections.{key}.{bank}", src, alg.digest_size)
            missing = [a.bank_name for a in m.banks if a not in digests]
            if missing:
                raise ManifestError(f"{src}: uki.sections.{key} has no {missing[0]} digest",
                                    hint="give a digest for every bank of the manifest, or the section file")
            out[name] = digests
        else:
            out[name] = _read(reader, path, f"uki.sections.{key}", src)
    return out


def _boot_measurements(m: ReleaseManifest, reader: Reader) -> list[Measurement] | None:
    from pcrtool.predict.pe import boot_chain_measurements

    boot = m.doc.get("boot")
    if boot is None:
        return None
    src = f"{m.source} [boot]"
    chain = _req(boot, "chain", src)
    if not isinstance(chain, list) or not chain:
        raise ManifestError(f"{src}: 'chain' must be a non-empty list of images")
    images = []
    for i, item in enumerate(chain):
        if isinstance(item, str):
            path = m.doc.get("uki", {}).get("path") if item in ("uki", "uki.linux") else item
            if path is None:
                raise ManifestError(f"{src}: chain[{i}] is {item!r} but [uki] has no path")
            data = reader(path)
            if item == "uki.linux":  # the kernel the stub hands to LoadImage (measured by firmware)
                from pcrtool.predict.uki import uki_sections
                linux = [s.loaded for s in uki_sections(data) if s.name == ".linux"]
                if not linux:
                    raise ManifestError(f"{src}: chain[{i}]: the UKI has no .linux section")
                path, data = f"{path}:.linux", linux[0]
            images.append((path, data))
        elif isinstance(item, dict):
            digests = {}
            for bank, value in item.items():
                if bank == "name":
                    continue
                alg = _banks([bank], src)[0]
                digests[alg] = _hex(value, f"chain[{i}].{bank}", src, alg.digest_size)
            images.append((str(item.get("name", f"image {i}")), digests))
        else:
            raise ManifestError(f"{src}: chain[{i}] must be a file name or a table of digests")
    sep = _hex(boot.get("separator", "00000000"), "separator", src, 4)
    return boot_chain_measurements(images, m.banks, separator_value=sep)


def _secureboot_measurements(m: ReleaseManifest, reader: Reader) -> list[Measurement] | None:
    from pcrtool.predict.secureboot import (
        authority_variable, certificate_der, policy_variables, secureboot_measurements, variable_from_file,
    )

    sb = m.doc.get("secureboot")
    if sb is None:
        return None
    src = f"{m.source} [secureboot]"
    unknown = sorted(set(sb) - {"SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr", "authorities", "separator",
                                "owner"})
    if unknown:
        raise ManifestError(f"{src}: unknown field {unknown[0]!r}",
                            hint="SecureBoot, PK, KEK, db, dbx, dbt, dbr, owner, authorities, separator")
    try:  # SignatureOwner of variables given as certificates (as `predict secureboot --owner`)
        cert_owner = uuid.UUID(str(sb.get("owner", "00000000-0000-0000-0000-000000000000")))
    except ValueError:
        raise ManifestError(f"{src}: owner is not a GUID: {sb['owner']!r}") from None
    values: dict[str, bytes | None] = {}
    for name in ("SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr"):
        if name not in sb:
            continue
        v = sb[name]
        if name == "SecureBoot" and isinstance(v, (bool, int)):
            values[name] = bytes([int(_int(int(v), "SecureBoot", src, 0, 1))])
            continue
        # a file, or a list of files whose signature lists are concatenated (ESLs and certificates)
        files = v if isinstance(v, list) and name != "SecureBoot" else [v]
        values[name] = b"".join(
            variable_from_file(_read(reader, f, name, src), name=name, filename=str(f), owner=cert_owner,
                               source=f"{src} {name}") for f in files)
    auths = []
    for i, a in enumerate(sb.get("authorities", [])):
        if not isinstance(a, dict) or "owner" not in a or "certificate" not in a:
            raise ManifestError(f"{src}: authorities[{i}] needs 'owner' (GUID) and 'certificate' (file)")
        try:
            owner = uuid.UUID(str(a["owner"]))
        except ValueError:
            raise ManifestError(f"{src}: authorities[{i}].owner is not a GUID: {a['owner']!r}") from None
        auths.append(authority_variable(owner, certificate_der(_read(reader, a["certificate"], "certificate", src))))
    sep = _hex(sb.get("separator", "00000000"), "separator", src, 4)
    return secureboot_measurements(policy_variables(values), auths, m.banks, separator_value=sep)


def _profile_measurements(m: ReleaseManifest) -> list[Measurement]:
    from pcrtool.predict.cmdline import stub_profile_measurement

    profile = m.doc.get("uki", {}).get("profile")
    return [stub_profile_measurement(profile, m.banks)] if isinstance(profile, int) and profile > 0 else []


def _cmdline_measurements(m: ReleaseManifest, reader: Reader) -> list[Measurement] | None:
    from pcrtool.predict.cmdline import (
        linux_initrd_measurement, linux_load_options_measurement, stub_cmdline_measurement,
    )

    c = m.doc.get("cmdline")
    if c is None:
        return None
    src = f"{m.source} [cmdline]"
    unknown = sorted(set(c) - {"stub", "kernel", "initrd", "nul"})
    if unknown:
        raise ManifestError(f"{src}: unknown field {unknown[0]!r}", hint="stub, kernel, initrd, nul")
    nul = c.get("nul", True)
    if not isinstance(nul, bool):
        raise ManifestError(f"{src}: 'nul' must be true or false")
    out = []
    if "stub" in c:
        out.append(stub_cmdline_measurement(_str(c["stub"], "stub", src), m.banks, nul=nul))
    if "kernel" in c:
        out.append(linux_load_options_measurement(_str(c["kernel"], "kernel", src), m.banks, nul=nul))
    if "initrd" in c:
        out.append(linux_initrd_measurement(_read(reader, c["initrd"], "initrd", src), m.banks))
    return out


_SHIM_KEYS = {"path", "sbat_level", "MokList", "MokListX", "MokListTrusted", "SbatLevel", "vendor_authority"}
_GRUB_KEYS = {"path", "device", "config", "config_path", "files", "kernel", "kernel_path", "initrd",
              "initrd_path", "cmdline"}


def _file_or_digests(reader: Reader, value: Any, key: str, src: str):
    if isinstance(value, dict):  # precomputed file digests, one per bank
        out = {}
        for bank, hexv in value.items():
            alg = _banks([bank], src)[0]
            out[alg] = _hex(hexv, f"{key}.{bank}", src, alg.digest_size)
        return out
    return _read(reader, value, key, src)


def _chain_measurements(m: ReleaseManifest, reader: Reader, reference_log: bytes | None,
                        notes: list[str]) -> list[Measurement] | None:
    """[shim] and [grub]: the shim → GRUB → kernel chain (pcrtool.predict.chain)."""
    from pcrtool.predict.chain import ChainParts, chain_measurements, grub_from_log
    from pcrtool.predict.grub import (
        Unpredictable,
        debian_signed_trace,
        read_grub_image,
        run_script,
    )

    shim_doc, grub_doc = m.doc.get("shim"), m.doc.get("grub")
    if shim_doc is None and grub_doc is None:
        return None
    secure_boot = _secure_boot_state(m, reader, reference_log)
    parts = ChainParts(secure_boot=secure_boot)
    if shim_doc is not None:
        src = f"{m.source} [shim]"
        unknown = sorted(set(shim_doc) - _SHIM_KEYS)
        if unknown:
            raise ManifestError(f"{src}: unknown field {unknown[0]!r}", hint=", ".join(sorted(_SHIM_KEYS)))
        parts.shim = _read(reader, _req(shim_doc, "path", src), "path", src)
        for name in ("MokList", "MokListX", "MokListTrusted", "SbatLevel"):
            if name in shim_doc:
                raw = _read(reader, shim_doc[name], name, src)
                parts.mok_variables[name] = raw[4:] if _efivarfs_attrs(raw) else raw
        level = shim_doc.get("sbat_level", "previous")
        if level not in ("previous", "latest"):
            parts.sbat_level = _str(level, "sbat_level", src)
        elif level == "latest":
            from pcrtool.predict.shim import default_sbat_level, read_shim_image
            parts.sbat_level = default_sbat_level(read_shim_image(parts.shim), policy="latest",
                                                  secure_boot=secure_boot)
        va = shim_doc.get("vendor_authority", "MokListRT")
        if va not in ("MokListRT", "Shim", "none"):
            raise ManifestError(f"{src}: vendor_authority must be MokListRT, Shim or none")
        parts.vendor_authority = va
    if grub_doc is not None:
        src = f"{m.source} [grub]"
        unknown = sorted(set(grub_doc) - _GRUB_KEYS)
        if unknown:
            raise ManifestError(f"{src}: unknown field {unknown[0]!r}", hint=", ".join(sorted(_GRUB_KEYS)))
        grub = _read(reader, _req(grub_doc, "path", src), "path", src)
        parts.grub = grub
        device = _str(grub_doc.get("device", "hd0"), "device", src)
        files_doc = grub_doc.get("files", {})
        if not isinstance(files_doc, dict):
            raise ManifestError(f"{src}: 'files' must be a table of GRUB path → file")
        files = {k: _file_or_digests(reader, v, f"files.{k}", src) for k, v in files_doc.items()}
        if "config" in grub_doc:
            image = read_grub_image(grub)
            cfg_path = grub_doc.get("config_path") or f"({device}){image.prefix or ''}/grub.cfg"
            files[cfg_path] = _read(reader, grub_doc["config"], "config", src)
            try:
                if image.memdisk.get("grub.cfg") is not None:
                    trace = debian_signed_trace(image, files, m.banks, device=device)
                else:
                    trace = run_script(f"source {cfg_path}\n", files, m.banks, env={"root": device})
                    trace.events = trace.events[1:]  # no early config: GRUB reads grub.cfg itself
            except Unpredictable as e:
                raise ManifestError(f"{src}: {e.message}",
                                    hint="drop 'config' to keep GRUB's events from the reference log "
                                         "(with kernel/cmdline/initrd substituted)") from None
            parts.trace = trace
            if trace.kernel is None:
                raise ManifestError(f"{src}: the config boots no kernel ('linux' command)")
            parts.kernel = files[trace.kernel] if isinstance(files[trace.kernel], bytes) else None
            if parts.kernel is None:
                raise ManifestError(f"{src}: the kernel {trace.kernel} must be a file (PCR 4 needs its "
                                    "Authenticode digest)")
        else:
            if reference_log is None:
                raise ManifestError(f"{src}: without 'config' GRUB's events come from a reference log",
                                    hint="add reference_log (or --reference-log), or give config")
            kernel = _read(reader, grub_doc["kernel"], "kernel", src) if "kernel" in grub_doc else None
            initrd = (_file_or_digests(reader, grub_doc["initrd"], "initrd", src)
                      if "initrd" in grub_doc else None)
            events = grub_from_log(reference_log, m.banks,
                                   kernel_path=grub_doc.get("kernel_path"), kernel=kernel,
                                   args=grub_doc.get("cmdline"), initrd_path=grub_doc.get("initrd_path"),
                                   initrd=initrd, files=files)
            from pcrtool.predict.grub import BootTrace
            parts.trace = BootTrace(events)
            parts.kernel = kernel
            notes.append("GRUB's PCR 8/9 events: the reference log's, with the kernel/command line/initrd "
                         "substituted")
    out = chain_measurements(parts, m.banks)
    if reference_log is None and any(e.pcr == 4 for e in out):
        # from reset: the firmware's "Calling EFI Application" + separator precede the chain (as
        # [boot] does); firmware that logs more (OVMF's removable-media fallback) needs a reference log
        from pcrtool.predict.pe import CALLING_EFI_APPLICATION, efi_action, separator
        out = [efi_action(4, CALLING_EFI_APPLICATION, m.banks), separator(4, m.banks)] + out
        notes.append("PCR 4 from reset assumes the firmware logs only 'Calling EFI Application' and a "
                     "separator before shim; give reference_log for the target's own sequence")
    if reference_log is None and "secureboot" not in m.doc and any(e.pcr == 7 for e in out):
        notes.append("PCR 7 holds only shim's events: give [secureboot] or reference_log for the firmware's")
    return out


def _efivarfs_attrs(raw: bytes) -> bool:
    """An efivarfs dump starts with a u32 of attribute bits (NV|BS[|RT])."""
    return len(raw) >= 4 and int.from_bytes(raw[:4], "little") in (0x3, 0x7, 0x27, 0x23)


def _secure_boot_state(m: ReleaseManifest, reader: Reader, reference_log: bytes | None) -> bool | None:
    """Secure Boot on/off as the manifest's [secureboot] SecureBoot (or else the reference log) says."""
    sb = m.doc.get("secureboot") or {}
    if "SecureBoot" in sb:
        v = sb["SecureBoot"]
        if isinstance(v, (bool, int)):
            return bool(v)
        from pcrtool.predict.secureboot import read_variable_file
        data = read_variable_file(_read(reader, v, "SecureBoot", f"{m.source} [secureboot]"), name="SecureBoot",
                                  source=f"{m.source} [secureboot] SecureBoot")
        return data[:1] == b"\x01"
    if reference_log is not None:
        from pcrtool.predict.substitute import logged_secure_boot
        return logged_secure_boot(reference_log)
    return None


def _kernel_events(m: ReleaseManifest, sections: dict, reader: Reader, reference_log: bytes | None,
                   notes: list[str]) -> list[Measurement]:
    """The Linux EFI stub's PCR 9 events derived from the UKI, minus those [cmdline] gives explicitly.

    Load options: [cmdline] kernel (explicit: it *replaces* the UKI-derived event, which is then not
    returned; it is predicted by _cmdline_measurements) > [cmdline] stub when systemd-stub used the
    boot entry's LoadOptions instead of .cmdline (Secure Boot off) > .cmdline. Initrd: [cmdline]
    initrd (explicit) > .initrd.
    """
    from pcrtool.predict.cmdline import (
        LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG, kernel_load_options, linux_stub_measurements, tag_of,
    )

    c = m.doc.get("cmdline") or {}
    nul = c.get("nul", True) if isinstance(c.get("nul", True), bool) else True
    follow = None
    if "kernel" not in c and isinstance(c.get("stub"), str):
        follow, why = kernel_load_options(sections, stub=c["stub"],
                                          secure_boot=_secure_boot_state(m, reader, reference_log))
        notes += why
    events = linux_stub_measurements(sections, m.banks, nul=nul, load_options=follow)
    if follow is None and "kernel" not in c and isinstance(sections.get(".cmdline"), dict):
        notes.append("the UKI's .cmdline is given as digests: no PCR 9 load-options event can be derived "
                     "(give [cmdline] kernel)")
    drop = ({LINUX_LOAD_OPTIONS_TAG} if "kernel" in c else set()) | ({LINUX_INITRD_TAG} if "initrd" in c else set())
    return [e for e in events if tag_of(e) not in drop]


def _kernel_order(events: list[Measurement]) -> list[Measurement]:
    """The Linux EFI stub's events in its order (load options, then initrd), other events in place."""
    from pcrtool.predict.cmdline import LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG, PCR_LINUX_STUB, tag_of

    rank = {LINUX_LOAD_OPTIONS_TAG: 0, LINUX_INITRD_TAG: 1}
    slots = [i for i, e in enumerate(events) if e.pcr == PCR_LINUX_STUB and tag_of(e) in rank]
    ordered = sorted((events[i] for i in slots), key=lambda e: rank[tag_of(e)])
    out = list(events)
    for i, e in zip(slots, ordered):
        out[i] = e
    return out


def _precomputed(m: ReleaseManifest) -> tuple[dict[int, dict[HashAlg, bytes]], dict[str, dict[int, dict[HashAlg, bytes]]]]:
    from pcrtool.predict.uki import normalize_phase

    vals = m.doc.get("values", {})
    src = f"{m.source} [values]"

    def table(t: Mapping, where: str) -> dict[int, dict[HashAlg, bytes]]:
        out: dict[int, dict[HashAlg, bytes]] = {}
        for pcr_key, banks in t.items():
            if pcr_key == "phase" and where == src:
                continue
            try:
                pcr = int(pcr_key)
            except ValueError:
                raise ManifestError(f"{where}: key {pcr_key!r} is not a PCR index") from None
            _int(pcr, "values", where, 0, PCR_COUNT - 1)
            if not isinstance(banks, dict):
                raise ManifestError(f"{where}: PCR {pcr} must map bank → hex")
            for bank, hexv in banks.items():
                alg = _banks([bank], where)[0]
                out.setdefault(pcr, {})[alg] = _hex(hexv, f"{pcr}.{bank}", where, alg.digest_size)
        return out

    per_phase = {}
    for phase, t in vals.get("phase", {}).items():
        if not isinstance(t, dict):
            raise ManifestError(f"{src}: phase {phase!r} must be a table")
        per_phase[normalize_phase(phase)] = table(t, f"{src} phase {phase!r}")
    return table(vals, src), per_phase


def predict_release(m: ReleaseManifest, reader: Reader, *, reference_log: bytes | None = None,
                    allowed: bool = True) -> Release:
    """Predict every selected PCR of ``m`` for each of its phases.

    ``reader`` resolves artefact paths (the CLI passes one relative to the manifest's directory).
    With a reference log (argument, or ``reference_log`` in the manifest), PCRs are that log's
    replay with the release's events substituted; otherwise each PCR is replayed from reset over
    the release's own events.
    """
    from pcrtool.predict.uki import PCR_KERNEL_BOOT, phase_measurements, section_measurements

    notes: list[str] = []
    sections = _uki_sections(m, reader)
    fixed: list[Measurement] = []
    if ("shim" in m.doc or "grub" in m.doc) and "boot" in m.doc:
        raise ManifestError(f"{m.source}: give the boot chain in [boot] or in [shim]/[grub], not both",
                            hint="[shim] and [grub] predict PCR 4's shim, GRUB and kernel events themselves")
    if reference_log is None and "reference_log" in m.doc:
        reference_log = reader(m.doc["reference_log"])
    for part in (_boot_measurements(m, reader), _secureboot_measurements(m, reader),
                 _profile_measurements(m), _cmdline_measurements(m, reader),
                 _chain_measurements(m, reader, reference_log, notes)):
        if part:
            fixed += part
    uki_events = section_measurements(sections, m.banks) if sections is not None else []
    pre_all, pre_phase = _precomputed(m)

    # The kernel's EFI stub measures the command line and initrd it gets into PCR 9: predicted when
    # asked (linux_stub = true), else only where the reference log shows the target's kernel doing it.
    kernel_events: list[Measurement] = []
    if sections is not None:
        kernel_events = _kernel_events(m, sections, reader, reference_log, notes)
        if m.doc["uki"].get("linux_stub", False):
            fixed, kernel_events = _kernel_order(fixed + kernel_events), []

    predicted_pcrs = {e.pcr for e in fixed + uki_events} | set(pre_all)
    if sections is not None:
        predicted_pcrs.add(PCR_KERNEL_BOOT)
    for t in pre_phase.values():
        predicted_pcrs |= set(t)
    pcrs = m.pcrs if m.pcrs is not None else tuple(sorted(predicted_pcrs))
    if not pcrs:
        raise ManifestError(f"{m.source}: nothing to predict",
                            hint="add [uki], [boot], [secureboot], [cmdline], [shim], [grub] or [values]")

    predictions: dict[str, PcrValues] = {}
    phase_events: dict[str, tuple[Measurement, ...]] = {}
    for phase in m.phases:
        events = fixed + uki_events + (phase_measurements(phase, m.banks) if sections is not None else [])
        if reference_log is not None:
            from pcrtool.predict.substitute import substitute_log
            result = substitute_log(reference_log, events, m.banks, if_present=kernel_events)
            values = result.values
            replayable = tuple(result.measurements(pcrs))
            for alg, pcr in result.gaps:
                if pcr in pcrs and alg in m.banks:
                    raise ManifestError(f"{m.source}: the reference log cannot give a {alg.bank_name} value "
                                        f"for PCR {pcr} (events without that digest)",
                                        hint="select another bank or drop that PCR")
            if phase == m.phases[0]:
                notes += result.notes
        else:
            values = replay_measurements(events, m.banks)
            replayable = tuple(e for e in events if e.pcr in pcrs)
        out = PcrValues()
        for pcr in pcrs:
            for alg in m.banks:
                v = pre_phase.get(phase, {}).get(pcr, {}).get(alg) or pre_all.get(pcr, {}).get(alg)
                if v is None:
                    v = values.get(alg, pcr)
                if v is None:
                    if reference_log is None and pcr not in predicted_pcrs:
                        raise ManifestError(f"{m.source}: PCR {pcr} is selected but nothing predicts it",
                                            hint="add its source, a reference_log or a [values] entry")
                    v = initial_pcr_value(alg, pcr)
                out.set(alg, pcr, v)
        predictions[phase] = out
        try:
            if _same(replay_measurements(replayable, m.banks), out, pcrs, m.banks):
                phase_events[phase] = replayable
        except FormatError:
            pass
        if phase not in phase_events:
            notes.append(f"phase {phase or ':'}: no event list reproduces the prediction (precomputed values "
                         f"or a start other than reset); validation cannot emulate this boot")
    return Release(m.name, m.version, m.svn, pcrs, m.banks, predictions, allowed, tuple(notes), phase_events)


def _same(replayed: PcrValues, predicted: PcrValues, pcrs: Sequence[int], banks: Sequence[HashAlg]) -> bool:
    return all((replayed.get(alg, pcr) or initial_pcr_value(alg, pcr)) == predicted.get(alg, pcr)
               for alg in banks for pcr in pcrs)
