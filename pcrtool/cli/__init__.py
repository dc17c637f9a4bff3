"""pcrtool's command line: a thin layer over the library.

Sub-commands are imported lazily (``pcrtool --help`` imports none of them) so the CLI starts fast.
Each sub-command module exposes ``app`` (a ``typer.Typer``). Global options are accepted anywhere on
the command line (before or after the sub-command): ``--json=short|pretty|off``, ``-j``,
``--no-pager``, ``--no-legend``, ``--debug``.

Exit codes: 0 ok, 1 error, 2 usage, 3 verify/replay mismatch, 4 policy refused, 5 TPM unavailable.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer
try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException
from typer.core import TyperGroup

from pcrtool import render

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "eventlog": ("pcrtool.cli.eventlog", "Parse, decode, replay and verify firmware event logs."),
    "predict": ("pcrtool.cli.predict", "Predict the PCR values a release will produce."),
    "policy": ("pcrtool.cli.policy", "Compute policy digests and sign release approvals (.pcrsig)."),
    "tpm": ("pcrtool.cli.tpm", "Talk to a TPM: PCRs, NV, enrol, unlock, advance the floor."),
    "swtpm": ("pcrtool.cli.swtpm", "Run a software TPM (swtpm) for tests and CI."),
    "validate": ("pcrtool.cli.validate", "Prove the unlock/downgrade matrix of releases on swtpm."),
    "validate-systemd": ("pcrtool.cli.validate_systemd",
                         "Validate systemd's own unlock (cryptenroll, creds, pcrlock) of pcrtool's artefacts on swtpm."),
    "pe": ("pcrtool.cli.pe", "Authenticode: hash, inspect, sign and verify PE/UKI binaries."),
    "pcrlock": ("pcrtool.cli.pcrlock", "systemd-pcrlock: write .pcrlock records and pcrlock.d trees, read pcrlock.json."),
    "verity": ("pcrtool.cli.verity", "dm-verity: hash trees, root hashes and their signatures."),
    "ddi": ("pcrtool.cli.ddi", "Discoverable Disk Images: inspect, verify, build and sign sysext/confext DDIs."),
    "key": ("pcrtool.cli.key", "Generate and inspect signing keys."),
    "sign-request": ("pcrtool.cli.sign_request", "Inspect and sign offline signing requests."),
    "clevis": ("pcrtool.cli.clevis", "clevis pin (clevis luks bind -d DEV pcrtool CONFIG): install, encrypt, decrypt."),
    "demo": ("pcrtool.cli.demo", "Run the bundled end-to-end demo (ephemeral key, swtpm matrix)."),
}

_GLOBAL_HELP = """\
Measured-boot toolkit: event logs, PCR prediction, signed PCR policies with downgrade
protection, Authenticode and dm-verity signing.

Global options (accepted anywhere): --json=short|pretty|off, -j, --no-pager, --no-legend, --debug.

Exit codes: 0 ok, 1 error, 2 usage, 3 verify/replay mismatch, 4 policy refused, 5 TPM unavailable.
"""


class LazyGroup(TyperGroup):
    """A group whose sub-commands are imported only when they are used."""

    def list_commands(self, ctx):  # noqa: D401 - click API
        return list(SUBCOMMANDS)

    def get_command(self, ctx, name):
        entry = SUBCOMMANDS.get(name)
        if entry is None:
            return None
        module_name, short_help = entry
        if _listing_only(ctx):
            # `pcrtool --help` wants only names and one-line help: do not import the module.
            return _Placeholder(name=name, help=short_help, short_help=short_help)
        module = importlib.import_module(module_name)
        command = typer.main.get_command(module.app)
        command.name = name
        if not command.help:
            command.help = short_help
        return command


def _listing_only(ctx) -> bool:
    # Only root --help: shell completion (resilient parsing) needs the real sub-commands' options.
    return bool(_state["listing"])


class _Placeholder(typer.core.TyperCommand):
    pass


app = typer.Typer(cls=LazyGroup, help=_GLOBAL_HELP, no_args_is_help=True, add_completion=True,
                  rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        from pcrtool import __version__
        print(f"pcrtool {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None and not ctx.resilient_parsing:
        print(ctx.get_help())
        raise typer.Exit(0)


def _extract_global_options(argv: list[str]) -> tuple[list[str], render.OutputOptions]:
    """Take the global options out of argv wherever they stand (before a ``--``)."""
    opts = render.OutputOptions()
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg == "--json" or arg.startswith("--json="):
            if "=" in arg:
                value = arg.split("=", 1)[1]
            elif i + 1 < len(argv) and argv[i + 1] in ("short", "pretty", "off"):
                value = argv[i + 1]
                i += 1
            else:
                value = "pretty"
            if value not in ("short", "pretty", "off"):
                render.die_usage(f"--json takes short, pretty or off, not {value!r}")
            opts.json = value
        elif arg == "-j":
            opts.json = "pretty" if sys.stdout.isatty() else "short"
        elif arg == "--no-pager":
            opts.pager = False
        elif arg == "--no-legend":
            opts.legend = False
        elif arg == "--debug":
            opts.debug = True
        else:
            rest.append(arg)
        i += 1
    if os.environ.get("PCRTOOL_DEBUG"):
        opts.debug = True
    return rest, opts


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI and map errors to exit codes."""
    from pcrtool.errors import EXIT_ERROR, PcrtoolError

    args, opts = _extract_global_options(list(sys.argv[1:] if argv is None else argv))
    render.configure(opts)
    if args in ([], ["-h"], ["--help"]) and "_PCRTOOL_COMPLETE" not in os.environ:
        # Root help lists sub-commands without importing them.
        _state["listing"] = True
        sys.exit(_invoke(args))
    try:
        code = _invoke(args)
    except PcrtoolError as e:
        if opts.debug:
            import traceback
            traceback.print_exc()
        render.error(e.message, e.hint)
        code = e.exit_code
    except KeyboardInterrupt:
        render.error("interrupted")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback unless --debug
        if opts.debug:
            raise
        render.error(f"internal error: {type(e).__name__}: {e}",
                     "this is a bug in pcrtool; rerun with --debug and report the traceback")
        code = EXIT_ERROR
    sys.exit(code)


_state = {"listing": False}  # True while printing root help: sub-commands are not imported


def _invoke(args: list[str]) -> int:
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="pcrtool", standalone_mode=False)
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        render.error("aborted")
        return 1
    except ClickException as e:
        e.show()
        return e.exit_code
    return rv if isinstance(rv, int) else 0
