"""The extension-release rules against systemd-sysext 262 itself: a root with a host os-release
and one extension (a plain erofs image, so no device-mapper is needed), `systemd-sysext merge
--root=` in the chroot's own mount namespace; pcrtool's verdict must be systemd's."""

from __future__ import annotations

import pytest
from helpers_ddi import make_tree, run

from pcrtool.ddi.release import ExtensionType, Host, match_extension, parse_os_release
from tests.support import need_tool

FLATCAR = "ID=flatcar\nID_LIKE=coreos\nVERSION_ID=4152\nSYSEXT_LEVEL=1.0\n"
DEBIAN = "ID=debian\nVERSION_ID=13\n"

CASES = [
    (FLATCAR, "ID=coreos\nSYSEXT_LEVEL=1.0\n"),
    (FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=1.0\n"),
    (FLATCAR, "ID=fedora\nVERSION_ID=4152\n"),
    (FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=2.0\n"),
    (FLATCAR, "ID=flatcar\nVERSION_ID=4152\n"),
    (FLATCAR, "ID=flatcar\n"),
    (FLATCAR, "ID=_any\n"),
    (FLATCAR, "ID=_any\nARCHITECTURE=arm64\n"),
    (FLATCAR, "ID=_any\nARCHITECTURE=x86-64\n"),
    (FLATCAR, "ID=_any\nSYSEXT_SCOPE=initrd\n"),
    (FLATCAR, "ID=flatcar\nSYSEXT_LEVEL=1.0\nSYSEXT_SCOPE=system initrd\n"),
    (DEBIAN, "ID=debian\nSYSEXT_LEVEL=1.0\nVERSION_ID=13\n"),
    (DEBIAN, "ID=debian\nVERSION_ID=13\n"),
    (DEBIAN, "ID=debian\nVERSION_ID=12\n"),
]


def systemd_merges(sid, root) -> bool:
    # A private /run (the chroot's namespace only): merge leaves its state there, not in the cache.
    script = ("mount -t tmpfs tmpfs /run && "
              f"exec systemd-sysext merge --root={root} "
              "--image-policy=root=unprotected+absent:usr=unprotected+absent")
    proc = sid.run("sh", "-c", script, check=False)
    return "Using extensions" in proc.stdout + proc.stderr


@pytest.mark.parametrize("host,release", CASES)
def test_pcrtool_agrees_with_systemd_sysext(host, release, sid_systemd, tmp_path):
    mkfs = need_tool("mkfs.erofs")
    root = tmp_path / "root"
    for d in ("etc", "usr/lib", "opt", "var/lib/extensions"):
        (root / d).mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(host)
    (root / "etc/os-release").write_text(host)
    src = make_tree(tmp_path / "src", "ext", release, files=1)
    run(mkfs, "--quiet", root / "var/lib/extensions/ext.raw", src)
    theirs = systemd_merges(sid_systemd, root)
    ours = match_extension(parse_os_release(release), Host(parse_os_release(host), "x86-64"),
                           ExtensionType.SYSEXT, name="ext")
    assert (ours is None) == theirs, (release, ours)


def test_a_renamed_image_is_not_merged_by_systemd_either(sid_systemd, tmp_path):
    mkfs = need_tool("mkfs.erofs")
    root = tmp_path / "root"
    for d in ("etc", "usr/lib", "opt", "var/lib/extensions"):
        (root / d).mkdir(parents=True)
    (root / "usr/lib/os-release").write_text(DEBIAN)
    src = make_tree(tmp_path / "src", "ext", "ID=_any\n", files=1)
    run(mkfs, "--quiet", root / "var/lib/extensions/renamed.raw", src)
    assert not systemd_merges(sid_systemd, root)
    (root / "var/lib/extensions/renamed.raw").rename(root / "var/lib/extensions/ext.raw")
    assert systemd_merges(sid_systemd, root)
