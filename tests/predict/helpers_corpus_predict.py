"""Corpus log names (PROVENANCE.tsv rows with role ``log``) for parametrizing predict tests."""

from __future__ import annotations

from tests.support import corpus_log_names



def corpus_logs() -> list[str]:
    # One placeholder id without the corpus, so the corpus fixture can skip (or fail, in CI) it.
    return corpus_log_names() or ["<corpus missing>"]
