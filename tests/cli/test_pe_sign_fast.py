"""`pcrtool pe sign` is parsed without Typer when its command line is plain (pcrtool.cli.pe_sign):
the option table equals the Typer command's, every command line it accepts parses to what click
parses, everything else goes to Typer, and the fast path imports neither Typer nor asn1crypto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from pcrtool.cli import pe as pe_cli, pe_sign


def _command():
    return typer.main.get_command(pe_cli.app).commands["sign"]


def test_option_table_is_the_typer_commands():
    want = {}
    for p in _command().params:
        if isinstance(p, click.Option):
            for name in p.opts:
                want[name] = (p.name, not p.is_flag, p.multiple)
    assert pe_sign.OPTIONS == want
    assert {p.name: p.default for p in _command().params if isinstance(p, click.Option)} == \
        {k: (v if v != [] else None) for k, v in pe_sign.DEFAULTS.items()} | {"chain": _default("chain")}


def _default(name):
    return next(p.default for p in _command().params if p.name == name)


def _click_parse(args):
    ctx = _command().make_context("sign", list(args))
    params = dict(ctx.params)
    params["chain"] = list(params["chain"] or [])
    params["files"] = list(params.pop("files"))
    return params


PLAIN = [
    ["a.efi", "--key", "k.pem", "--cert", "c.pem", "-o", "out"],
    ["a.efi", "b.efi", "c.efi", "-k", "k.pem", "-c", "c.pem", "--suffix", ".signed"],
    ["--key=k.pem", "--certificate=c.pem", "--output=o", "a.efi", "--hash", "sha384", "b.efi"],
    ["a.efi", "--key", "pkcs11:token=t;object=o", "--chain", "i1.pem", "--chain=i2.pem", "--detached", "-o", "d"],
    ["a.efi", "--key", "", "-o", "x"],
    ["", "--key", "k"],
]
NOT_PLAIN = [
    ["--help"], ["-h"], ["a.efi", "--key", "k", "--", "-b.efi"], ["a.efi", "-kk.pem"], ["a.efi", "--key", "k", "--key", "j"],
    ["a.efi", "--key"], ["a.efi", "--key", "-o"], ["a.efi"], ["--key", "k"], ["a.efi", "--key", "k", "--detached=yes"],
    ["a.efi", "--key", "k", "--bogus"], ["-", "--key", "k"], ["a.efi", "--key", "k", "--no-detached"],
]


@pytest.mark.parametrize("args", PLAIN)
def test_plain_command_lines_parse_as_click_parses_them(args):
    assert pe_sign.parse(args) == _click_parse(args)


@pytest.mark.parametrize("args", NOT_PLAIN)
def test_anything_else_goes_to_typer(args):
    assert pe_sign.parse(args) is None


def test_completion_goes_to_typer(monkeypatch):
    monkeypatch.setenv("_PCRTOOL_COMPLETE", "bash_complete")
    assert pe_sign.parse(PLAIN[0]) is None


def test_fast_path_signs_without_typer_or_asn1crypto(tmp_path):
    """The whole command, in a child: it signs, and neither Typer, click nor asn1crypto was imported."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pe"))
    from helpers_pe import STUB, make_cert
    if not STUB.is_file():
        pytest.fail(f"{STUB} missing (apt-get install systemd-boot-efi)")
    stub = STUB
    key, cert = make_cert(tmp_path)
    code = ("import sys\nfrom pcrtool.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, sorted(m for m in ('typer', 'click', 'asn1crypto') if m in sys.modules))\n")
    out = tmp_path / "signed.efi"
    proc = subprocess.run([sys.executable, "-c", code, "pe", "sign", str(stub), "--key", str(key), "--cert", str(cert),
                           "-o", str(out)], capture_output=True, text=True)
    assert proc.stdout.strip() == "0 []", proc.stderr
    assert f"signed {stub} -> {out}" in proc.stderr
    from pcrtool.pe.sigdb import load_sigdb
    from pcrtool.pe.verify import verify_image
    assert verify_image(out.read_bytes(), db=load_sigdb(cert.read_bytes())).accepted is True
