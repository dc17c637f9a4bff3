"""Releases as the policy side consumes them: name, version, svn, boot measurements, predicted PCRs.

JSON shape (``pcrtool policy`` and ``pcrtool validate`` read it; ``predict`` output that carries
``releases`` with the same keys works too)::

    {"public_key": "<PEM, optional>",
     "pcrs": [11],                       # PCRs the policy binds (default: all the releases set)
     "releases": [
       {"name": "os", "version": "1.2", "svn": 3,
        "measurements": [{"pcr": 11, "sha256": "<hex>", "sha1": "<hex>"}, …],   # events, in order
        "predicted": {"sha256": {"11": "<hex>"}}}                               # optional
     ]}

``predicted`` defaults to the replay of ``measurements`` from the PCRs' reset values (the one
replay, ``pcrtool.predict.events``: PCR 17–22 start at 0xFF like the event-log replay); when both
are given they must agree. A ``pcrtool-predictions/1`` file is read by ``load_predictions`` only,
once: the releases here are views of its ``Release`` objects. ``measurements`` are what validation extends into swtpm to emulate the boot.
Pure: parses text, computes hashes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.predict.events import Measurement, replay_measurements

__all__ = ["Measurement", "PolicyRelease", "parse_releases", "replay_measurements", "selected_pcrs"]

SVN_MAX = 2 ** 31 - 1


@dataclass(frozen=True, slots=True)
class PolicyRelease:
    name: str
    version: str
    svn: int
    measurements: tuple[Measurement, ...]
    predicted: PcrValues
    allowed: bool = True
    other_phases: tuple[PcrValues, ...] = ()  # further phase paths that approvals must cover

    @property
    def all_predicted(self) -> tuple[PcrValues, ...]:
        return (self.predicted,) + self.other_phases

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}" if self.version else self.name

    def selected(self, bank: HashAlg, pcrs: Sequence[int]) -> PcrValues:
        """The predicted values of ``pcrs`` in ``bank`` (missing PCRs stay all-zero, as booted)."""
        out = PcrValues()
        for p in pcrs:
            v = self.predicted.get(bank, p)
            out.set(bank, p, v if v is not None else bank.zero)
        return out


def _measurement(item: object, where: str) -> Measurement:
    if not isinstance(item, dict) or "pcr" not in item:
        raise FormatError(f"{where}: a measurement is {{\"pcr\": N, \"sha256\": hex}}")
    try:
        pcr = int(item["pcr"])
    except (TypeError, ValueError):
        raise FormatError(f"{where}: bad pcr {item['pcr']!r}") from None
    if not 0 <= pcr < 24:
        raise FormatError(f"{where}: PCR {pcr} out of range 0…23")
    digests = {}
    for key, value in item.items():
        if key in ("pcr", "description", "type"):
            continue
        try:
            alg = HashAlg.from_name(key)
            data = bytes.fromhex(value)
        except (UsageError, ValueError, TypeError):
            raise FormatError(f"{where}: bad digest {key}={value!r}") from None
        if len(data) != alg.digest_size:
            raise FormatError(f"{where}: {key} digest has {len(data)} bytes, expected {alg.digest_size}")
        digests[alg] = data
    if not digests:
        raise FormatError(f"{where}: measurement without digests")
    return Measurement(pcr, digests, None, str(item.get("description", "")))


def parse_releases(text: str, *, source: str = "releases") -> tuple[list[PolicyRelease], dict]:
    """Parse a releases/allowlist JSON; returns (releases, the top-level object for extras)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{source}: bad JSON at line {e.lineno}: {e.msg}") from None
    if isinstance(data, list):
        data = {"releases": data}
    if isinstance(data, dict) and data.get("format") == "pcrtool-predictions/1":
        return _from_predictions(text, source), data
    if not isinstance(data, dict) or not isinstance(data.get("releases"), list) or not data["releases"]:
        raise FormatError(f"{source}: expected {{\"releases\": [ … ]}} with at least one release",
                          hint="see `pcrtool policy --help` for the releases file format")
    out: list[PolicyRelease] = []
    seen: set[str] = set()
    for i, item in enumerate(data["releases"]):
        where = f"{source}: releases[{i}]"
        if not isinstance(item, dict):
            raise FormatError(f"{where}: must be an object")
        name = str(item.get("name") or f"release{i}")
        version = str(item.get("version") or "")
        svn = item.get("svn", 0)
        if not isinstance(svn, int) or isinstance(svn, bool):
            raise FormatError(f"{where}: svn must be an integer, not {svn!r}")
        if not 0 <= svn <= SVN_MAX:
            raise FormatError(f"{where}: svn {svn} out of range 0…{SVN_MAX}")
        raw_meas = item.get("measurements") or []
        if not isinstance(raw_meas, list):
            raise FormatError(f"{where}: measurements must be a list")
        meas = tuple(_measurement(m, f"{where}.measurements[{j}]") for j, m in enumerate(raw_meas))
        replayed = replay_measurements(meas)
        if item.get("predicted") and not isinstance(item["predicted"], dict):
            raise FormatError(f"{where}: predicted must be an object {{bank: {{pcr: hex}}}}")
        if item.get("predicted"):
            predicted = PcrValues.from_json(item["predicted"], source=f"{where}.predicted")
            if meas:
                for v in predicted:
                    got = replayed.get(v.alg, v.pcr)
                    if got is not None and got != v.value:
                        raise FormatError(f"{where}: predicted PCR {v.pcr} {v.alg.bank_name} does not "
                                          "equal the replay of its measurements")
        elif meas:
            predicted = replayed
        else:
            raise FormatError(f"{where}: needs measurements or predicted PCR values")
        rel = PolicyRelease(name, version, svn, meas, predicted, bool(item.get("allowed", True)))
        if rel.label in seen:
            raise FormatError(f"{where}: duplicate release {rel.label!r}")
        seen.add(rel.label)
        out.append(rel)
    return out, data


def selected_pcrs(releases: Sequence[PolicyRelease], bank: HashAlg, explicit: Sequence[int] | None) -> list[int]:
    if explicit:
        return sorted(set(explicit))
    pcrs = sorted({p for r in releases for p in r.predicted.values.get(bank, {})})
    if not pcrs:
        raise UsageError(f"the releases carry no {bank.bank_name} PCR values")
    return pcrs


def _from_predictions(text: str, source: str) -> list[PolicyRelease]:
    """Releases from ``pcrtool predict release`` output (pcrtool-predictions/1), parsed once by
    ``load_predictions``; a phase's ``measurements`` let validation emulate its boot."""
    from pcrtool.predict.predictions import load_predictions

    out = []
    for rel in load_predictions(text, source=source):
        phases = list(rel.predictions.values())
        meas = rel.measurements.get(rel.phases[0], ())
        out.append(PolicyRelease(rel.name, rel.version, rel.svn, tuple(meas), phases[0], rel.allowed,
                                 tuple(phases[1:])))
    return out
