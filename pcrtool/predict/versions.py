"""UAPI version ordering, as ``systemd-analyze compare-versions`` (systemd ``strverscmp_improved``).

Rules (UAPI.10 "Version Format Specification"): only ASCII letters, digits and ``~ - ^ .`` count,
every other character is a separator and skipped. Then, segment by segment:
``~`` sorts before everything (even the end: ``1~rc1 < 1``); a string that ends first is older;
``-`` sorts before anything but the end; then ``^``; then ``.``; numeric segments compare by value
(leading zeros ignored) and are newer than alphabetic ones; alphabetic segments compare as ASCII,
the longer being newer when one is a prefix of the other.
"""

from __future__ import annotations

import functools

_SPECIAL = "~-^."


def _valid(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c in _SPECIAL)


def _cmp(x, y) -> int:
    return (x > y) - (x < y)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, equal to or newer than ``b``."""
    if not a or not b:
        return _cmp(a or "", b or "")
    i = j = 0
    na, nb = len(a), len(b)

    def at(s: str, k: int) -> str:
        return s[k] if k < len(s) else ""

    while True:
        while i < na and not _valid(a[i]):
            i += 1
        while j < nb and not _valid(b[j]):
            j += 1
        ca, cb = at(a, i), at(b, j)
        # '~' sorts before everything, even the end; then the end; then '-', '^', '.' in turn
        for mark in "~\0-^.":
            if mark == "\0":
                if ca == "" or cb == "":
                    return _cmp(ca, cb)
                continue
            if ca == mark or cb == mark:
                r = _cmp(ca != mark, cb != mark)
                if r:
                    return r
                i += 1
                j += 1
                ca, cb = at(a, i), at(b, j)
        if _isdigit(ca) or _isdigit(cb):
            ea, eb = i, j
            while ea < na and _isdigit(a[ea]):
                ea += 1
            while eb < nb and _isdigit(b[eb]):
                eb += 1
            r = _cmp(ea != i, eb != j)
            if r:
                return r
            while i < ea and a[i] == "0":
                i += 1
            while j < eb and b[j] == "0":
                j += 1
            r = _cmp(ea - i, eb - j) or _cmp(a[i:ea], b[j:eb])
            if r:
                return r
        else:
            ea, eb = i, j
            while ea < na and _isalpha(a[ea]):
                ea += 1
            while eb < nb and _isalpha(b[eb]):
                eb += 1
            la, lb = ea - i, eb - j
            n = min(la, lb)
            r = _cmp(a[i:i + n], b[j:j + n]) or _cmp(la, lb)
            if r:
                return r
        i, j = ea, eb


def _isdigit(c: str) -> bool:
    return c != "" and "0" <= c <= "9"


def _isalpha(c: str) -> bool:
    return c != "" and ("a" <= c <= "z" or "A" <= c <= "Z")


version_key = functools.cmp_to_key(compare_versions)
