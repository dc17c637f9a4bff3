"""Secure Boot report from PCR 7 of an event log (TCG PFP 1.05 §3.3.4.8, §10.4.4):
SecureBoot on/off, the PK/KEK/db/dbx contents measured by firmware, and which authority
(EV_EFI_VARIABLE_AUTHORITY) verified each loaded image.

Firmware logs an authority only the first time it is used, right before the image it verified;
later images verified by the same certificate have no authority event of their own. shim also
logs its policy state as EV_EFI_VARIABLE_AUTHORITY (``SbatLevel``; ``MokListTrusted`` on some
versions): those verify no image, are listed as ``shim_policy`` and never attributed to the next
image. With Secure Boot off no image is verified: no authority is attributed at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pcrtool.eventlog.decode import decode_event
from pcrtool.eventlog.decode.image import ImageLoad
from pcrtool.eventlog.decode.variables import SignatureEntry, SignatureList, Variable
from pcrtool.eventlog.model import EventLog
from pcrtool.tcg.constants import EventType

DATABASES = ("PK", "KEK", "db", "dbx", "dbt", "dbr")
IMAGE_TYPES = (EventType.EV_EFI_BOOT_SERVICES_APPLICATION, EventType.EV_EFI_BOOT_SERVICES_DRIVER,
               EventType.EV_EFI_RUNTIME_SERVICES_DRIVER)
#: shim's PCR 7 authority events that record policy, not the certificate that verified an image.
SHIM_POLICY_VARIABLES = ("SbatLevel", "MokListTrusted", "MokSBState", "MokPolicy")


@dataclass(slots=True)
class Authority:
    event: int
    variable: str
    description: str
    certificate: dict | None = None

    def to_json(self) -> dict:
        return {"event": self.event, "variable": self.variable, "description": self.description,
                "x509": self.certificate}


@dataclass(slots=True)
class LoadedImage:
    event: int
    pcr: int
    type: str
    path: str
    authority: Authority | None

    def to_json(self) -> dict:
        return {"event": self.event, "pcr": self.pcr, "type": self.type, "path": self.path,
                "authority": self.authority.to_json() if self.authority else None}


@dataclass(slots=True)
class SecureBootReport:
    enabled: bool | None = None
    modes: dict[str, bool] = field(default_factory=dict)      # DeployedMode, AuditMode …
    databases: dict[str, list[dict]] = field(default_factory=dict)
    authorities: list[Authority] = field(default_factory=list)
    images: list[LoadedImage] = field(default_factory=list)
    shim_policy: list[Authority] = field(default_factory=list)   # SbatLevel … (verify nothing)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"secureBoot": self.enabled, "modes": self.modes, "databases": self.databases,
                "authorities": [a.to_json() for a in self.authorities],
                "images": [i.to_json() for i in self.images],
                "shimPolicy": [a.to_json() for a in self.shim_policy], "warnings": self.warnings}


def _entries(value) -> list[dict]:
    if isinstance(value, tuple):
        out = []
        for sl in value:
            if isinstance(sl, SignatureList):
                out.extend(e.to_json() for e in sl.entries)
        return out
    if isinstance(value, (bytes, bytearray)) and value:
        return [{"undecodable": bytes(value).hex()}]
    return []


def secure_boot_report(log: EventLog) -> SecureBootReport:
    report = SecureBootReport()
    pending: Authority | None = None
    for ev in log.events:
        t = ev.event_type
        if ev.pcr == 7 and t == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG:
            var = decode_event(ev, log)
            if not isinstance(var, Variable):
                report.warnings.append(f"event {ev.index}: undecodable PCR 7 variable")
                continue
            if var.name == "SecureBoot":
                report.enabled = bool(var.data and var.data[0] == 1)
            elif var.name in DATABASES:
                report.databases[var.name] = _entries(var.value)
            elif isinstance(var.value, bool):
                report.modes[var.name] = var.value
        elif ev.pcr == 7 and t == EventType.EV_EFI_VARIABLE_AUTHORITY:
            var = decode_event(ev, log)
            if not isinstance(var, Variable):
                report.warnings.append(f"event {ev.index}: undecodable authority")
                continue
            cert = None
            if isinstance(var.value, SignatureEntry) and var.value.certificate is not None:
                cert = var.value.certificate.to_json()
            auth = Authority(ev.index, var.name, var.describe(), cert)
            if var.name in SHIM_POLICY_VARIABLES:
                report.shim_policy.append(auth)
                continue
            report.authorities.append(auth)
            pending = auth
        elif t in IMAGE_TYPES:
            image = decode_event(ev, log)
            path = image.describe() if isinstance(image, ImageLoad) else "(undecodable)"
            report.images.append(LoadedImage(ev.index, ev.pcr, t.name, path,
                                             pending if report.enabled is not False else None))
            pending = None
    if report.enabled is None:
        report.warnings.append("the log has no SecureBoot variable measurement")
    return report
