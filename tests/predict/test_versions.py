"""UAPI version ordering against ``systemd-analyze compare-versions`` (the oracle)."""

from __future__ import annotations

import random
import subprocess

import pytest

from helpers_uki import need_tool
from pcrtool.predict.versions import compare_versions

# Pairs from the UAPI.10 version-format specification's examples and systemd's
# test-string-util.c test_strverscmp_improved (newer on the right).
ORDERED = [
    ("122.1", "123"), ("123~rc1", "123"), ("123~rc1", "123~rc2"), ("123", "123-1"),
    ("123-1", "123.1"), ("123.a", "123.1"), ("123.1", "123a"), ("1.2", "1.10"),
    ("123~", "123"), ("123", "123^1"), ("123^1", "123.1"), ("abc", "abcd"), ("a", "b"),
    ("1.0~rc1", "1.0"), ("123.45-67.88", "123.45-67.89"), ("00123", "124"), ("Z", "a"),
    ("249.7-1", "250~rc1"), ("250~rc1", "250"), ("250", "250.1"), ("fc33", "fc34"),
]
EQUAL = [("123", "123"), ("00123", "123"), ("1.2", "1.2"), ("1_2", "1+2"), ("v1", "v1")]


@pytest.mark.parametrize("older,newer", ORDERED)
def test_known_order(older, newer):
    assert compare_versions(older, newer) == -1
    assert compare_versions(newer, older) == 1


@pytest.mark.parametrize("a,b", EQUAL)
def test_known_equal(a, b):
    assert compare_versions(a, b) == 0


def _random_version(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 5)):
        kind = rng.random()
        if kind < 0.45:
            parts.append(str(rng.choice([0, 1, 2, 9, 10, 11, 99, 100, 255])).zfill(rng.choice([1, 1, 1, 3])))
        elif kind < 0.65:
            parts.append(rng.choice(["a", "b", "rc", "RC", "beta", "alpha", "fc", "z"]))
        else:
            parts.append(rng.choice(["~", "-", "^", ".", "_", "+", "..", "~~", ""]))
    return "".join(parts)


def _oracle(a: str, b: str) -> int:
    rc = subprocess.run(["systemd-analyze", "compare-versions", a, b],
                        capture_output=True).returncode
    return {0: 0, 11: 1, 12: -1}[rc]


def test_differential_against_systemd_analyze():
    need_tool("systemd-analyze")
    rng = random.Random(1234)
    pairs = ORDERED + EQUAL
    while len(pairs) < 320:
        a = _random_version(rng)
        b = _random_version(rng) if rng.random() < 0.6 else a[:-1] + _random_version(rng)[:2]
        if a and b and not a.startswith("-") and not b.startswith("-"):
            pairs.append((a, b))
    bad = [(a, b, compare_versions(a, b), _oracle(a, b)) for a, b in pairs
           if compare_versions(a, b) != _oracle(a, b)]
    assert not bad, bad[:10]


from hypothesis import given, settings, strategies as st  # noqa: E402

_chars = st.sampled_from(list("0123456789abcXYZ~-^._+"))


@settings(deadline=None, max_examples=300)
@given(st.text(_chars, max_size=8), st.text(_chars, max_size=8), st.text(_chars, max_size=8))
def test_order_properties(a, b, c):
    assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions(a, a) == 0
    if compare_versions(a, b) <= 0 and compare_versions(b, c) <= 0:
        assert compare_versions(a, c) <= 0
