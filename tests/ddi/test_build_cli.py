"""`ddi build` refuses what systemd would not merge or what would lose data, in one line."""

from __future__ import annotations

from helpers_ddi import cli, make_tree


def test_build_refusals(keys, tmp_path):
    key, cert = keys["new"]
    k = ["-k", f"file:{key}", "-c", cert, "--arch", "x86-64"]
    src = make_tree(tmp_path / "src", "named", "ID=_any\n", files=1)
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "other.raw", *k)
    assert code == 2 and "has no usr/lib/extension-release.d/extension-release.other" in err
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "named.img", *k)
    assert code == 2 and "does not end in .raw" in err
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "named.raw", "-t", "confext", *k)
    assert code == 2 and "etc/extension-release.d/extension-release.named" in err
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "named.raw", "--compress", "brotli", *k)
    assert code == 2 and "--compress takes" in err
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "named.raw", "-k", "offline", "-c", cert)
    assert code == 2 and "ddi prepare" in err
    (tmp_path / "named.raw").write_bytes(b"keep me")
    code, _, err = cli("ddi", "build", src, "-o", tmp_path / "named.raw", *k)
    assert code == 1 and "exists already" in err
    assert (tmp_path / "named.raw").read_bytes() == b"keep me"
    for bad in ("ID=_any\nARCHITECTURE=arm64\n", "VERSION_ID=1\n"):
        s = make_tree(tmp_path / f"s{len(bad)}", "bad", bad, files=1)
        code, _, err = cli("ddi", "build", s, "-o", tmp_path / "bad.raw", *k)
        assert code == 2 and "Traceback" not in err
        assert not (tmp_path / "bad.raw").exists()


def test_inspect_table_and_non_gpt_input(good, tmp_path):
    code, out, err = cli("ddi", "inspect", good, "--arch", "x86-64")
    assert code == 0, err
    assert "extension-release.good" in out and "ID=debian" in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [(r[1], r[2], r[6]) for r in rows] == [("root", "root-x86-64", "signed"),
                                                 ("root-verity", "root-x86-64-verity", "-"),
                                                 ("root-verity-sig", "root-x86-64-verity-sig", "-")]
    junk = tmp_path / "junk.raw"
    junk.write_bytes(bytes(10000))
    code, _, err = cli("ddi", "inspect", junk)
    assert code == 1 and "no GPT header" in err and "Traceback" not in err


def test_release_written_from_flags_equals_the_file_in_the_tree(keys, tmp_path):
    from helpers_ddi import EPOCH, SEED
    key, cert = keys["new"]
    k = ["-k", f"file:{key}", "-c", cert, "--arch", "x86-64", "--seed", SEED, "--source-date-epoch", EPOCH]
    with_file = make_tree(tmp_path / "a", "rel", "ID=debian\nSYSEXT_LEVEL=1.0\n", files=2)
    bare = make_tree(tmp_path / "b", "rel", "", files=2)
    (bare / "usr/lib/extension-release.d/extension-release.rel").unlink()
    (bare / "usr/lib/extension-release.d").rmdir()
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    assert cli("ddi", "build", with_file, "-o", tmp_path / "x/rel.raw", *k)[0] == 0
    code, _, err = cli("ddi", "build", bare, "-o", tmp_path / "y/rel.raw", "--release", "ID=debian",
                       "--release", "SYSEXT_LEVEL=1.0", *k)
    assert code == 0, err
    assert (tmp_path / "x/rel.raw").read_bytes() == (tmp_path / "y/rel.raw").read_bytes()
    code, _, err = cli("ddi", "build", with_file, "-o", tmp_path / "rel.raw", "--release", "ID=_any", *k)
    assert code == 2 and "--release would replace it" in err
    code, _, err = cli("ddi", "build", bare, "-o", tmp_path / "rel.raw", "--release", "id", *k)
    assert code == 2 and "is not KEY=VALUE" in err
