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
    linux_stub = true                   # optional: predict the kernel EFI stub's PCR 9 events (.cmdline,
                                        # .initrd); with a reference log they follow the log by default
    # … or section files instead of `path`:  [uki.sections] linux = "vmlinuz", initrd = "initrd.img", …
    #   (a section may be its precomputed digests instead: initrd = {sha256 = "<hex>", …}, every bank)

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
    stub = "console=ttyS0 rw"           # measured by the stub into PCR 12 (UTF-16, NUL per `nul`): the
                                        # boot entry's LoadOptions, which systemd-stub uses instead of
                                        # .cmdline when Secure Boot is off (or the UKI has no .cmdline) —
                                        # then the kernel's PCR 9 load options follow them by default
    kernel = "console=ttyS0 rw"         # LoadOptions the Linux EFI stub measures into PCR 9; REPLACES
                                        # the [uki]-derived load-options event (never adds a second)
    initrd = "initrd.img"               # initrd the Linux EFI stub measures into PCR 9 (replaces .initrd's)
    nul = true

    [values]                            # precomputed values (override the sources), PCR → bank → hex;
    "0" = {sha256 = "<hex>"}            # PCR 11 entries apply to every phase
    [values.phase."enter-initrd"]       # … or per phase
    "11" = {sha256 = "<hex>"}

    reference_log = "tpm-eventlog.bin"  # optional: the target's firmware log; predicted events replace
                                        # theirs (substitution), unchanged events are kept

    [shim]                              # shim → GRUB → kernel (pcrtool/predict/chain.py): PCR 4, 7, 14
    path = "shimx64.efi"                # PCR 4 application; PCR 14 MokList/MokListX/MokListTrusted from
                                        # its .vendor_cert; PCR 7 SbatLevel (+ MokListRT with Secure Boot on)
    sbat_level = "previous"             # optional: previous (default) | latest | the level text itself
    MokList = "MokList-efivarfs.bin"    # optional efivarfs dumps (or raw data) of the machine's MOK
    MokListX = "MokListX.bin"           # variables (MokList, MokListX, MokListTrusted, SbatLevel);
                                        # absent = not set (shim's defaults)
    vendor_authority = "MokListRT"      # optional: MokListRT (shim ≥ 15.3), Shim (older) or none

    [grub]                              # PCR 4 (GRUB, kernel twice with Secure Boot on), PCR 8, PCR 9
    path = "grubx64.efi"                # signed GRUB: PCR 4, and its embedded memdisk config + prefix
    device = "hd0"                      # GRUB's name of the ESP disk as it appears in the log
    config = "grub.cfg"                 # the grub.cfg its embedded config sources ($prefix/grub.cfg):
                                        # interpreted (constructs: pcrtool.predict.grub.PREDICTED_CONSTRUCTS)
    files = {"/boot/vmlinuz" = "vmlinuz-6.1.0-57-amd64", "/boot/initrd.img" = "initrd.img"}
                                        # what the config names → local files; the `linux` file is the kernel
    # … or, without `config`, substitution into reference_log's GRUB events (search, load_env … kept):
    # kernel = "vmlinuz-new", kernel_path = "/vmlinuz-new", initrd = "initrd.img-new",
    # initrd_path = "/initrd.img-new", cmdline = "root=UUID=… ro quiet"   (each optional)

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

from dataclasses import dataclass, field
from typing import Any, Mapping

from pcrtool.model import HashAlg
from pcrtool.predict.fields import (  # noqa: F401 - re-exported
    _NAME, _VERSION, ManifestError, _banks, _int, _pcr_list, _req, _str, _where, parse_document,
)
from pcrtool.predict.versions import compare_versions

DEFAULT_RELEASE_PHASES = ("enter-initrd",)


_TOP_KEYS = {"name", "version", "svn", "banks", "pcrs", "phases", "uki", "boot", "secureboot",
             "cmdline", "values", "reference_log", "description", "shim", "grub"}


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
    for section in ("uki", "boot", "secureboot", "cmdline", "values", "shim", "grub"):
        if section in doc and not isinstance(doc[section], dict):
            raise ManifestError(f"{_where(source, section)} must be a table")
    if "reference_log" in doc:
        _str(doc["reference_log"], "reference_log", source)
    return ReleaseManifest(name, version, svn, banks, pcrs, phases, doc, source)


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


# --- release-set checks -------------------------------------------------------------------------

def check_release_set(releases: list[tuple[str, str, int]], allowlist: Allowlist | None, *,
                      source: str = "allowlist") -> list[str]:
    """Loud mistakes in a release set: one message per finding, naming the entry.

    ``releases`` are (name, version, svn). Findings: an allowlist entry whose name and version
    match a release but whose svn differs from the manifest's (the release is silently excluded);
    an entry matching no release; svns that fall as the UAPI version rises; two versions of one
    name sharing an svn (advance-floor cannot revoke one without the other); no release allowed.
    """
    import functools

    out: list[str] = []
    if allowlist is not None:
        for i, e in enumerate(allowlist.entries):
            what = f"{source} allow[{i}] (name={e.name!r}, version={e.version!r}" + \
                (f", svn={e.svn})" if e.svn is not None else ")")
            if any(e.matches(*r) for r in releases):
                continue
            same = [r for r in releases if e.name == r[0] and (e.version == "*" or compare_versions(e.version, r[1]) == 0)]
            if same:
                got = ", ".join(f"{n} {v} has svn={s}" for n, v, s in same)
                out.append(f"{what} does not allow the release it names: its manifest says otherwise "
                           f"({got}), so that release is NOT allowed")
            else:
                out.append(f"{what} matches no release given")
    by_name: dict[str, list[tuple[str, str, int]]] = {}
    for r in releases:
        by_name.setdefault(r[0], []).append(r)
    for name, rs in by_name.items():
        rs = sorted(rs, key=functools.cmp_to_key(lambda a, b: compare_versions(a[1], b[1])))
        for older, newer in zip(rs, rs[1:]):
            if newer[2] < older[2]:
                out.append(f"svn does not rise with the version: {name} {older[1]} has svn={older[2]} but the "
                           f"later {name} {newer[1]} has svn={newer[2]}")
        seen: dict[int, str] = {}
        for _, version, svn in rs:
            if svn in seen and compare_versions(seen[svn], version) != 0:
                out.append(f"{name} {seen[svn]} and {name} {version} share svn={svn}: advance-floor cannot "
                           "revoke one without the other")
            seen.setdefault(svn, version)
    if allowlist is not None and releases and not any(allowlist.allows(*r) for r in releases):
        out.append(f"{source} allows none of the {len(releases)} release(s): `policy approve` will have "
                   "nothing to approve")
    return out


# Re-exported: the contract names live here (``from pcrtool.predict.manifest import …``).
from pcrtool.predict.predictions import (  # noqa: E402,F401
    FORMAT, Release, dump_predictions, load_predictions, sort_releases,
)
from pcrtool.predict.from_manifest import Reader, predict_release  # noqa: E402,F401
