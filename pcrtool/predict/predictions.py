"""The predictions file (``pcrtool-predictions/1``): per release and phase, the predicted PCRs.

Format: see :mod:`pcrtool.predict.manifest`. ``pcrtool predict release`` writes it; the policy and
validation commands read it with :func:`load_predictions`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from pcrtool.errors import PcrtoolError
from pcrtool.model import PCR_COUNT, HashAlg, PcrValues
from pcrtool.predict.events import Measurement
from pcrtool.predict.fields import (
    _NAME, _VERSION, ManifestError, _banks, _hex, _int, _pcr_list, _req, _str,
)
from pcrtool.predict.versions import version_key

FORMAT = "pcrtool-predictions/1"


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
    if not isinstance(type_name, str):
        raise ManifestError(f"{where}: 'type' must be an event type name like \"EV_IPL\"")
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


def _list(value: Any, key: str, where: str) -> list:
    if not isinstance(value, list):
        raise ManifestError(f"{where}: {key!r} must be a list")
    return value


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
    for i, r in enumerate(_list(_req(doc, "releases", source), "releases", source)):
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
        for j, p in enumerate(_list(_req(r, "phases", where), "phases", where)):
            if not isinstance(p, dict) or not isinstance(p.get("phase"), str):
                raise ManifestError(f"{where} phases[{j}] needs 'phase' and 'values'")
            try:
                values = PcrValues.from_json(_req(p, "values", where), source=f"{where} phases[{j}]")
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
                           tuple(str(n) for n in _list(r.get("notes", []), "notes", where)), measurements))
    return out
