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
    # One of several inputs is refused: the one-line error names it (fast path and Typer's).
    for key_args in (("--key", key), (f"-k{key}",)):
        r = pcrtool("pe", "sign", files[0], bad, files[1], *key_args, "--cert", cert, "-o", out)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"error: {bad}: not a PE image" in r.stderr, r.stderr
        assert list(out.iterdir()) == []


def test_a_key_problem_after_the_outputs_were_opened_leaves_nothing(stub, boot, uki, tmp_path, rsa2048, rsa2048b):
    """The outputs' temporary files are opened (and their bodies written) while the key loads: a
    certificate of another key, or a key file that is not a key, still leaves no file behind
    (the UKI makes the set large enough for the forked checksum child)."""
    key, cert = rsa2048
    _other_key, other_cert = rsa2048b
    files = _inputs(tmp_path, stub, boot) + [uki]
    out = tmp_path / "out"
    out.mkdir()
    r = pcrtool("pe", "sign", *files, "--key", key, "--cert", other_cert, "-o", out)
    assert r.returncode != 0 and "does not belong" in r.stderr and "Traceback" not in r.stderr
    assert list(out.iterdir()) == []
    r = pcrtool("pe", "sign", *files, "--key", cert, "--cert", cert, "-o", out)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert list(out.iterdir()) == []
    r = pcrtool("pe", "sign", *files, "--key", key, "--cert", cert, "-o", out, env=EPOCH)
    assert r.returncode == 0 and sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)


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


def _signed_chunks(stub, key, cert):
    import datetime as dt

    from pcrtool.model import HashAlg
    from pcrtool.pe.files import load_sign_key
    from pcrtool.pe.sign import check_signable, prepare, sign_prepared

    data = stub.read_bytes()
    image, pad, _ = check_signable(data, HashAlg.SHA256)
    with load_sign_key(str(key), str(cert)) as signer:
        chunks = sign_prepared(prepare(data, dt.datetime(2023, 11, 14, tzinfo=dt.timezone.utc)), signer)
    return chunks, image, pad


def test_what_was_written_is_checked_before_it_is_renamed(stub, boot, tmp_path, rsa2048, monkeypatch):
    """``pe sign`` does not hash its output again; it checks the file itself (size, headers, hashed
    ranges, the new table entry) before the rename. A write that lands differently (simulated here:
    a byte of the new entry flipped on its way to the file) or an output whose hashed ranges are
    not the input's fails, and nothing is left at the output path."""
    import pytest

    from pcrtool.errors import SignatureError
    from pcrtool.pe import PeImage
    from pcrtool.pe.files import _write_checked

    key, cert = rsa2048
    chunks, image, pad = _signed_chunks(stub, key, cert)
    good = tmp_path / "good.efi"
    _write_checked(str(good), chunks, image, pad)
    tool("sbverify", "--cert", cert, good)

    wrong = tmp_path / "wrong-layout.efi"
    with pytest.raises(SignatureError, match="layout is not the one written ahead"):
        _write_checked(str(wrong), chunks, PeImage.parse(boot.read_bytes()), 0)
    assert not wrong.exists()
    import dataclasses
    other = PeImage.parse(stub.read_bytes())        # same file, one section hashed 8 bytes shorter
    other.sections[0] = dataclasses.replace(other.sections[0], raw_size=other.sections[0].raw_size - 8)
    wrong = tmp_path / "wrong-ranges.efi"
    with pytest.raises(SignatureError, match="hashed ranges differ"):
        _write_checked(str(wrong), chunks, other, pad)
    assert not wrong.exists()

    from pcrtool.pe import files

    real = files._pwrite

    def flipping(fd, data, offset):   # the new entry is written last, at the end of the file
        data = bytes(data)
        if data.endswith(chunks[-1]):
            data = data[:-9] + bytes([data[-9] ^ 1]) + data[-8:]
        real(fd, data, offset)

    monkeypatch.setattr(files, "_pwrite", flipping)
    flipped = tmp_path / "flipped.efi"
    with pytest.raises(SignatureError, match="last certificate-table entry"):
        _write_checked(str(flipped), chunks, image, pad)
    assert not flipped.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["good.efi"]


def test_copy_fallbacks_give_the_same_bytes(stub, boot, uki, tmp_path, rsa2048, monkeypatch):
    """Inputs are copied into the outputs by the kernel (copy_file_range) and signed from that copy;
    where the kernel refuses (EXDEV across file systems, ENOSYS) the copy goes through pread/pwrite,
    and an input that cannot be mapped is read into memory: every way gives the same bytes."""
    import datetime as dt
    import errno

    from pcrtool.model import HashAlg
    from pcrtool.pe import files as pe_files

    key, cert = rsa2048
    inputs = [str(p) for p in _inputs(tmp_path, stub, boot) + [uki]]
    when = dt.datetime(2023, 11, 14, tzinfo=dt.timezone.utc)

    def sign_into(name):
        out = tmp_path / name
        out.mkdir()
        outs = [str(out / f"{i}.efi") for i in range(len(inputs))]
        list(pe_files.sign_files(inputs, outs, key=str(key), cert=str(cert), alg=HashAlg.SHA256, when=when))
        return [open(o, "rb").read() for o in outs]

    direct = sign_into("direct")

    def refuse(*_a):
        raise OSError(errno.EXDEV, "cross-device")
    monkeypatch.setattr(pe_files.os, "copy_file_range", refuse)
    assert sign_into("chunked") == direct
    monkeypatch.setattr(pe_files, "_copy_and_map", lambda src, dst: pe_files.os.close(src))
    assert sign_into("in-memory") == direct
    tool("sbverify", "--cert", cert, tmp_path / "direct" / "3.efi")
    assert sorted(p.name for p in (tmp_path / "in-memory").iterdir()) == [f"{i}.efi" for i in range(4)]
