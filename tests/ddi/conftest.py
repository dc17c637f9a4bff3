"""Fixtures for the DDI tests: keys, host os-release files, and images made by systemd-repart
(sid chroot) and by pcrtool."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # importlib mode: make helpers importable

from helpers_ddi import EPOCH, SEED, cli, make_tree, self_signed  # noqa: E402

from tests.support import need_tool  # noqa: E402


@pytest.fixture(scope="session")
def ddi_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ddi")


@pytest.fixture(scope="session")
def keys(ddi_dir):
    """old/new signing keys (rotation) and an unrelated one, each with a self-signed certificate."""
    d = ddi_dir / "keys"
    d.mkdir()
    return {n: self_signed(d, n) for n in ("old", "new", "other")}


@pytest.fixture(scope="session")
def certdirs(ddi_dir, keys):
    """verity.d-like directories: both certificates, only the new one, only the old one."""
    out = {}
    for name, members in (("both", ("old", "new")), ("new", ("new",)), ("old", ("old",))):
        d = ddi_dir / f"verity.d-{name}"
        d.mkdir()
        for m in members:
            shutil.copy(keys[m][1], d / f"{m}.crt")
        out[name] = d
    return out


@pytest.fixture(scope="session")
def host(ddi_dir):
    """Host os-release files."""
    out = {}
    for name, text in (("debian", "ID=debian\nVERSION_ID=13\nSYSEXT_LEVEL=1.0\n"),
                       ("fedora", "ID=fedora\nVERSION_ID=42\n"),
                       ("flatcar", 'ID=flatcar\nID_LIKE="coreos"\nVERSION_ID=4152.2.0\nSYSEXT_LEVEL=1.0\n')):
        p = ddi_dir / f"os-release.{name}"
        p.write_text(text)
        out[name] = p
    return out


@pytest.fixture(scope="session")
def good(ddi_dir, keys):
    """A pcrtool-built sysext (host mkfs.erofs), signed with the new key; its release matches
    the debian host by SYSEXT_LEVEL."""
    need_tool("mkfs.erofs")
    src = make_tree(ddi_dir / "good-src", "good",
                    "ID=debian\nSYSEXT_LEVEL=1.0\nARCHITECTURE=x86-64\n", files=40)
    out = ddi_dir / "good" / "good.raw"
    out.parent.mkdir()
    key, cert = keys["new"]
    code, _, err = cli("ddi", "build", src, "-o", out, "-k", f"file:{key}", "-c", cert, "--seed", SEED,
                       "--source-date-epoch", EPOCH)
    assert code == 0, err
    return out


@pytest.fixture(scope="session")
def repart_image(ddi_dir, keys, sid_systemd):
    """A sysext made by systemd-repart --make-ddi=sysext (systemd 262), signed with the new key."""
    src = make_tree(ddi_dir / "repart-src", "myext", "ID=_any\nEXTENSION_RELOAD_MANAGER=1\n", files=300)
    out = ddi_dir / "repart" / "myext.raw"
    out.parent.mkdir()
    key, cert = keys["new"]
    sid_systemd.run("systemd-repart", "--make-ddi=sysext", f"--copy-source={src}", f"--private-key={key}",
                    f"--certificate={cert}", "--offline=yes", f"--seed={SEED}", "--json=short", out,
                    env={"SOURCE_DATE_EPOCH": EPOCH})
    return src, out
