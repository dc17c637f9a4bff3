"""CLI conventions shared by every command: help, global options, exit codes, no tracebacks."""

import subprocess
import sys

from pcrtool.cli import SUBCOMMANDS, _extract_global_options

from tests.support.cli import run_pcrtool


def run(*args, **kw):
    return run_pcrtool(*args, timeout=60, **kw)


def test_root_help_lists_every_subcommand_and_exits_0():
    proc = run("--help")
    assert proc.returncode == 0
    for name in SUBCOMMANDS:
        assert name in proc.stdout


def test_root_help_imports_no_subcommand_module():
    code = ("import sys; from pcrtool.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('pcrtool.cli.') and m != 'pcrtool.cli.root'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_every_subcommand_has_help():
    for name in SUBCOMMANDS:
        proc = run(name, "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_unknown_option_is_usage_error_exit_2():
    proc = run("--no-such-option")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_global_options_are_accepted_anywhere():
    rest, opts = _extract_global_options(["eventlog", "show", "x", "--json=pretty", "--no-legend", "--debug"])
    assert rest == ["eventlog", "show", "x"]
    assert (opts.json, opts.legend, opts.debug) == ("pretty", False, True)
    rest, opts = _extract_global_options(["--json", "short", "tpm", "--", "--json"])
    assert rest == ["tpm", "--", "--json"] and opts.json == "short"


def test_bad_json_mode_is_usage_error():
    proc = run("--json=yaml", "eventlog")
    assert proc.returncode == 2
    assert "--json takes short, pretty or off" in proc.stderr


def test_version():
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("pcrtool ")
