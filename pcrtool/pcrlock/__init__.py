"""systemd-pcrlock's files, written and read (pure: bytes in, typed values out).

``.pcrlock`` (systemd.pcrlock(5)): ``{"records": [{"pcr": N, "digests": [{"hashAlg", "digest"}]}]}``,
the records one component adds to the log, in measurement order. pcrtool writes them byte for
byte as ``systemd-pcrlock lock-*`` (systemd 262) does: compact JSON plus a newline, digests of
computed records in the order sha1, sha256, sha384, sha512, digests copied from an event log in
the reverse of the record's own order (systemd prepends each digest to its list).

A ``pcrlock.d`` tree holds components ``NNN-name.pcrlock.d/`` whose ``*.pcrlock`` files are the
alternatives (variants); components are ordered by ID. ``pcrlock.json`` (``systemd-pcrlock
make-policy``) holds the predicted values the TPM policy accepts: one ``PolicyOR`` of values per
PCR, ANDed across PCRs, in one bank.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import strict

#: A .pcrlock file or a pcrlock.json policy: systemd's are kilobytes; this bounds a hostile one.
MAX_PCRLOCK_BYTES = 16 << 20


def _load(untrusted_text: str | bytes, source: str, hint: str):
    """Bounded, strict JSON (size, depth, no repeated keys or floats): these files may come from
    a device or a download, and a deeply nested one must be a FormatError, never a RecursionError."""
    return strict.load_device_json(untrusted_text, source, max_bytes=MAX_PCRLOCK_BYTES, hint=hint)

#: The banks systemd writes for computed records, in its order (tpm2_hash_algorithms).
BANKS: tuple[HashAlg, ...] = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)

PCR_BOOT_LOADER_CODE = 4
PCR_BOOT_LOADER_CONFIG = 5
PCR_SECURE_BOOT_POLICY = 7
PCR_KERNEL_INITRD = 9
PCR_KERNEL_BOOT = 11

#: systemd's default component IDs (the paths its lock-* verbs write under /var/lib/pcrlock.d).
COMPONENT_IDS = {
    "secureboot-policy": "240-secureboot-policy",
    "firmware-code-early": "250-firmware-code-early",
    "firmware-config-early": "250-firmware-config-early",
    "firmware-code-late": "550-firmware-code-late",
    "firmware-config-late": "550-firmware-config-late",
    "gpt": "600-gpt",
    "secureboot-authority": "620-secureboot-authority",
    "kernel-cmdline": "710-kernel-cmdline",
    "kernel-initrd": "720-kernel-initrd",
}


@dataclass(frozen=True, slots=True)
class Record:
    """One expected extend: ``digests`` in the order they are written."""

    pcr: int
    digests: tuple[tuple[HashAlg, bytes], ...]

    @classmethod
    def of_data(cls, pcr: int, data: bytes, banks: Sequence[HashAlg] = BANKS) -> "Record":
        return cls(pcr, tuple((alg, alg.digest(data)) for alg in banks))

    @classmethod
    def of_measurement(cls, m, banks: Sequence[HashAlg] = BANKS) -> "Record":
        """The record of a predicted :class:`~pcrtool.predict.events.Measurement`, in ``banks`` order."""
        return cls(m.pcr, tuple((alg, m.digests[alg]) for alg in banks))

    def digest(self, alg: HashAlg) -> bytes | None:
        return dict(self.digests).get(alg)

    def to_json(self) -> dict:
        return {"pcr": self.pcr, "digests": [{"hashAlg": a.bank_name, "digest": d.hex()} for a, d in self.digests]}


@dataclass(frozen=True, slots=True)
class PcrlockFile:
    records: tuple[Record, ...] = ()

    def dumps(self) -> bytes:
        """The file as systemd-pcrlock writes it (compact JSON, newline)."""
        return (json.dumps({"records": [r.to_json() for r in self.records]}, separators=(",", ":")) + "\n").encode()

    @classmethod
    def parse(cls, text: str | bytes, *, source: str = ".pcrlock") -> "PcrlockFile":
        """Read a .pcrlock file (a subset of CEL-JSON; other record keys are ignored, as systemd does)."""
        doc = _load(text, source, "expected a .pcrlock file")
        if not isinstance(doc, dict):
            raise FormatError(f"{source}: not a JSON object", hint="expected {\"records\": [...]}")
        raw = doc.get("records", [])
        if not isinstance(raw, list):
            raise FormatError(f"{source}: 'records' is not a list")
        records = []
        for i, item in enumerate(raw):
            where = f"{source}: records[{i}]"
            if not isinstance(item, dict):
                raise FormatError(f"{where} is not an object")
            pcr = item.get("pcr")
            if type(pcr) is not int or not 0 <= pcr < 24:
                raise FormatError(f"{where}: 'pcr' must be 0..23", hint="NV-index records are not supported")
            digests = []
            for j, d in enumerate(item.get("digests") or []):
                if not isinstance(d, dict):
                    raise FormatError(f"{where}.digests[{j}] is not an object")
                try:
                    alg = HashAlg.from_name(str(d.get("hashAlg")))
                except UsageError:
                    continue  # systemd skips banks it does not know
                try:
                    value = bytes.fromhex(str(d.get("digest")))
                except ValueError:
                    raise FormatError(f"{where}.digests[{j}]: digest is not hex") from None
                if len(value) != alg.digest_size:
                    raise FormatError(f"{where}.digests[{j}]: {alg.bank_name} digest has {len(value)} bytes")
                if any(a is alg for a, _ in digests):
                    raise FormatError(f"{where}: {alg.bank_name} digest given twice")
                digests.append((alg, value))
            records.append(Record(pcr, tuple(digests)))
        return cls(tuple(records))


# --- lock-* records (the equivalents of systemd-pcrlock's verbs) ------------------------------

def lock_pe(image: bytes, *, pcr: int = PCR_BOOT_LOADER_CODE) -> PcrlockFile:
    """``lock-pe``: the Authenticode hash of a PE image, as systemd's pe_hash computes it."""
    return PcrlockFile((Record(pcr, tuple((alg, pe_hash(image, alg)) for alg in BANKS)),))


def pe_hash(image: bytes, alg: HashAlg) -> bytes:
    """systemd's pe_hash: the Authenticode digest, an unsigned image's tail zero-padded to 8 bytes
    (the signing view; firmware measures an unaligned unsigned file without that padding)."""
    from pcrtool.pe import PeImage
    from pcrtool.pe.digest import image_digest

    parsed = PeImage.parse(image)
    pad = 0 if parsed.is_signed else -len(image) % 8
    return image_digest(parsed, alg, pad)


def lock_uki(uki: bytes) -> PcrlockFile:
    """``lock-uki``: the UKI's PE hash (PCR 4), then for every measured section the stub's two PCR
    11 records (section name with NUL, section contents) in the stub's order."""
    from pcrtool.predict.uki import section_measurements, sections_from_uki

    records = [lock_pe(uki).records[0]]
    for m in section_measurements(sections_from_uki(uki, stub=None), BANKS):
        records.append(Record.of_measurement(m))
    return PcrlockFile(tuple(records))


def lock_kernel_cmdline(cmdline: str | bytes) -> PcrlockFile:
    """``lock-kernel-cmdline``: PCR 9, the command line (trailing newlines dropped) in UTF-16LE
    with its NUL, as the Linux EFI stub measures the load options."""
    from pcrtool.predict.cmdline import linux_load_options_measurement

    text = cmdline.decode("utf-8") if isinstance(cmdline, bytes) else cmdline
    m = linux_load_options_measurement(text.rstrip("\n"), BANKS)
    return PcrlockFile((Record.of_measurement(m),))


def lock_kernel_initrd(initrd: bytes) -> PcrlockFile:
    """``lock-kernel-initrd``: PCR 9, the digest of the initrd file (the Linux EFI stub's tag)."""
    from pcrtool.predict.cmdline import linux_initrd_measurement

    m = linux_initrd_measurement(initrd, BANKS)
    return PcrlockFile((Record.of_measurement(m),))


def lock_secureboot_policy(variables: Mapping[str, bytes | None]) -> PcrlockFile:
    """``lock-secureboot-policy``: PCR 7, UEFI_VARIABLE_DATA of SecureBoot, PK, KEK, db, dbx (absent
    → empty) and of dbt, dbr when present. ``variables`` maps names to the variable data (without
    the efivarfs attribute word); SecureBoot is required."""
    from pcrtool.predict.secureboot import policy_variables

    if variables.get("SecureBoot") is None:
        raise UsageError("lock-secureboot-policy needs the SecureBoot variable",
                         hint="systemd-pcrlock refuses without it too")
    return PcrlockFile(tuple(Record.of_data(PCR_SECURE_BOOT_POLICY, v.variable_data())
                             for v in policy_variables(dict(variables))))


def lock_gpt(disk: bytes) -> PcrlockFile:
    """``lock-gpt``: PCR 5, UEFI_GPT_DATA of the disk's primary GPT (the sector size systemd finds:
    512 or 4096; exactly one must carry a GPT header)."""
    from pcrtool.gpt import SIGNATURE as GPT_SIGNATURE

    found = [sz for sz in (512, 1024, 2048, 4096) if disk[sz:sz + 8] == GPT_SIGNATURE]
    if len(found) != 1:
        raise FormatError("no GPT header" if not found else "GPT headers for several sector sizes",
                          hint="give the whole-disk image (systemd-pcrlock refuses this too)")
    from pcrtool.predict.gpt import gpt_event_data

    data = gpt_event_data(disk, sector_size=found[0], check_crc=False)   # systemd checks no CRC
    return PcrlockFile((Record.of_data(PCR_BOOT_LOADER_CONFIG, data),))


# --- records taken from a reference event log -------------------------------------------------

def _log_record(ev) -> Record:
    return Record(ev.pcr, tuple(reversed(list(ev.digests.items()))))


def _payload_valid(ev) -> bool:
    """systemd's strict payload check for the event types it locks down (digest = H(payload))."""
    return bool(ev.digests) and all(alg.digest(ev.data) == d for alg, d in ev.digests.items())


def _is_separator(ev) -> bool:
    from pcrtool.tcg.constants import EventType
    return ev.event_type == EventType.EV_SEPARATOR and _payload_valid(ev)


def _is_calling_efi_app(ev) -> bool:
    from pcrtool.tcg.constants import EventType
    return (ev.pcr == PCR_BOOT_LOADER_CODE and ev.event_type == EventType.EV_EFI_ACTION and _payload_valid(ev)
            and ev.data.rstrip(b"\0") == b"Calling EFI Application from Boot Option")


def lock_firmware(log, which: str) -> tuple[PcrlockFile, PcrlockFile]:
    """``lock-firmware-code`` (PCRs 0, 2; PCR 4 until its separator or the "Calling EFI
    Application from Boot Option" action) or ``lock-firmware-config`` (PCRs 1, 3; PCR 5 the same
    way): the (early, late) files; records after a PCR's separator go to the late file, the
    separators themselves to neither. ``log`` is a parsed firmware log (pcrtool.eventlog)."""
    if which == "code":
        always, until_sep = {0, 2}, {PCR_BOOT_LOADER_CODE}
    elif which == "config":
        always, until_sep = {1, 3}, {PCR_BOOT_LOADER_CONFIG}
    else:
        raise UsageError(f"lock_firmware: {which!r} is not 'code' or 'config'")
    seen_sep: set[int] = set()
    seen_action: set[int] = set()
    early: list[Record] = []
    late: list[Record] = []
    for ev in log.events:
        if not ev.is_extended:
            continue
        p = ev.pcr
        if p not in always and not (p in until_sep and p not in seen_sep | seen_action):
            continue
        if _is_separator(ev):
            seen_sep.add(p)
            continue
        if _is_calling_efi_app(ev):
            seen_action.add(p)
            continue
        (late if p in seen_sep else early).append(_log_record(ev))
    return PcrlockFile(tuple(early)), PcrlockFile(tuple(late))


_SB_ORDER = ("SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr")
_SB_REQUIRED = {"SecureBoot", "PK", "KEK", "db", "dbx"}


def lock_secureboot_authority(log) -> PcrlockFile:
    """``lock-secureboot-authority``: the log's valid PCR 7 EV_EFI_VARIABLE_AUTHORITY records, after
    systemd's consistency checks (every policy variable measured once, in order, before the first
    authority). For a log with Secure Boot off, systemd writes no file: see ``secure_boot_enabled``."""
    from pcrtool.predict.secureboot import _GUID_OF, Variable
    from pcrtool.tcg.constants import EventType

    found: dict[str, int] = {}
    first_authority = False
    out = []
    for i, ev in enumerate(log.events):
        if not ev.is_extended or ev.pcr != PCR_SECURE_BOOT_POLICY or not _payload_valid(ev):
            continue
        if ev.event_type == EventType.EV_EFI_VARIABLE_AUTHORITY:
            first_authority = True
            out.append(_log_record(ev))
            continue
        if ev.event_type != EventType.EV_EFI_VARIABLE_DRIVER_CONFIG:
            continue
        try:
            var = Variable.from_variable_data(ev.data)
        except FormatError:
            continue
        if var.name not in _SB_ORDER or _GUID_OF.get(var.name) != var.guid:
            continue
        if first_authority:
            raise FormatError(f"event {i}: Secure Boot authority before variable {var.name}, refusing")
        if var.name in found:
            raise FormatError(f"event {i}: duplicate {var.name} record, refusing")
        later = [n for n in _SB_ORDER[_SB_ORDER.index(var.name) + 1:] if n in found]
        if later:
            raise FormatError(f"event {i}: {later[0]} record before {var.name} record, refusing")
        found[var.name] = i
    missing = [n for n in _SB_ORDER if n in _SB_REQUIRED and n not in found]
    if missing:
        raise FormatError(f"required Secure Boot record {missing[0]} not found in the log, refusing")
    return PcrlockFile(tuple(out))


def secure_boot_enabled(log) -> bool | None:
    """The SecureBoot variable's value as the log measured it (None when it is not logged)."""
    from pcrtool.predict.substitute import logged_secure_boot
    return logged_secure_boot(log)


# --- pcrlock.d trees ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Variant:
    id: str          # file name without .pcrlock
    path: str
    file: PcrlockFile


@dataclass(frozen=True, slots=True)
class Component:
    id: str          # e.g. "650-uki"
    variants: tuple[Variant, ...] = ()


# --- pcrlock.json -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PcrlockPolicy:
    """The public part of ``pcrlock.json``: the accepted values per PCR in one bank."""

    bank: HashAlg
    values: dict[int, tuple[bytes, ...]] = field(default_factory=dict)
    nv_index: int | None = None

    @classmethod
    def parse(cls, text: str | bytes, *, source: str = "pcrlock.json") -> "PcrlockPolicy":
        doc = _load(text, source, "expected systemd-pcrlock make-policy's pcrlock.json")
        if not isinstance(doc, dict) or "pcrValues" not in doc:
            raise FormatError(f"{source}: no 'pcrValues'", hint="expected systemd-pcrlock make-policy's pcrlock.json")
        try:
            bank = HashAlg.from_name(str(doc.get("pcrBank", "sha256")))
        except UsageError:
            raise FormatError(f"{source}: unknown pcrBank {doc.get('pcrBank')!r}") from None
        values: dict[int, tuple[bytes, ...]] = {}
        raw = doc["pcrValues"]
        if not isinstance(raw, list):
            raise FormatError(f"{source}: 'pcrValues' is not a list")
        for i, item in enumerate(raw):
            where = f"{source}: pcrValues[{i}]"
            if not isinstance(item, dict) or type(item.get("pcr")) is not int or not 0 <= item["pcr"] < 24:
                raise FormatError(f"{where}: expected {{\"pcr\": 0..23, \"values\": [hex, …]}}")
            vals = item.get("values")
            if not isinstance(vals, list) or not vals:
                raise FormatError(f"{where}: 'values' must be a non-empty list")
            try:
                parsed = tuple(bytes.fromhex(str(v)) for v in vals)
            except ValueError:
                raise FormatError(f"{where}: a value is not hex") from None
            if any(len(v) != bank.digest_size for v in parsed):
                raise FormatError(f"{where}: a value is not a {bank.bank_name} digest")
            if item["pcr"] in values:
                raise FormatError(f"{where}: PCR {item['pcr']} listed twice")
            values[item["pcr"]] = parsed
        nv = doc.get("nvIndex")
        return cls(bank, values, nv if type(nv) is int else None)

    def accepts(self, pcr_values) -> tuple[bool, list[str]]:
        """Whether a boot with these PCR values (``pcr_values.get(bank, pcr)``, None = unknown)
        satisfies the policy; the reasons when not (one per PCR that fails)."""
        problems = []
        for pcr, allowed in sorted(self.values.items()):
            v = pcr_values.get(self.bank, pcr)
            if v is None:
                problems.append(f"PCR {pcr}: no {self.bank.bank_name} prediction")
            elif v not in allowed:
                problems.append(f"PCR {pcr}: {v.hex()[:16]}… is none of the {len(allowed)} accepted value(s)")
        return not problems, problems
