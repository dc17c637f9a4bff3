"""CLI consistency (issue 18): every command's --help, one meaning per option letter, every --json
output parses, tables keep data visible, systemd-like phase labels, verdicts, pager, completion."""

import collections
import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

from pcrtool import render
from pcrtool.cli import SUBCOMMANDS, _invoke
from tests.support.cli import run_pcrtool as run

ROOT = Path(__file__).resolve().parents[2]

#: A short option letter has one meaning; a meaning may have two spellings.
SAME_MEANING = [{"--cert", "--certificate"}, {"--key", "--public-key"}]

#: Leaf commands whose JSON is exercised elsewhere because they need a TPM, a token or artefacts
#: (their tests parse --json): the rest is run below.
JSON_ELSEWHERE = {
    "tpm": "swtpm-tests (test_tpm_cli, test_policy_device_cli, test_tpm_boot_release)",
    "swtpm": "a running swtpm", "validate": "swtpm-tests/test_validate_cli.py",
    "demo": "swtpm-tests/test_demo.py", "pe": "tests/pe", "verity": "tests/verity", "ddi": "tests/ddi",
    "sign-request": "tests/sign/test_offline.py", "key list": "tests/sign/test_pkcs11.py",
    "predict gpt": "tests/predict/test_pcrs.py", "predict from-log": "tests/predict/test_substitute.py",
    "eventlog cel": "tests/eventlog/test_verify_userspace_cel.py", "policy attach": "tests/policy",
    "clevis encrypt": "binary JWE protocol", "clevis decrypt": "binary JWE protocol",
    "pcrlock": "tests/interop/test_pcrlock_lock.py (against systemd-pcrlock)",
}


def leaf_commands():
    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd
    for name, (module, _) in SUBCOMMANDS.items():
        yield from walk(typer.main.get_command(importlib.import_module(module).app), [name])


def test_every_command_help_and_one_meaning_per_option_letter(capsys):
    letters = collections.defaultdict(lambda: collections.defaultdict(list))
    count = 0
    for path, cmd in leaf_commands():
        assert _invoke([*path, "--help"]) == 0, path
        out = capsys.readouterr()
        assert "Usage:" in out.out and "Traceback" not in out.err, path
        count += 1
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            longs = {o for o in p.opts + p.secondary_opts if o.startswith("--")}
            for short in (o for o in p.opts if len(o) == 2 and o[0] == "-"):
                letters[short][frozenset(longs)].append(" ".join(path))
    assert count > 50
    clashes = {}
    for short, meanings in letters.items():
        groups = []
        for longs in meanings:
            merged = set(longs).union(*[g for g in SAME_MEANING if g & longs])
            if not any(merged & g for g in groups):
                groups.append(merged)
        if len(groups) > 1:
            clashes[short] = {" ".join(sorted(k)): v for k, v in meanings.items()}
    assert clashes == {}
    assert set(letters["-o"]) == {frozenset({"--output"})}
    assert set(letters["-a"]) == {frozenset({"--approvals"})}
    assert set(letters["-r"]) == {frozenset({"--releases"})}


def test_certificate_and_key_options_take_both_spellings_and_pkcs11_uris():
    for path, cmd in leaf_commands():
        for p in cmd.params:
            opts = set(p.opts)
            if "-c" in opts:
                assert {"--cert", "--certificate"} <= opts, path


def test_every_json_output_parses(tmp_path):
    d = tmp_path
    log = ROOT / "eventlogs/ovmf-sb-off/eventlog.bin"
    (d / "linux").write_bytes(b"kernel")
    (d / "m.toml").write_text('name = "x"\nversion = "1"\nsvn = 1\n[values]\n"11" = {sha256 = "' + "ab" * 32 + '"}\n')
    run("key", "generate", d / "k.pem", "--public-output", d / "pub.pem")
    run("predict", "release", d / "m.toml", "-o", d / "p.json")
    run("policy", "approve", "-r", d / "p.json", "-k", d / "k.pem", "-o", d / "a.pcrsig")
    commands = {
        "eventlog show": ["eventlog", "show", log], "eventlog replay": ["eventlog", "replay", log],
        "eventlog secureboot": ["eventlog", "secureboot", log],
        "eventlog verify": ["eventlog", "verify", log, "--pcrs", log.parent / "pcrs.json"],
        "predict uki": ["predict", "uki", "--linux", d / "linux"], "predict pe": ["predict", "pe", "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"],
        "predict secureboot": ["predict", "secureboot"], "predict cmdline": ["predict", "cmdline", "quiet"],
        "predict release": ["predict", "release", d / "m.toml"], "predict template": ["predict", "template"],
        "policy digest": ["policy", "digest", "-k", d / "pub.pem", "--pcr-values", "11:sha256=" + "00" * 32],
        "policy approve": ["policy", "approve", "-r", d / "p.json", "-k", d / "k.pem"],
        "policy prepare": ["policy", "prepare", "-r", d / "p.json", "-k", d / "pub.pem", "-o", "-"],
        "policy show": ["policy", "show", d / "a.pcrsig"],
        "key generate": ["key", "generate", d / "k2.pem"], "key show": ["key", "show", d / "k.pem"],
        "key fingerprint": ["key", "fingerprint", d / "k.pem"], "key public": ["key", "public", d / "k.pem"],
        "clevis install": ["clevis", "install", "--dir", d / "bin"],
    }
    for path, _ in leaf_commands():
        name = " ".join(path)
        assert name in commands or name in JSON_ELSEWHERE or path[0] in JSON_ELSEWHERE, f"{name}: no --json check"
    for name, args in commands.items():
        p = run(*args, "--json=short")
        assert p.returncode in (0, 3), (name, p.stderr)
        assert isinstance(json.loads(p.stdout), (dict, list)), name


@pytest.fixture
def make_tty(monkeypatch):
    """Call in the test body (pytest's capture re-sets sys.stdout after fixture setup)."""
    def make():
        out = io.StringIO()
        out.isatty = lambda: True
        monkeypatch.setattr(sys, "stdout", out)
        render.configure(render.OutputOptions(pager=False))
        return out
    yield make
    render.configure(render.OutputOptions())


def test_rich_tables_escape_markup_and_fold_long_cells(make_tty, monkeypatch):
    tty = make_tty()
    monkeypatch.setattr(render, "_terminal_columns", lambda: 60)
    long = "x" * 150 + "END"
    t = render.Table(["type", "description"], footer="verdict line")
    t.add("EV_NO_ACTION", "Spec ID Event03 [sha1,sha256,sha384] [bold]not bold[/bold]")
    t.add("EV_IPL", long)
    render.emit_table(t)
    text = tty.getvalue()
    import re
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "[sha1,sha256,sha384]" in plain and "[bold]not bold[/bold]" in plain
    assert "…" not in plain and "END" in plain and plain.replace("│", "").count("x") >= 150
    assert plain.rstrip().endswith("verdict line")


def test_pager_is_less_with_systemd_flags_and_off_with_no_pager(make_tty, monkeypatch, tmp_path):
    tty = make_tty()
    seen = tmp_path / "seen"
    monkeypatch.setenv("PCRTOOL_PAGER", f"sh -c 'echo \"$LESS\" > {seen}; cat > {seen}.text'")
    monkeypatch.delenv("LESS", raising=False)
    render.configure(render.OutputOptions(pager=True))
    render.emit_text("paged\n")
    assert seen.read_text().strip() == "FRSXMK" and (tmp_path / "seen.text").read_text() == "paged\n"
    assert tty.getvalue() == ""
    render.configure(render.OutputOptions(pager=False))
    render.emit_text("direct\n")
    assert tty.getvalue() == "direct\n"


def test_eventlog_verify_ends_with_a_one_line_verdict():
    log = ROOT / "eventlogs/ovmf-sb-off/eventlog.bin"
    good = run("eventlog", "verify", log, "--pcrs", log.parent / "pcrs.json")
    assert good.returncode == 0, good.stderr
    assert good.stdout.splitlines()[-1].startswith("OK: the log replays to all ")
    assert run("eventlog", "verify", log, "--pcrs", log.parent / "pcrs.json", "--no-legend").stdout \
        .splitlines()[-1].startswith("OK") is False
    bad = ROOT / "eventlogs/ovmf-sb-own/pcrs.json"
    p = run("eventlog", "verify", log, "--pcrs", bad)
    assert p.returncode == 3 and p.stdout.splitlines()[-1].startswith("MISMATCH: PCR 0, 4, 7 differ")


def test_predict_uki_text_prints_phase_labels_as_systemd_measure(tmp_path):
    measure = "/usr/lib/systemd/systemd-measure"
    from tests.support import need_tool
    need_tool(measure)
    (tmp_path / "linux").write_bytes(b"kernel" * 10)
    (tmp_path / "osrel").write_bytes(b"ID=x\n")
    args = ["--linux", tmp_path / "linux", "--osrel", tmp_path / "osrel"]
    oracle = subprocess.run([measure, "calculate", *[f"{a}={b}" for a, b in zip(args[::2], args[1::2])]],
                            capture_output=True, text=True, check=True)
    ours = run("predict", "uki", *args)
    assert ours.stdout == oracle.stdout and ours.stderr == oracle.stderr
    assert oracle.stderr.startswith("# PCR[11] Phase <enter-initrd>\n")


def test_shell_completion_is_offered_and_completes_sub_command_options(tmp_path):
    p = run("--show-completion", "bash")
    assert p.returncode == 0 and "_PCRTOOL_COMPLETE=complete_bash" in p.stdout
    env = {**os.environ, "_PCRTOOL_COMPLETE": "complete_bash", "COMP_WORDS": "pcrtool policy approve --f",
           "COMP_CWORD": "3"}
    assert run(env=env).stdout.split() == ["--force"]
    env |= {"COMP_WORDS": "pcrtool policy ", "COMP_CWORD": "2"}
    assert run(env=env).stdout.split() == ["digest", "approve", "prepare", "attach", "show"]
    home = {**os.environ, "HOME": str(tmp_path), "SHELL": "/bin/bash"}
    p = run("--install-completion", "bash", env=home)
    assert p.returncode == 0, p.stderr
    assert "pcrtool" in (tmp_path / ".bashrc").read_text() + "".join(
        f.read_text() for f in tmp_path.rglob("*") if f.is_file())


#: One JSON key style per document family (README "JSON key style"). pcrtool's own documents use
#: snake_case, offline-signing documents (format version 2) included; the event-log and dm-verity
#: families use camelCase (the TCG structures' field names, systemd's verity-sig
#: ``rootHash``/``certificateFingerprint``). systemd-defined formats (.pcrsig,
#: pcrlock, CEL-JSON, systemd-dissect-like ``ddi inspect``) keep systemd's keys and are not checked.
STYLES = {"snake": r"[a-z0-9]+(_[a-z0-9]+)*", "camel": r"[a-z][a-zA-Z0-9]*", "kebab": r"[a-z0-9]+(-[a-z0-9]+)*"}
FAMILY_STYLE = {"eventlog": "camel", "verity": "camel", "predict": "snake", "policy": "snake", "key": "snake",
                "clevis": "snake", "pe": "snake", "tpm": "snake", "validate": "snake", "swtpm": "snake",
                "demo": "snake"}
#: Containers whose keys are data (bank names, PCR indexes, UEFI variable names), not field names.
DATA_KEYED = {"databases", "pcrs", "digests", "values", "banks", "pcr_values", "selection"}


def key_style_violations(doc, style: str, where: str = "") -> list[str]:
    import re
    bad = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not re.fullmatch(STYLES[style], str(k)):
                bad.append(f"{where}.{k}")
            if str(k) not in DATA_KEYED:
                bad += key_style_violations(v, style, f"{where}.{k}")
    elif isinstance(doc, list):
        for v in doc:
            bad += key_style_violations(v, style, f"{where}[]")
    return bad


def test_key_style_checker_catches_each_foreign_style():
    assert key_style_violations({"rootHash": 1, "a": [{"created-by": 2}], "pcrs": {"KEK": 1}}, "snake") == \
        [".rootHash", ".a[].created-by"]
    assert key_style_violations({"table_ok": 1, "signWith": 2}, "camel") == [".table_ok"]


def test_json_key_style_per_family(tmp_path):
    d = tmp_path
    log = ROOT / "eventlogs/ovmf-sb-off/eventlog.bin"
    stub = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
    (d / "linux").write_bytes(b"kernel")
    (d / "data.img").write_bytes(bytes(range(256)) * 64)
    (d / "m.toml").write_text('name = "x"\nversion = "1"\nsvn = 1\n[values]\n"11" = {sha256 = "' + "ab" * 32 + '"}\n')
    run("key", "generate", d / "k.pem", "--public-output", d / "pub.pem")
    run("predict", "release", d / "m.toml", "-o", d / "p.json")
    run("policy", "approve", "-r", d / "p.json", "-k", d / "k.pem", "-o", d / "a.pcrsig")
    root = "cd" * 32
    commands = [
        ["eventlog", "show", log], ["eventlog", "replay", log], ["eventlog", "secureboot", log],
        ["eventlog", "verify", log, "--pcrs", log.parent / "pcrs.json"],
        ["predict", "uki", "--linux", d / "linux"], ["predict", "pe", stub], ["predict", "secureboot"],
        ["predict", "cmdline", "quiet"], ["predict", "release", d / "m.toml"],
        ["policy", "digest", "-k", d / "pub.pem", "--pcr-values", "11:sha256=" + "00" * 32],
        ["policy", "approve", "-r", d / "p.json", "-k", d / "k.pem"], ["policy", "show", d / "a.pcrsig"],
        ["key", "show", d / "k.pem"], ["key", "fingerprint", d / "k.pem"], ["key", "public", d / "k.pem"],
        ["pe", "hash", stub], ["pe", "inspect", stub], ["pe", "verify", stub],
        ["verity", "format", d / "data.img", d / "data.hash", "--seed", "0" * 8 + "-0000-0000-0000-" + "0" * 12],
        ["verity", "prepare", root, "-o", d / "v.sign-request.json"],
    ]
    checked = 0
    for args in commands:
        p = run(*args, "--json=short")
        assert p.returncode in (0, 3), (args, p.stderr)
        assert key_style_violations(json.loads(p.stdout), FAMILY_STYLE[args[0]]) == [], args
        checked += 1
    # pcrtool's own files read back: predictions (snake_case, like the CLI's documents)
    assert key_style_violations(json.loads((d / "p.json").read_text()), "snake") == []
    # offline-signing request manifests (format version 2): snake_case, "extra" and contexts included
    request = json.loads((d / "v.sign-request.json").read_text())
    assert request["format"] == "pcrtool-sign-request/2" and request["extra"] == {"root_hash": root}
    assert key_style_violations(request, "snake") == []
    # and what the signing host prints about it (the decoded summary that --expect pins)
    shown = json.loads(run("sign-request", "show", d / "v.sign-request.json", "--json=short").stdout)
    assert shown["summary"]["format"] == "pcrtool-sign-summary/2"
    assert key_style_violations(shown, "snake") == []
    assert checked == len(commands)
