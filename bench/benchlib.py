"""Shared helpers for the benchmarks: the best of N timed rounds, and the peak RSS of a child
through GNU time."""

from __future__ import annotations

import os
import time

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def best_of(rounds: int, fn) -> float:
    """The shortest wall time (seconds) of ``rounds`` calls of ``fn()``."""
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def with_peak_rss(argv: list[str]) -> list[str]:
    """Run through GNU time for the peak RSS: a child's ru_maxrss seen from here would include
    this benchmark's own memory (Linux keeps the pre-exec high-water mark across execve)."""
    return [GNU_TIME, "-f", "PEAK-RSS-KIB %M", *argv] if GNU_TIME else argv


def peak_rss(stderr: str) -> tuple[str, int | None]:
    """(stderr without GNU time's line, peak RSS in KiB or None)."""
    lines = stderr.splitlines()
    if GNU_TIME and lines and lines[-1].startswith("PEAK-RSS-KIB "):
        return "\n".join(lines[:-1]), int(lines[-1].split()[1])
    return stderr, None


def mib(kib: int | None) -> str:
    return "n/a (install GNU time)" if kib is None else f"{kib / 1024:.1f} MiB"
