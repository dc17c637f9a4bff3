"""Helpers shared by the sub-command modules."""

from __future__ import annotations

import typer


def new_app(help: str) -> typer.Typer:
    """A sub-command group with pcrtool's conventions (-h, no completion noise)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False,
                       context_settings={"help_option_names": ["-h", "--help"]})
