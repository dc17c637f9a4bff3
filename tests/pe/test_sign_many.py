"""`pe sign FILE...`: several inputs in one process give the same bytes as one call per file; a
bad input among them means no output at all; output naming rules."""

from __future__ import annotations

from helpers_pe import pcrtool, tool

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def _inputs(tmp_path, stub, boot):
    a, b, c = tmp_path / "a.efi", tmp_path / "b.efi", tmp_path / "c.efi"
    a.write_bytes(stub.read_bytes())
    b.write_bytes(boot.read_bytes())
    c.write_bytes(stub.read_bytes() + bytes(-len(stub.read_bytes()) % 8))
    return [a, b, c]


def test_several_inputs_equal_one_call_each(stub, boot, tmp_path, rsa2048):
    key, cert = rsa2048
    files = _inputs(tmp_path, stub, boot)
    out = tmp_path / "out"
    out.mkdir()
    r = pcrtool("pe", "sign", *files, "--key", key, "--cert", cert, "-o", out, env=EPOCH)
    assert r.returncode == 0, r.stderr
    for f in files:
        single = tmp_path / f"{f.name}.single"
        pcrtool("pe", "sign", f, "--key", key, "--cert", cert, "-o", single, env=EPOCH, check=True)
        assert (out / f.name).read_bytes() == single.read_bytes()
        tool("sbverify", "--cert", cert, out / f.name)
    r = pcrtool("pe", "sign", *files, "--key", key, "--cert", cert, "--suffix", ".signed", env=EPOCH)
    assert r.returncode == 0, r.stderr
    assert all((tmp_path / f"{f.name}.signed").read_bytes() == (out / f.name).read_bytes() for f in files)


def test_a_bad_input_writes_nothing(stub, boot, tmp_path, rsa2048):
    key, cert = rsa2048
    files = _inputs(tmp_path, stub, boot)
    bad = tmp_path / "bad.efi"
    bad.write_bytes(b"MZ" + bytes(100))
    out = tmp_path / "out"
    out.mkdir()
    r = pcrtool("pe", "sign", files[0], bad, files[1], "--key", key, "--cert", cert, "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert list(out.iterdir()) == []


def test_output_rules(stub, boot, tmp_path, rsa2048):
    key, cert = rsa2048
    files = _inputs(tmp_path, stub, boot)
    cases = [
        ("-o", tmp_path / "not-a-dir.efi"),          # several inputs need a directory
        ("--suffix", ""),                            # empty suffix would replace the inputs
        ("--suffix", "x/y"),
    ]
    for opt, value in cases:
        r = pcrtool("pe", "sign", *files, "--key", key, "--cert", cert, opt, value)
        assert r.returncode == 2, (opt, value, r.stderr)
    r = pcrtool("pe", "sign", files[0], files[0], "--key", key, "--cert", cert, "-o", tmp_path)
    assert r.returncode == 2  # the same output twice
    r = pcrtool("pe", "sign", *files, "--key", key, "--cert", cert, "-o", tmp_path)
    assert r.returncode == 2  # would replace the inputs
    r = pcrtool("pe", "sign", files[0], "--key", key, "--cert", cert)
    assert r.returncode == 2  # neither -o nor --suffix
