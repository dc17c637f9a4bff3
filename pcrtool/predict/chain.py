"""The mainstream boot chain: Microsoft-signed shim → distribution-signed GRUB → signed kernel.

Assembles the per-family predictions of :mod:`pcrtool.predict.shim` and :mod:`pcrtool.predict.grub`
into one measurement list (PCR 4, 7, 8, 9, 14) that replays from reset or substitutes into a
reference log (:func:`pcrtool.predict.substitute.substitute_log`):

- PCR 4: shim, GRUB, then the kernel **twice** with Secure Boot on (shim_lock Verify + shim's
  LoadImage, same Authenticode digest) and **not at all** with Secure Boot off (GRUB's shim_lock
  verifier is inactive and Debian's GRUB uses its legacy loader);
- PCR 7: ``SbatLevel``, then the vendor certificate authority (``MokListRT``) when Secure Boot
  is on (shim verified GRUB with it); the firmware's db authority for shim comes from
  ``[secureboot] authorities`` or the reference log;
- PCR 14: MokList, MokListX, MokListTrusted;
- PCR 8/9: GRUB's commands and files, interpreted from the configs, or the reference log's with a
  new kernel path, command line and initrd put in (:func:`grub_from_log`);
- never the Linux EFI stub's PCR 9 load-options/initrd events: in this chain GRUB hands the kernel
  its command line and initrd through boot_params, and the stub measures neither.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.predict.grub import (
    PCR_GRUB_FILES,
    PCR_GRUB_STRINGS,
    BootTrace,
    file_measurement,
    string_measurement,
    substitute_strings,
)
from pcrtool.predict.pe import Image, application_measurement
from pcrtool.predict.shim import (
    ShimImage,
    default_sbat_level,
    mok_measurements,
    read_shim_image,
    sbat_level_measurement,
    vendor_authority_measurement,
)
from pcrtool.tcg.constants import EventType


@dataclass(slots=True)
class ChainParts:
    """The artefacts of one shim+GRUB release (any may be None: then that family is not predicted)."""

    shim: Image | None = None               # PE bytes or Authenticode digests (PCR 4)
    shim_info: ShimImage | None = None      # default: read from ``shim`` (bytes)
    grub: Image | None = None
    kernel: Image | None = None             # PE bytes or Authenticode digests (PCR 4)
    trace: BootTrace | None = None          # GRUB's PCR 8/9 events
    secure_boot: bool | None = True
    mok_variables: dict[str, bytes | None] = field(default_factory=dict)
    sbat_level: str | None = None           # None: shim's default ("previous", or the current if newer)
    vendor_authority: str = "MokListRT"     # "MokListRT", "Shim" or "none"


def chain_measurements(parts: ChainParts, banks: Sequence[HashAlg] = DEFAULT_BANKS) -> list[Measurement]:
    """PCR 4 applications, PCR 7 shim authorities, PCR 14, PCR 8/9 of the chain, in boot order."""
    out: list[Measurement] = []
    shim = parts.shim_info
    if shim is None and isinstance(parts.shim, (bytes, bytearray)):
        shim = read_shim_image(bytes(parts.shim))
    if parts.shim is not None and shim is None:
        raise UsageError("shim given as digests: its vendor certificate and SBAT level are needed too",
                         hint="give the shim binary")
    if parts.shim is not None:
        out.append(application_measurement(parts.shim, banks, name="shimx64.efi"))
        out += mok_measurements(shim, parts.mok_variables, banks)[:2]
        out.append(sbat_level_measurement(parts.sbat_level or default_sbat_level(
            shim, (parts.mok_variables.get("SbatLevel") or b"").decode("ascii", "replace") or None,
            secure_boot=parts.secure_boot), banks))
        out += mok_measurements(shim, parts.mok_variables, banks)[2:]
        if parts.secure_boot is not False and parts.vendor_authority != "none":
            if shim.vendor_authorized_is_db:
                raise UsageError("this shim carries a vendor db, not one certificate: which entry verified GRUB "
                                 "is not known", hint="keep PCR 7's shim authority from a reference log")
            out.append(vendor_authority_measurement(shim.vendor_authorized, banks, name=parts.vendor_authority))
    if parts.grub is not None:
        out.append(application_measurement(parts.grub, banks, name="grubx64.efi"))
    trace_events = list(parts.trace.events) if parts.trace is not None else []
    # the kernel's PCR 4 events come right after GRUB read the kernel file (PCR 9)
    kernel_events = []
    if parts.kernel is not None and parts.secure_boot is not False:
        k = application_measurement(parts.kernel, banks, name="vmlinuz")
        kernel_events = [k, k]
    if kernel_events and parts.trace is not None and parts.trace.kernel is not None:
        at = next((i + 1 for i, m in enumerate(trace_events)
                   if m.pcr == PCR_GRUB_FILES and m.description == parts.trace.kernel), len(trace_events))
        trace_events[at:at] = kernel_events
    else:
        out += kernel_events
    return out + trace_events


def grub_from_log(reference_log, banks: Sequence[HashAlg], *, kernel_path: str | None = None,
                  kernel: bytes | Mapping[HashAlg, bytes] | None = None, args: str | None = None,
                  initrd_path: str | None = None, initrd: bytes | Mapping[HashAlg, bytes] | None = None,
                  files: Mapping[str, bytes | Mapping[HashAlg, bytes]] | None = None) -> list[Measurement]:
    """The reference log's GRUB events (PCR 8 and 9 EV_IPL) with a new kernel path/command line
    /initrd put in (:func:`pcrtool.predict.grub.substitute_strings`) and new file contents
    (``kernel``, ``initrd``, ``files``: logged path → content). Unchanged events keep the log's
    digests, so constructs pcrtool cannot interpret (search, load_env, …) stay as logged.
    """
    from pcrtool.eventlog import parse_event_log

    log = parse_event_log(reference_log) if isinstance(reference_log, (bytes, bytearray)) else reference_log
    events = [e for e in log.events if e.is_extended and e.event_type == EventType.EV_IPL
              and e.pcr in (PCR_GRUB_STRINGS, PCR_GRUB_FILES)]
    texts = [(e.pcr, e.data.split(b"\0", 1)[0].decode("utf-8", "replace")) for e in events]
    old_kernel = next((t.split(" ")[2] for p, t in texts if p == PCR_GRUB_STRINGS
                       and t.startswith("grub_cmd: linux ") and len(t.split(" ")) > 2), None)
    old_initrd = next((t[len("grub_cmd: initrd "):] for p, t in texts if p == PCR_GRUB_STRINGS
                       and t.startswith("grub_cmd: initrd ")), None)
    new_texts = substitute_strings(texts, kernel=kernel_path, args=args, initrd=initrd_path)
    contents = dict(files or {})
    if kernel is not None:
        contents[kernel_path or old_kernel] = kernel
    if initrd is not None:
        contents[initrd_path or old_initrd] = initrd
    renamed = {old_kernel: kernel_path or old_kernel, old_initrd: initrd_path or old_initrd}
    logged_files = {t for p, t in texts if p == PCR_GRUB_FILES}
    for what, given, path in (("kernel", kernel, old_kernel), ("initrd", initrd, old_initrd)):
        if given is not None and path not in logged_files:
            raise UsageError(f"the reference log has no PCR 9 event for GRUB's {what} file {path!r}",
                             hint="is the log from this machine's GRUB boot?")
    for path in files or {}:
        if path not in logged_files and path not in (kernel_path, initrd_path):
            raise UsageError(f"the reference log has no PCR 9 event for {path!r}",
                             hint="name the file as the log does, e.g. (hd0,gpt1)/EFI/debian/grub.cfg")
    out: list[Measurement] = []
    for e, (pcr, old), (_, new) in zip(events, texts, new_texts):
        if pcr == PCR_GRUB_STRINGS:
            if new != old:
                prefix, _, text = new.partition(": ")
                out.append(string_measurement(text, banks, prefix=prefix))
                continue
        else:
            path = renamed.get(old, old)
            if path in contents:
                out.append(file_measurement(path, contents[path], banks))
                continue
            if path != old:
                raise UsageError(f"the kernel/initrd path changed to {path} but its content was not given")
        missing = [a for a in banks if a not in e.digests]
        if missing:
            raise UsageError(f"reference log event {e.index} has no {missing[0].bank_name} digest")
        out.append(Measurement(pcr, {a: e.digests[a] for a in banks}, EventType.EV_IPL, old, e.data))
    return out
