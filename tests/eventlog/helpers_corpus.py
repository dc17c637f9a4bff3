"""Readers for the shared corpus' ground-truth files (expected.tsv, tpm2_eventlog 5.4 results)."""

from __future__ import annotations

from tests.support import corpus_log_names, corpus_root, need_module  # noqa: F401

import json
from dataclasses import dataclass
from pathlib import Path

from pcrtool.model import HashAlg, PcrValues


def log_names(root: Path | None = None) -> list[str]:
    """Every file PROVENANCE.tsv marks as a log (role ``log``)."""
    return corpus_log_names(root)


@dataclass(frozen=True)
class Expected:
    log: str
    pcr_file: str
    note: str

    @property
    def must_mismatch_pcr0(self) -> bool:
        return "must not match" in self.note.lower()


def expected_rows(root: Path | None = None) -> list[Expected]:
    root = root or corpus_root()
    path = root / "expected.tsv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines()[1:]:
        cols = (line.split("\t") + ["", ""])[:3]
        if cols[0]:
            rows.append(Expected(*cols))
    return rows


def read_expected_pcrs(path: Path) -> PcrValues:
    """Ground-truth PCRs: *.expected-pcrs.json, *.pcrs.json (two shapes) or tpm2-tools YAML."""
    text = path.read_text()
    if path.suffix == ".yaml":
        section = text[text.index("\npcrs:"):]
        if section.strip() == "pcrs:":
            return PcrValues()   # a log that extends nothing
        return PcrValues.parse(section, source=str(path))
    data = json.loads(text)
    if isinstance(data.get("pcrs"), list):   # go-attestation dumps: [{index, alg, digest}]
        out = PcrValues()
        for entry in data["pcrs"]:
            out.set(HashAlg.from_name(entry["alg"]), int(entry["index"]), bytes.fromhex(entry["digest"]))
        return out
    return PcrValues.parse(text, source=str(path))


@dataclass(frozen=True)
class ToolResult:
    """One row of tpm2_eventlog-5.4/results.tsv."""

    log: str
    ok: bool
    rc: int
    events: int
    banks: tuple[str, ...]
    pcrs: dict[tuple[str, int], str]


def tool_results(root: Path | None = None) -> dict[str, ToolResult]:
    root = root or corpus_root()
    path = root / "tpm2_eventlog-5.4" / "results.tsv"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith(("#", '"#')):
            continue
        cols = line.split("\t")
        pcrs: dict[tuple[str, int], str] = {}
        if cols[-1] and ":" in cols[-1] and "=" in cols[-1]:
            for part in cols[-1].split(";"):
                bank, values = part.split(":", 1)
                for kv in values.split(","):
                    k, v = kv.split("=")
                    pcrs[(bank, int(k))] = v
        out[cols[0]] = ToolResult(cols[0], cols[1] == "yes", int(cols[2]), int(cols[4]),
                                  tuple(b for b in cols[5].split(",") if b), pcrs)
    return out

