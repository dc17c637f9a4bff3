"""Corpus log names (PROVENANCE.tsv rows with role ``log``) for parametrizing predict tests."""

from __future__ import annotations

from pathlib import Path

CORPUS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "eventlogs-corpus").resolve()


def corpus_logs() -> list[str]:
    path = CORPUS / "PROVENANCE.tsv"
    if not path.is_file():
        return ["<corpus missing>"]  # one id, so the corpus fixture can skip/fail it
    names = []
    for line in path.read_text().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) > 7 and cols[7] == "log":
            names.append(cols[0])
    return sorted(names)
