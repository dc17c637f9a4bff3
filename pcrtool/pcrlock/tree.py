"""A ``pcrlock.d`` tree for a set of releases: every component ``NNN-name.pcrlock.d/`` holds one
alternative per allowlisted release (``<name>-<version>.pcrlock``), so that ``systemd-pcrlock
make-policy`` accepts exactly those releases, and dropping a release's files (then make-policy
again) revokes it. Pure: manifests and files in, ``{relative path: bytes}`` out.

Component IDs (systemd's where it has one, pcrtool's choice otherwise, between systemd's static
500-separator and 700-action-efi-exit-boot-services so that PCR 4 stays in boot order):

====================================  ===============================================================
``240-secureboot-policy``             [secureboot] variables (lock-secureboot-policy)
``250-firmware-{code,config}-early``  reference log, before the separators (lock-firmware-code/config)
``550-firmware-{code,config}-late``   reference log, after the separators
``600-gpt``                           [gpt] disk image (lock-gpt)
``620-secureboot-authority``          [secureboot] authorities, else the reference log's
``630-boot-0`` … ``680-boot-5``       [boot] chain images in load order (EDK2's PE hash); the chain's
                                      ``"uki"`` entry is the UKI component, ``"uki.linux"`` its kernel
``650-uki`` (or its chain position)   the UKI: PCR 4 PE hash + PCR 11 section records (lock-uki); a UKI
                                      given as sections has only the PCR 11 records
``710-kernel-cmdline``                the Linux EFI stub's PCR 9 load options (lock-kernel-cmdline)
``720-kernel-initrd``                 its PCR 9 initrd (lock-kernel-initrd)
====================================  ===============================================================

Phases (750-enter-initrd …), separators and EFI actions are systemd's static components
(/usr/lib/pcrlock.d); pass both directories to ``systemd-pcrlock --components=``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg
from pcrtool.pcrlock import (BANKS, COMPONENT_IDS, PCR_KERNEL_INITRD, Component, PcrlockFile, Record, Variant,
                             lock_firmware, lock_secureboot_authority, secure_boot_enabled)

Reader = Callable[[str], bytes]

_ID = re.compile(r"^[0-9]{3}-[A-Za-z0-9._-]+$")
_VARIANT = re.compile(r"[^A-Za-z0-9._+~-]")


def variant_name(name: str, version: str) -> str:
    """``<name>-<version>`` as a file name (anything else than [A-Za-z0-9._+~-] becomes '_')."""
    return _VARIANT.sub("_", f"{name}-{version}")


@dataclass(frozen=True, slots=True)
class ReleaseComponents:
    name: str
    version: str
    components: Mapping[str, PcrlockFile]

    @property
    def variant(self) -> str:
        return variant_name(self.name, self.version)


def uki_component(uki: bytes | None, sections: Mapping[str, bytes] | None = None) -> PcrlockFile:
    """lock-uki for a UKI file; for section contents only the stub's PCR 11 records."""
    from pcrtool.pcrlock import lock_uki
    from pcrtool.predict.uki import section_measurements

    if uki is not None:
        return lock_uki(uki)
    ms = section_measurements(dict(sections or {}), BANKS)
    return PcrlockFile(tuple(Record.of_measurement(m) for m in ms))


def _all_banks(ms) -> list[Record]:
    return [Record.of_measurement(m) for m in ms]


def manifest_components(m, reader: Reader, *, reference_log: bytes | None = None) -> ReleaseComponents:
    """The components of one release manifest (pcrtool.predict.manifest.ReleaseManifest), every
    record in all four banks. PE images carry the digest firmware measures (EDK2: an unsigned,
    unaligned image unpadded, where ``lock-pe``/``lock-uki`` pad it virtually to 8 bytes; equal for
    signed and 8-aligned images)."""
    import dataclasses

    from pcrtool.predict.cmdline import LINUX_INITRD_TAG, LINUX_LOAD_OPTIONS_TAG, tag_of
    from pcrtool.predict.from_manifest import (_boot_measurements, _secureboot_measurements, _uki_sections,
                                         predict_release)
    from pcrtool.tcg.constants import EventType

    m = dataclasses.replace(m, banks=BANKS, pcrs=None)
    comps: dict[str, PcrlockFile] = {}
    uki_doc = m.doc.get("uki")
    sections = _uki_sections(m, reader) if uki_doc else None
    if sections and any(isinstance(v, dict) for v in sections.values()):
        raise UsageError(f"{m.source}: a UKI section given as digests cannot be locked here",
                         hint="give the section files (or the UKI)")
    uki_records = []
    if sections is not None:
        from pcrtool.predict.uki import section_measurements
        uki_records = _all_banks(section_measurements(sections, BANKS))
    chain = (m.doc.get("boot") or {}).get("chain") or []
    images = [e for e in (_boot_measurements(m, reader) or [])
              if e.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION]
    if len(images) != len(chain):
        raise FormatError(f"{m.source}: the boot chain gave {len(images)} images for {len(chain)} entries")
    if len(chain) > 6:
        raise UsageError(f"{m.source}: pcrtool's pcrlock tree takes up to 6 boot-chain images")
    for i, (token, ev) in enumerate(zip(chain, images)):
        if token == "uki":
            comps[f"{630 + 10 * i}-uki"] = PcrlockFile(tuple(_all_banks([ev]) + uki_records))
            uki_records = []
        else:
            name = "uki-linux" if token == "uki.linux" else f"boot-{i}"
            comps[f"{630 + 10 * i}-{name}"] = PcrlockFile(tuple(_all_banks([ev])))
    if uki_records:  # a UKI not in the boot chain: its PCR 11 records (and, for a file, lock-uki's PCR 4)
        if "path" in uki_doc:
            from pcrtool.pcrlock import lock_uki
            comps["650-uki"] = lock_uki(reader(uki_doc["path"]))
        else:
            comps["650-uki"] = PcrlockFile(tuple(uki_records))
    sb = _secureboot_measurements(m, reader)
    if sb:
        policy = [e for e in sb if e.event_type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG]
        auth = [e for e in sb if e.event_type == EventType.EV_EFI_VARIABLE_AUTHORITY]
        comps[COMPONENT_IDS["secureboot-policy"]] = PcrlockFile(tuple(_all_banks(policy)))
        if auth:
            comps[COMPONENT_IDS["secureboot-authority"]] = PcrlockFile(tuple(_all_banks(auth)))
    if reference_log is None and "reference_log" in m.doc:
        reference_log = reader(m.doc["reference_log"])
    if reference_log is not None:
        for cid, f in log_components(reference_log).items():
            comps.setdefault(cid, f)
    # PCR 9: what the kernel's EFI stub measures, as pcrtool's prediction has it
    release = predict_release(m, reader, reference_log=reference_log)
    for e in next(iter(release.measurements.values()), ()):
        tag = tag_of(e) if e.pcr == PCR_KERNEL_INITRD else None
        cid = (COMPONENT_IDS["kernel-cmdline"] if tag == LINUX_LOAD_OPTIONS_TAG else
               COMPONENT_IDS["kernel-initrd"] if tag == LINUX_INITRD_TAG else None)
        if cid:
            comps[cid] = PcrlockFile(tuple(_all_banks([e])))
    if not comps:
        raise UsageError(f"{m.source}: nothing to lock", hint="add [uki], [boot], [secureboot] or a reference_log")
    return ReleaseComponents(m.name, m.version, comps)


def log_components(reference_log: bytes) -> dict[str, PcrlockFile]:
    """Firmware components from a reference log: code/config early and late, and (Secure Boot on)
    the authority records; empty late files are left out."""
    from pcrtool.eventlog import parse_event_log

    log = parse_event_log(reference_log, source="reference log")
    out: dict[str, PcrlockFile] = {}
    for which in ("code", "config"):
        early, late = lock_firmware(log, which)
        out[COMPONENT_IDS[f"firmware-{which}-early"]] = early
        if late.records:
            out[COMPONENT_IDS[f"firmware-{which}-late"]] = late
    if secure_boot_enabled(log):
        out[COMPONENT_IDS["secureboot-authority"]] = lock_secureboot_authority(log)
    return out


def demo_components(spec: Mapping) -> list[ReleaseComponents]:
    """The releases of pcrtool's demo format (``{"releases": [{name, version, sections}]}``)."""
    out = []
    for r in spec.get("releases", []):
        if not r.get("allowed", True):
            continue
        sections = {k: v.encode() for k, v in r["sections"].items()}
        out.append(ReleaseComponents(r["name"], r["version"], {"650-uki": uki_component(None, sections)}))
    return out


def tree_files(releases: Sequence[ReleaseComponents]) -> dict[str, bytes]:
    """``{"NNN-name.pcrlock.d/<release>.pcrlock": bytes}`` for every release and component. Every
    component must come from every release (else a release would be missing a component and
    systemd could never match it)."""
    if not releases:
        raise UsageError("no (allowlisted) release to lock")
    names = [r.variant for r in releases]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"two releases map to the same variant file {dup}.pcrlock")
    ids = sorted({cid for r in releases for cid in r.components})
    files: dict[str, bytes] = {}
    for cid in ids:
        if not _ID.match(cid):
            raise UsageError(f"bad component ID {cid!r}")
        lacking = [r.variant for r in releases if cid not in r.components]
        if lacking:
            raise UsageError(f"release {lacking[0]} has no {cid} component but others do",
                             hint="give every release the same sources (UKI, boot chain, Secure Boot, …)")
        for r in releases:
            files[f"{cid}.pcrlock.d/{r.variant}.pcrlock"] = r.components[cid].dumps()
    return files


def read_tree(files: Mapping[str, bytes]) -> list[Component]:
    """Components from ``{relative path: bytes}`` of a pcrlock.d directory (``X.pcrlock`` files and
    ``X.pcrlock.d/*.pcrlock`` variants), sorted by ID as systemd sorts them."""
    comps: dict[str, list[Variant]] = {}
    for path, data in sorted(files.items()):
        parts = path.split("/")
        if len(parts) == 1 and parts[0].endswith(".pcrlock"):
            cid = parts[0][: -len(".pcrlock")]
            comps.setdefault(cid, []).append(Variant(cid, path, PcrlockFile.parse(data, source=path)))
        elif len(parts) == 2 and parts[0].endswith(".pcrlock.d") and parts[1].endswith(".pcrlock"):
            cid = parts[0][: -len(".pcrlock.d")]
            comps.setdefault(cid, []).append(
                Variant(parts[1][: -len(".pcrlock")], path, PcrlockFile.parse(data, source=path)))
    return [Component(cid, tuple(v)) for cid, v in sorted(comps.items())]


def merge_trees(trees: Sequence[Sequence[Component]]) -> list[Component]:
    """Components of several directories as systemd-pcrlock --components=A --components=B… sees
    them: one component per ID, variants by file name, the first directory's file winning."""
    by_id: dict[str, dict[str, Variant]] = {}
    for comps in trees:
        for c in comps:
            slot = by_id.setdefault(c.id, {})
            for v in c.variants:
                slot.setdefault(v.path.rsplit("/", 1)[-1], v)
    return [Component(cid, tuple(v for _, v in sorted(vs.items()))) for cid, vs in sorted(by_id.items()) if vs]


def predict_tree(components: Sequence[Component], pcrs: Sequence[int], bank: HashAlg = HashAlg.SHA256,
                 *, start: str | None = None, end: str | None = None) -> dict[int, set[bytes]]:
    """systemd-pcrlock's prediction from components alone (every combination of variants, PCRs from
    their reset values; no log): the set of values each PCR may hold at the location window
    [start, end]."""
    from pcrtool.eventlog.replay import extend, initial_pcr_value

    out: dict[int, set[bytes]] = {}
    for pcr in pcrs:
        results: set[bytes] = set()
        states = {initial_pcr_value(bank, pcr)}
        for comp in components:
            if end is not None and comp.id > end:
                break
            if start is not None and comp.id > start:
                results |= states
            nxt = set()
            for var in comp.variants:
                for v in states:
                    for rec in var.file.records:
                        if rec.pcr == pcr:
                            d = rec.digest(bank)
                            if d is None:
                                raise FormatError(f"{var.path}: a PCR {pcr} record has no {bank.bank_name} digest")
                            v = extend(bank, v, d)
                    nxt.add(v)
            states = nxt or states
        out[pcr] = results | states
    return out
