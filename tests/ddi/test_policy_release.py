"""Image-policy grammar and derived rules against systemd-analyze image-policy (systemd 262), and
the extension-release matching rules (pure)."""

from __future__ import annotations

import pytest

from pcrtool.ddi.dps import DESIGNATORS
from pcrtool.ddi.policy import parse_image_policy
from pcrtool.ddi.release import ExtensionType, Host, match_extension, parse_os_release
from pcrtool.errors import UsageError

POLICIES = [
    "root=verity+signed+absent:usr=verity+signed+absent",
    "*", "-", "~",
    "root=signed",
    "root=verity+read-only-on:usr=unprotected+growfs-off+erofs",
    "root=verity:root-verity=absent",
    "root=verity+encrypted:=verity+absent",
    "root=signed+erofs",
    "usr=signed+unused",
    "root=verity+growfs-off+read-only-off",
    "=verity",
    "root=open:usr=ignore",
    "root=verity+signed:root-verity-sig=unprotected",
    "root=read-only-on",
    "root=verity+signed+encrypted+unprotected+absent:usr=verity+signed+encrypted+unprotected+absent",
    "home=encrypted+absent:srv=verity+unprotected:swap=absent",
]


def _analyze(sid, policy: str) -> dict[str, tuple[str, str, str, str]]:
    out = sid.run("systemd-analyze", "image-policy", policy).stdout
    rows = {}
    started = False
    for line in out.splitlines():
        cols = line.split()
        if cols[:2] == ["PARTITION", "MODE"]:
            started = True
            continue
        if started and len(cols) == 5:
            rows[cols[0]] = tuple(cols[1:])
    return rows


def _ours(policy: str) -> dict[str, tuple[str, str, str, str]]:
    p = parse_image_policy(policy)
    rows = {}
    for d in DESIGNATORS + ("default",):
        r = p.default if d == "default" else p.rule(d)
        ro = "-" if len(r.read_only) != 1 else ("yes" if True in r.read_only else "no")
        grow = "-" if len(r.growfs) != 1 else ("yes" if True in r.growfs else "no")
        rows[d] = (r.use_text(), ro, grow, "-" if r.fstypes is None else "+".join(sorted(r.fstypes)))
    return rows


def test_policies_resolve_as_systemd_analyze_shows(sid_systemd):
    mismatches = []
    for policy in POLICIES:
        theirs, ours = _analyze(sid_systemd, policy), _ours(policy)
        assert set(theirs) == set(ours), policy
        mismatches += [f"{policy}: {d}: systemd {theirs[d]}, pcrtool {ours[d]}" for d in theirs if theirs[d] != ours[d]]
    assert not mismatches, "\n".join(mismatches)


@pytest.mark.parametrize("policy,message", [
    ("root=bogus", "unknown flag 'bogus'"),
    ("roo=verity", "unknown partition designator 'roo'"),
    ("root=verity:root=signed", "root is given twice"),
    ("root", "is not designator=flags"),
    ("=verity:=signed", "default (=flags) is given twice"),
])
def test_policy_grammar_errors(policy, message, sid_systemd):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_image_policy(policy)
    assert sid_systemd.run("systemd-analyze", "image-policy", policy, check=False).returncode != 0


def test_long_form():
    assert parse_image_policy("usr=verity+signed+absent:root=signed").long_form() == \
        "root=signed:usr=verity+signed+absent:=unused+absent"


DEBIAN = Host({"ID": "debian", "VERSION_ID": "13", "SYSEXT_LEVEL": "1.0", "CONFEXT_LEVEL": "7"}, "x86-64")


@pytest.mark.parametrize("release,kind,reason", [
    ({"ID": "_any"}, "sysext", None),
    ({"ID": "debian", "SYSEXT_LEVEL": "1.0"}, "sysext", None),
    ({"ID": "debian", "VERSION_ID": "13"}, "sysext", None),
    ({"ID": "debian", "SYSEXT_LEVEL": "2"}, "sysext", "SYSEXT_LEVEL=2"),
    ({"ID": "debian", "CONFEXT_LEVEL": "7"}, "confext", None),
    ({"ID": "debian", "CONFEXT_LEVEL": "8"}, "confext", "CONFEXT_LEVEL=8"),
    ({"ID": "debian", "SYSEXT_LEVEL": "1.0"}, "confext", "neither CONFEXT_LEVEL"),
    ({"ID": "debian"}, "sysext", "neither SYSEXT_LEVEL"),
    ({"VERSION_ID": "13"}, "sysext", "has no ID="),
    ({"ID": "_any", "ARCHITECTURE": "_any"}, "sysext", None),
    ({"ID": "_any", "ARCHITECTURE": "arm64"}, "sysext", "ARCHITECTURE=arm64"),
    ({"ID": "_any", "SYSEXT_SCOPE": "initrd portable"}, "sysext", "SYSEXT_SCOPE"),
    ({"ID": "_any", "CONFEXT_SCOPE": "system"}, "confext", None),
])
def test_extension_release_rules(release, kind, reason):
    got = match_extension(release, DEBIAN, ExtensionType(kind), name="x")
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_os_release_quoting():
    assert parse_os_release('ID="fedora"\nNAME=\'Fedora Linux\'\n# c\n\nVERSION_ID=42\n') == \
        {"ID": "fedora", "NAME": "Fedora Linux", "VERSION_ID": "42"}
