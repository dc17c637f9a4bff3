"""The Typer application behind ``pcrtool.cli.main``: the root group, whose sub-commands are
imported only when used, and the call into click."""

from __future__ import annotations

import importlib

import typer
try:  # typer >= 0.22 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException
from typer.core import TyperGroup

from pcrtool import render
from pcrtool.cli import _GLOBAL_HELP, SUBCOMMANDS, _state


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


def invoke(args: list[str]) -> int:
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
