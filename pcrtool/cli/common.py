"""Helpers shared by the sub-command modules."""

from __future__ import annotations

import typer


def new_app(help: str) -> typer.Typer:
    """A sub-command group with pcrtool's conventions (-h, no completion noise)."""
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False,
                       context_settings={"help_option_names": ["-h", "--help"]})


class NewFilesOnly:
    """A multi-file output that is all or nothing: ``with NewFilesOnly(paths): write them``; on any
    error the files among ``paths`` that did not exist before are removed again (files that
    existed are only ever replaced atomically, so write the one that may replace a file last)."""

    def __init__(self, paths) -> None:
        from pathlib import Path

        self.paths = [Path(p) for p in paths]
        self.fresh = [p for p in self.paths if not (p.exists() or p.is_symlink())]

    def __enter__(self) -> "NewFilesOnly":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            return
        for p in self.fresh:
            try:
                if p.is_file() and not p.is_symlink():
                    p.unlink()
            except OSError:
                pass
