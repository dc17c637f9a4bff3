"""Release manifests, allowlists and the predictions file.

Release manifest (TOML or JSON, one release per file; paths are relative to the manifest)::

    name = "fooos"                      # required: [A-Za-z0-9._+-]{1,64}
    version = "2.1~rc1"                 # required: UAPI version (ordered as systemd-analyze compare-versions)
    svn = 3                             # required: security version, integer 0 … 2**32-1
    banks = ["sha256"]                  # default ["sha256"]; sha1 sha256 sha384 sha512
    pcrs = [4, 7, 11]                   # default: every PCR the sources below predict
    phases = ["enter-initrd"]           # PCR 11 phase paths; default ["enter-initrd"] (where unlock runs);
                                        # ":" = UKI only; paths like "enter-initrd:leave-initrd"

    [uki]                               # PCR 11 (systemd-stub): a UKI file …
    path = "fooos-2.1.efi"
    profile = 0                         # optional multi-profile selection (PCR 12 gets the profile tag if > 0)
    stub = 257                          # optional: systemd-stub version (default: read from .sdmagic, else newest)
    # … or section files instead of `path`:  [uki.sections] linux = "vmlinuz", initrd = "initrd.img", …

    [boot]                              # PCR 4: images in load order (Authenticode), or precomputed
    chain = ["shimx64.efi", "systemd-bootx64.efi", "uki", "uki.linux"]   # "uki" = the [uki] path;
                                        # "uki.linux" = its kernel, which systemd-stub LoadImage()s;
                                        # {sha256 = "<hex>", …} = a precomputed Authenticode digest
    separator = "00000000"              # optional

    [secureboot]                        # PCR 7: variable files (ESL, .auth or efivarfs dumps)
    SecureBoot = 1                      # 0/1, or a file
    PK = "PK.esl"
    KEK = "KEK.auth"
    db = "db.esl"
    dbx = "dbx-efivarfs.bin"
    authorities = [{owner = "<guid>", certificate = "db-cert.der"}]

    [cmdline]                           # PCR 12 (systemd-stub/sd-boot) and PCR 9 (Linux EFI stub)
    stub = "console=ttyS0 rw"           # measured by the stub into PCR 12 (UTF-16, NUL per `nul`)
    kernel = "console=ttyS0 rw"         # LoadOptions the Linux EFI stub measures into PCR 9
    initrd = "initrd.img"               # initrd the Linux EFI stub measures into PCR 9
    nul = true

    [values]                            # precomputed values (override the sources), PCR → bank → hex;
    "0" = {sha256 = "<hex>"}            # PCR 11 entries apply to every phase
    [values.phase."enter-initrd"]       # … or per phase
    "11" = {sha256 = "<hex>"}

    reference_log = "tpm-eventlog.bin"  # optional: the target's firmware log; predicted events replace
                                        # theirs (substitution), unchanged events are kept

Allowlist (TOML or JSON)::

    [[allow]]
    name = "fooos"
    version = "2.1"                     # exact version (UAPI-equal), or "*" for any version …
    svn = 3                             # … optional: must also match

Predictions file (JSON, written by ``pcrtool predict release``; read with :func:`load_predictions`)::

    {"format": "pcrtool-predictions/1",
     "releases": [
       {"name": "fooos", "version": "2.1", "svn": 3, "allowed": true,
        "pcrs": [7, 11], "banks": ["sha256"],
        "phases": [{"phase": "enter-initrd", "values": {"sha256": {"7": "<hex>", "11": "<hex>"}},
                    "measurements": [{"pcr": 7, "type": "EV_EFI_VARIABLE_DRIVER_CONFIG",
                                      "description": "SecureBoot", "sha256": "<hex>"}, …]}],
        "notes": ["…"]}]}

``phase`` is the normalized phase path (``""`` = UKI only, before the initrd). ``values`` has the
shape :meth:`pcrtool.model.PcrValues.parse` reads. ``measurements`` (optional) are the events of
the selected PCRs, in boot order, whose replay from reset gives ``values`` (``type`` is the TCG
event type name, or ``userspace`` for systemd-pcrextend); validation extends them into a TPM to
emulate the boot. Releases are sorted by (name, UAPI version).
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from pcrtool.errors import FormatError, PcrtoolError
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues
from pcrtool.predict.events import Measurement, replay_measurements
from pcrtool.predict.versions import compare_versions, version_key

FORMAT = "pcrtool-predictions/1"
DEFAULT_RELEASE_PHASES = ("enter-initrd",)
_NAME = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
_VERSION = re.compile(r"^[A-Za-z0-9.~^_+-]{1,64}$")
_BANK_NAMES = ("sha1", "sha256", "sha384", "sha512")

#: A file reader the caller supplies (the pure core never opens files): path → bytes.
Reader = Callable[[str], bytes]


class ManifestError(FormatError):
    """A release manifest, allowlist or predictions file has a bad or missing field."""


@dataclass(frozen=True, slots=True)
class Release:
    """One release and its predicted PCR values per phase path (``""`` = UKI only)."""

    name: str
    version: str
    svn: int
    pcrs: tuple[int, ...]
    banks: tuple[HashAlg, ...]
    predictions: Mapping[str, PcrValues]
    allowed: bool = True
    notes: tuple[str, ...] = ()
    #: per phase: the events (selected PCRs only, in order) whose replay from reset gives the
    #: prediction — what validation extends into a TPM to emulate the boot. Absent when the
    #: prediction cannot be replayed from events (precomputed values, PCR 0 startup locality).
    measurements: Mapping[str, tuple[Measurement, ...]] = field(default_factory=dict)

    @property
    def phases(self) -> tuple[str, ...]:
        return tuple(self.predictions)

    @property
    def id(self) -> str:
        return f"{self.name} {self.version}"

    def values(self, phase: str | None = None) -> PcrValues:
        """PcrValues for ``phase`` (default: the only/first phase)."""
        if phase is None:
            phase = self.phases[0]
        from pcrtool.predict.uki import normalize_phase
        key = normalize_phase(phase)
        if key not in self.predictions:
            raise ManifestError(f"release {self.id} has no prediction for phase {phase!r}",
                                hint=f"phases: {', '.join(p or ':' for p in self.phases)}")
        return self.predictions[key]

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "svn": self.svn, "allowed": self.allowed,
                "pcrs": list(self.pcrs), "banks": [b.bank_name for b in self.banks],
                "phases": [{"phase": p, "values": v.to_json()}
                           | ({"measurements": [_measurement_json(m) for m in self.measurements[p]]}
                              if p in self.measurements else {})
                           for p, v in self.predictions.items()],
                "notes": list(self.notes)}


def _measurement_json(m: Measurement) -> dict:
    return {"pcr": m.pcr, "type": m.event_type.name if m.event_type is not None else "userspace",
            "description": m.description} | {alg.bank_name: d.hex() for alg, d in m.digests.items()}


def _measurement_from_json(item: Any, where: str) -> Measurement:
    from pcrtool.tcg.constants import EventType

    if not isinstance(item, dict) or not isinstance(item.get("pcr"), int):
        raise ManifestError(f"{where}: a measurement is {{\"pcr\": N, \"type\": …, \"sha256\": hex}}")
    _int(item["pcr"], "pcr", where, 0, PCR_COUNT - 1)
    type_name = item.get("type", "userspace")
    if type_name == "userspace":
        event_type = None
    else:
        try:
            event_type = EventType[type_name] if not type_name.startswith("EV_0x") else EventType(int(type_name[5:], 16))
        except (KeyError, ValueError):
            raise ManifestError(f"{where}: unknown event type {type_name!r}") from None
    digests = {}
    for key, value in item.items():
        if key in ("pcr", "type", "description"):
            continue
        alg = _banks([key], where)[0]
        digests[alg] = _hex(value, key, where, alg.digest_size)
    return Measurement(item["pcr"], digests, event_type, str(item.get("description", "")))


# --- field validation ------------------------------------------------------------------------

def _where(source: str, key: str) -> str:
    return f"{source}: field {key!r}"


def _req(doc: Mapping, key: str, source: str) -> Any:
    if key not in doc:
        raise ManifestError(f"{source}: missing required field {key!r}", hint=_HINT)
    return doc[key]


_HINT = "see `pcrtool predict release --help` for the manifest format"


def _str(value: Any, key: str, source: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{_where(source, key)} must be a non-empty string", hint=_HINT)
    if pattern is not None and not pattern.match(value):
        raise ManifestError(f"{_where(source, key)} has invalid characters: {value!r}",
                            hint="letters, digits and . _ + - (versions also ~ ^)")
    return value


def _int(value: Any, key: str, source: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ManifestError(f"{_where(source, key)} must be an integer {lo}…{hi}, not {value!r}", hint=_HINT)
    return value


def _banks(value: Any, source: str) -> tuple[HashAlg, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{_where(source, 'banks')} must be a non-empty list", hint='e.g. ["sha256"]')
    out = []
    for b in value:
        if not isinstance(b, str) or b.lower() not in _BANK_NAMES:
            raise ManifestError(f"{_where(source, 'banks')}: unknown bank {b!r}",
                                hint="use sha1, sha256, sha384, sha512")
        out.append(HashAlg.from_name(b))
    return tuple(dict.fromkeys(out))


def _pcr_list(value: Any, source: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{_where(source, 'pcrs')} must be a non-empty list of PCR indices", hint="e.g. [7, 11]")
    return tuple(sorted({_int(p, "pcrs", source, 0, PCR_COUNT - 1) for p in value}))


def _hex(value: Any, key: str, source: str, size: int | None = None) -> bytes:
    try:
        data = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        data = None
    if data is None or (size is not None and len(data) != size):
        raise ManifestError(f"{_where(source, key)} must be {'%d-byte ' % size if size else ''}hex, not {str(value)[:40]!r}")
    return data


def parse_document(text: str | bytes, *, source: str) -> dict:
    """TOML or JSON (by content: JSON starts with ``{``) into a dict, with a located error."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{source}: not UTF-8 text (byte {e.start})") from None
    if text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{source}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ManifestError(f"{source}: bad TOML: {e}", hint="or give JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{source}: top level must be a table/object")
    return doc


_TOP_KEYS = {"name", "version", "svn", "banks", "pcrs", "phases", "uki", "boot", "secureboot",
             "cmdline", "values", "reference_log", "description"}


@dataclass(frozen=True, slots=True)
class ReleaseManifest:
    """A validated manifest; artefact paths not yet read."""

    name: str
    version: str
    svn: int
    banks: tuple[HashAlg, ...]
    pcrs: tuple[int, ...] | None
    phases: tuple[str, ...]
    doc: Mapping[str, Any] = field(repr=False)
    source: str = "manifest"


def parse_manifest(text: str | bytes, *, source: str = "manifest") -> ReleaseManifest:
    """Validate a release manifest field by field (see the module docstring)."""
    from pcrtool.errors import UsageError
    from pcrtool.predict.uki import normalize_phase

    doc = parse_document(text, source=source)
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise ManifestError(f"{source}: unknown field {unknown[0]!r}",
                            hint=f"known fields: {', '.join(sorted(_TOP_KEYS))}")
    name = _str(_req(doc, "name", source), "name", source, _NAME)
    version = _str(_req(doc, "version", source), "version", source, _VERSION)
    svn = _int(_req(doc, "svn", source), "svn", source, 0, 2**32 - 1)
    banks = _banks(doc.get("banks", ["sha256"]), source)
    pcrs = _pcr_list(doc["pcrs"], source) if "pcrs" in doc else None
    phases_raw = doc.get("phases", list(DEFAULT_RELEASE_PHASES))
    if not isinstance(phases_raw, list) or not phases_raw or not all(isinstance(p, str) for p in phases_raw):
        raise ManifestError(f"{_where(source, 'phases')} must be a non-empty list of phase paths",
                            hint='e.g. ["enter-initrd"] or [":"]')
    try:
        phases = tuple(dict.fromkeys(normalize_phase(p) for p in phases_raw))
    except UsageError as e:
        raise ManifestError(f"{_where(source, 'phases')}: {e.message}") from None
    for section in ("uki", "boot", "secureboot", "cmdline", "values"):
        if section in doc and not isinstance(doc[section], dict):
            raise ManifestError(f"{_where(source, section)} must be a table")
    if "reference_log" in doc:
        _str(doc["reference_log"], "reference_log", source)
    return ReleaseManifest(name, version, svn, banks, pcrs, phases, doc, source)


# --- prediction --------------------------------------------------------------------------------

def _read(reader: Reader, path: Any, key: str, source: str) -> bytes:
    return reader(_str(path, key, source))


def _uki_sections(m: ReleaseManifest, reader: Reader) -> dict[str, bytes] | None:
    from pcrtool.predict.uki import MEASURED_SECTIONS, measured_sections, sections_from_uki

    uki = m.doc.get("uki")
    if uki is None:
        return None
    src = f"{m.source} [uki]"
    unknown = sorted(set(uki) - {"path", "profile", "sections", "stub"})
    if unknown:
        raise ManifestError(f"{src}: unknown field {unknown[0]!r}", hint="path, profile, sections, stub")
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
    out = {}
    for key, path in secs.items():
        name = "." + key.lstrip(".")
        if name not in MEASURED_SECTIONS:
            raise ManifestError(f"{src}: unknown UKI section {key!r}",
                                hint="one of " + ", ".join(s.lstrip(".") for s in MEASURED_SECTIONS))
        if stub is None or name in measured_sections(stub):
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
        authority_variable, policy_variables, read_variable_file, secureboot_measurements,
    )

    sb = m.doc.get("secureboot")
    if sb is None:
        return None
    src = f"{m.source} [secureboot]"
    values: dict[str, bytes | None] = {}
    for name in ("SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr"):
        if name not in sb:
            continue
        v = sb[name]
        if name == "SecureBoot" and isinstance(v, (bool, int)):
            values[name] = bytes([int(_int(int(v), "SecureBoot", src, 0, 1))])
        else:
            values[name] = read_variable_file(_read(reader, v, name, src), name=name, source=f"{src} {name}")
    unknown = sorted(set(sb) - {"SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr", "authorities", "separator"})
    if unknown:
        raise ManifestError(f"{src}: unknown field {unknown[0]!r}",
                            hint="SecureBoot, PK, KEK, db, dbx, dbt, dbr, authorities, separator")
    auths = []
    for i, a in enumerate(sb.get("authorities", [])):
        if not isinstance(a, dict) or "owner" not in a or "certificate" not in a:
            raise ManifestError(f"{src}: authorities[{i}] needs 'owner' (GUID) and 'certificate' (file)")
        try:
            owner = uuid.UUID(str(a["owner"]))
        except ValueError:
            raise ManifestError(f"{src}: authorities[{i}].owner is not a GUID: {a['owner']!r}") from None
        auths.append(authority_variable(owner, _read(reader, a["certificate"], "certificate", src)))
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
    for part in (_boot_measurements(m, reader), _secureboot_measurements(m, reader),
                 _profile_measurements(m), _cmdline_measurements(m, reader)):
        if part:
            fixed += part
    uki_events = section_measurements(sections, m.banks) if sections is not None else []
    pre_all, pre_phase = _precomputed(m)

    if reference_log is None and "reference_log" in m.doc:
        reference_log = reader(m.doc["reference_log"])

    predicted_pcrs = {e.pcr for e in fixed + uki_events} | set(pre_all)
    if sections is not None:
        predicted_pcrs.add(PCR_KERNEL_BOOT)
    for t in pre_phase.values():
        predicted_pcrs |= set(t)
    pcrs = m.pcrs if m.pcrs is not None else tuple(sorted(predicted_pcrs))
    if not pcrs:
        raise ManifestError(f"{m.source}: nothing to predict",
                            hint="add [uki], [boot], [secureboot], [cmdline] or [values]")

    predictions: dict[str, PcrValues] = {}
    phase_events: dict[str, tuple[Measurement, ...]] = {}
    for phase in m.phases:
        events = fixed + uki_events + (phase_measurements(phase, m.banks) if sections is not None else [])
        if reference_log is not None:
            from pcrtool.predict.substitute import substitute_log
            result = substitute_log(reference_log, events, m.banks)
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
                    from pcrtool.predict.events import initial_value
                    v = initial_value(alg, pcr)
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
    from pcrtool.predict.events import initial_value

    return all((replayed.get(alg, pcr) or initial_value(alg, pcr)) == predicted.get(alg, pcr)
               for alg in banks for pcr in pcrs)


# --- allowlist ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AllowEntry:
    name: str
    version: str  # "*" = any
    svn: int | None = None

    def matches(self, name: str, version: str, svn: int) -> bool:
        return (self.name == name and (self.version == "*" or compare_versions(self.version, version) == 0)
                and (self.svn is None or self.svn == svn))


@dataclass(frozen=True, slots=True)
class Allowlist:
    entries: tuple[AllowEntry, ...]

    def allows(self, name: str, version: str, svn: int) -> bool:
        return any(e.matches(name, version, svn) for e in self.entries)


def parse_allowlist(text: str | bytes, *, source: str = "allowlist") -> Allowlist:
    doc = parse_document(text, source=source)
    unknown = sorted(set(doc) - {"allow"})
    if unknown:
        raise ManifestError(f"{source}: unknown field {unknown[0]!r}", hint="an allowlist has [[allow]] entries")
    items = _req(doc, "allow", source)
    if not isinstance(items, list):
        raise ManifestError(f"{source}: 'allow' must be a list of {{name, version[, svn]}}")
    entries = []
    for i, item in enumerate(items):
        where = f"{source} allow[{i}]"
        if not isinstance(item, dict):
            raise ManifestError(f"{where} must be a table")
        extra = sorted(set(item) - {"name", "version", "svn"})
        if extra:
            raise ManifestError(f"{where}: unknown field {extra[0]!r}", hint="name, version, svn")
        name = _str(_req(item, "name", where), "name", where, _NAME)
        version = _req(item, "version", where)
        version = version if version == "*" else _str(version, "version", where, _VERSION)
        svn = _int(item["svn"], "svn", where, 0, 2**32 - 1) if "svn" in item else None
        entries.append(AllowEntry(name, version, svn))
    return Allowlist(tuple(entries))


# --- predictions file ---------------------------------------------------------------------------

def sort_releases(releases: Sequence[Release]) -> list[Release]:
    return sorted(releases, key=lambda r: (r.name, version_key(r.version)))


def dump_predictions(releases: Sequence[Release]) -> dict:
    """The predictions file as a JSON-ready dict (see the module docstring)."""
    seen = set()
    for r in releases:
        key = (r.name, r.version)
        if key in seen:
            raise ManifestError(f"release {r.id} given twice", hint="one manifest per release")
        seen.add(key)
    return {"format": FORMAT, "releases": [r.to_json() for r in sort_releases(releases)]}


def load_predictions(text: str | bytes, *, source: str = "predictions") -> list[Release]:
    """Read a predictions file back into :class:`Release` objects (validated)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{source}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ManifestError(f"{source}: not a {FORMAT} file", hint="write it with `pcrtool predict release`")
    out = []
    for i, r in enumerate(_req(doc, "releases", source)):
        where = f"{source} releases[{i}]"
        if not isinstance(r, dict):
            raise ManifestError(f"{where} must be an object")
        name = _str(_req(r, "name", where), "name", where, _NAME)
        version = _str(_req(r, "version", where), "version", where, _VERSION)
        svn = _int(_req(r, "svn", where), "svn", where, 0, 2**32 - 1)
        banks = _banks(_req(r, "banks", where), where)
        pcrs = _pcr_list(_req(r, "pcrs", where), where)
        allowed = _req(r, "allowed", where)
        if not isinstance(allowed, bool):
            raise ManifestError(f"{where}: 'allowed' must be true or false")
        predictions = {}
        measurements: dict[str, tuple[Measurement, ...]] = {}
        for j, p in enumerate(_req(r, "phases", where)):
            if not isinstance(p, dict) or not isinstance(p.get("phase"), str):
                raise ManifestError(f"{where} phases[{j}] needs 'phase' and 'values'")
            try:
                values = PcrValues.parse(json.dumps(_req(p, "values", where)), source=f"{where} phases[{j}]")
            except PcrtoolError as e:
                raise ManifestError(e.message) from None
            for alg in banks:
                for pcr in pcrs:
                    if values.get(alg, pcr) is None:
                        raise ManifestError(f"{where} phase {p['phase']!r}: no {alg.bank_name} value for PCR {pcr}")
            predictions[p["phase"]] = values
            if "measurements" in p:
                if not isinstance(p["measurements"], list):
                    raise ManifestError(f"{where} phases[{j}]: 'measurements' must be a list")
                measurements[p["phase"]] = tuple(_measurement_from_json(x, f"{where} phases[{j}] measurements[{k}]")
                                                 for k, x in enumerate(p["measurements"]))
        if not predictions:
            raise ManifestError(f"{where}: no phases")
        out.append(Release(name, version, svn, pcrs, banks, predictions, allowed,
                           tuple(str(n) for n in r.get("notes", [])), measurements))
    return out
