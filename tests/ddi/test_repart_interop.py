"""Interop with systemd 262 (sid chroot): repart's DDIs pass `ddi verify`, `ddi inspect` agrees
with systemd-dissect, pcrtool's uncompressed DDI is repart's byte for byte, and compressed DDIs
are read by systemd-dissect and fsck.erofs."""

from __future__ import annotations

import json

import pytest
from helpers_ddi import EPOCH, SEED, SYSEXT_POLICY, cli, dissect_json, make_tree, run

from tests.support import need_tool

def assert_same_bytes(a, b):
    """Equal files; on a difference, name the first differing offset (not a byte-string diff)."""
    x, y = a.read_bytes(), b.read_bytes()
    if x != y:
        first = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), min(len(x), len(y)))
        pytest.fail(f"{a} ({len(x)} bytes) differs from {b} ({len(y)} bytes) first at byte {first}")


FIELDS = ("designator", "partition_uuid", "partition_label", "fstype", "architecture", "verity",
          "growfs", "partno", "rw")


def test_verify_accepts_the_repart_image(repart_image, certdirs, host):
    _, image = repart_image
    code, out, err = cli("--json=short", "ddi", "verify", image, "--image-policy", SYSEXT_POLICY,
                         "--certs", certdirs["new"], "--host-os-release", host["fedora"], "--arch", "x86-64")
    assert code == 0, err
    result = json.loads(out)
    assert result["ok"] and result["mode"] == "signed"
    assert [c["check"] for c in result["checks"]] == ["policy", "signature", "verity", "uuids",
                                                      "extension-release"]


def test_inspect_agrees_with_systemd_dissect(repart_image, sid_systemd):
    _, image = repart_image
    theirs = dissect_json(sid_systemd, image)
    code, out, err = cli("--json=short", "ddi", "inspect", image, "--arch", "x86-64")
    assert code == 0, err
    ours = json.loads(out)
    for key in ("name", "size", "sectorSize", "architecture", "imageUuid", "sysextRelease"):
        assert ours[key] == theirs[key], key
    assert len(ours["mounts"]) == len(theirs["mounts"]) == 3
    for a, b in zip(ours["mounts"], theirs["mounts"]):
        assert {k: a[k] for k in FIELDS} == {k: b[k] for k in FIELDS}


@pytest.fixture(scope="session")
def sid_mkfs(ddi_dir, sid_systemd):
    """A mkfs.erofs command that runs the chroot's erofs-utils (the one repart uses)."""
    wrapper = ddi_dir / "mkfs-erofs-sid"
    wrapper.write_text(f'#!/bin/sh\nexec bash {sid_systemd.script} run env '
                       f'SOURCE_DATE_EPOCH="${{SOURCE_DATE_EPOCH:-0}}" mkfs.erofs "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_uncompressed_build_is_byte_identical_to_repart(repart_image, keys, sid_mkfs, ddi_dir, monkeypatch):
    src, image = repart_image
    out = ddi_dir / "ours" / "myext.raw"
    out.parent.mkdir()
    key, cert = keys["new"]
    monkeypatch.setenv("PCRTOOL_MKFS_EROFS", sid_mkfs)
    code, _, err = cli("ddi", "build", src, "-o", out, "-k", f"file:{key}", "-c", cert, "--seed", SEED,
                       "--source-date-epoch", EPOCH, "--arch", "x86-64")
    assert code == 0, err
    assert_same_bytes(out, image)


@pytest.mark.parametrize("kind,shape", [("sysext", "tiny"), ("sysext", "large"), ("sysext", "over-4MiB"),
                                        ("confext", "small"), ("portable", "small")])
def test_layouts_match_repart_for_other_trees(kind, shape, keys, sid_mkfs, sid_systemd, ddi_dir, monkeypatch):
    """Partition sizes (repart's free-space sharing, libfdisk's 1 MiB alignment above 4 MiB), UUIDs
    and the salt for a 1-block file system, images just under and over 4 MiB, and the confext and
    portable definitions."""
    import random
    base = ddi_dir / f"layout-{kind}-{shape}"
    release = "ID=_any\n"
    if kind == "portable":
        src = base / "src"
        (src / "usr/lib").mkdir(parents=True)
        (src / "usr/lib/os-release").write_text("ID=debian\n")
        (src / "usr/bin").mkdir()
        (src / "usr/bin/tool").write_text("#!/bin/sh\n")
    else:
        src = make_tree(base / "src", "ext", release, files=0 if shape == "tiny" else 30, kind=kind)
    if shape in ("large", "over-4MiB"):
        size = 3_000_000 if shape == "large" else 6_000_000
        (src / "usr/share/ext/blob").write_bytes(random.Random(5).randbytes(size))
    key, cert = keys["new"]
    theirs = base / "repart" / "ext.raw"
    theirs.parent.mkdir()
    sid_systemd.run("systemd-repart", f"--make-ddi={kind}", f"--copy-source={src}", f"--private-key={key}",
                    f"--certificate={cert}", "--offline=yes", f"--seed={SEED}", theirs,
                    env={"SOURCE_DATE_EPOCH": EPOCH})
    ours = base / "ours" / "ext.raw"
    ours.parent.mkdir()
    monkeypatch.setenv("PCRTOOL_MKFS_EROFS", sid_mkfs)
    code, _, err = cli("ddi", "build", src, "-o", ours, "-t", kind, "-k", f"file:{key}", "-c", cert,
                       "--seed", SEED, "--source-date-epoch", EPOCH, "--arch", "x86-64")
    assert code == 0, err
    assert_same_bytes(ours, theirs)


@pytest.mark.parametrize("compress,mkfs", [("lz4hc", "host"), ("zstd", "sid"), ("lzma", "sid")])
def test_compressed_images_are_read_by_systemd_and_fsck(compress, mkfs, repart_image, keys, certdirs, host,
                                                         sid_mkfs, sid_systemd, ddi_dir, monkeypatch):
    src, _ = repart_image
    if mkfs == "sid":
        monkeypatch.setenv("PCRTOOL_MKFS_EROFS", sid_mkfs)
    else:
        need_tool("mkfs.erofs")
        monkeypatch.delenv("PCRTOOL_MKFS_EROFS", raising=False)
    out = ddi_dir / f"z-{compress}" / "myext.raw"
    out.parent.mkdir()
    key, cert = keys["new"]
    code, built, err = cli("--json=short", "ddi", "build", src, "-o", out, "-k", f"file:{key}", "-c", cert,
                           "--seed", SEED, "--compress", compress, "--arch", "x86-64")
    assert code == 0, err
    # systemd reads it: the policy validates and the extension-release comes out of the erofs
    sid_systemd.run("systemd-dissect", "--validate", f"--image-policy={SYSEXT_POLICY}", out)
    theirs = dissect_json(sid_systemd, out)
    assert theirs["sysextRelease"] == ["ID=_any", "EXTENSION_RELOAD_MANAGER=1"]
    assert [m["verity"] for m in theirs["mounts"]] == ["signed", None, None]
    # fsck.erofs (the chroot's, and the host's for what the host made) checks every file
    fs = out.with_suffix(".fs")
    from pcrtool.gpt import read_gpt
    data = out.read_bytes()
    e = read_gpt(data).entries[0]
    fs.write_bytes(data[e.first_lba * 512:(e.last_lba + 1) * 512])
    sid_systemd.run("fsck.erofs", "--extract=" + str(out.parent / "x"), fs)
    assert (out.parent / "x/usr/share/myext/file007.txt").read_text() == "myext file 7\n" * 8
    if mkfs == "host":
        run(need_tool("fsck.erofs"), fs)
    # and pcrtool's own verifier accepts it, reading the compressed extension-release
    code, _, err = cli("ddi", "verify", out, "--image-policy", SYSEXT_POLICY, "--certs", certdirs["new"],
                       "--host-os-release", host["fedora"], "--arch", "x86-64")
    assert code == 0, err


def test_squashfs_ddi_from_repart_definitions(keys, certdirs, host, sid_systemd, ddi_dir):
    """A signed DDI whose file system is squashfs (repart.d Format=squashfs): the extension-release
    file comes out through unsquashfs, and the name check still applies."""
    need_tool("unsquashfs")
    base = ddi_dir / "squashfs"
    defs = base / "defs"
    defs.mkdir(parents=True)
    (defs / "10-root.conf").write_text("[Partition]\nType=root\nFormat=squashfs\nCopyFiles=/usr/\nVerity=data\n"
                                       "VerityMatchKey=root\nMinimize=best\n")
    (defs / "20-verity.conf").write_text("[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n"
                                         "Minimize=best\n")
    (defs / "30-sig.conf").write_text("[Partition]\nType=root-verity-sig\nVerity=signature\nVerityMatchKey=root\n")
    src = make_tree(base / "src", "sq", "ID=debian\nVERSION_ID=13\n", files=5)
    image = base / "sq.raw"
    key, cert = keys["new"]
    sid_systemd.run("systemd-repart", f"--definitions={defs}", "--empty=create", "--size=auto", "--dry-run=no",
                    f"--copy-source={src}", f"--private-key={key}", f"--certificate={cert}", "--offline=yes",
                    f"--seed={SEED}", image)
    theirs = dissect_json(sid_systemd, image)
    code, out, err = cli("--json=short", "ddi", "inspect", image, "--arch", "x86-64")
    assert code == 0, err
    ours = json.loads(out)
    assert ours["sysextRelease"] == theirs["sysextRelease"] == ["ID=debian", "VERSION_ID=13"]
    assert [m["fstype"] for m in ours["mounts"]] == [m["fstype"] for m in theirs["mounts"]]
    args = ["--image-policy", SYSEXT_POLICY, "--certs", certdirs["new"], "--arch", "x86-64"]
    code, out, err = cli("--json=short", "ddi", "verify", image, *args, "--host-os-release", host["debian"])
    assert code == 0, err
    assert json.loads(out)["checks"][-1]["check"] == "extension-release"
    code, _, err = cli("ddi", "verify", image, *args, "--host-os-release", host["fedora"])
    assert code == 3 and "ID=debian, the host is ID=fedora" in err
    renamed = base / "renamed.raw"
    renamed.write_bytes(image.read_bytes())
    code, _, err = cli("ddi", "verify", renamed, *args, "--host-os-release", host["debian"])
    assert code == 3 and "named 'renamed' but carries extension-release.sq" in err


def test_confext_is_verified_against_confext_rules(keys, certdirs, ddi_dir):
    src = make_tree(ddi_dir / "confext-src", "conf", "ID=debian\nCONFEXT_LEVEL=3\n", files=2, kind="confext")
    image = ddi_dir / "confext" / "conf.raw"
    image.parent.mkdir()
    key, cert = keys["new"]
    assert cli("ddi", "build", src, "-o", image, "-t", "confext", "-k", f"file:{key}", "-c", cert,
               "--arch", "x86-64")[0] == 0
    host = ddi_dir / "os-release.confext"
    args = ["--certs", certdirs["new"], "--arch", "x86-64", "--host-os-release", host]
    host.write_text("ID=debian\nVERSION_ID=13\nCONFEXT_LEVEL=3\nSYSEXT_LEVEL=9\n")
    code, out, err = cli("--json=short", "ddi", "verify", image, *args)
    assert code == 0, err
    assert json.loads(out)["type"] == "confext"
    host.write_text("ID=debian\nVERSION_ID=13\nCONFEXT_LEVEL=4\n")
    code, _, err = cli("ddi", "verify", image, *args)
    assert code == 3 and "CONFEXT_LEVEL=3, the host has CONFEXT_LEVEL=4" in err
