"""Output: JSON on stdout (never through rich), tables (rich only on a TTY), diagnostics on stderr.

The CLI configures an ``OutputOptions`` once; commands call ``emit``/``emit_table``/``warn``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(slots=True)
class OutputOptions:
    json: str = "off"          # off | short | pretty
    pager: bool = True
    legend: bool = True
    debug: bool = False


_options = OutputOptions()


def configure(options: OutputOptions) -> None:
    global _options
    _options = options


def options() -> OutputOptions:
    return _options


def json_mode() -> bool:
    return _options.json != "off"


def dumps(data: Any) -> str:
    if _options.json == "pretty":
        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    return json.dumps(data, separators=(",", ":")) + "\n"


def emit_json(data: Any) -> None:
    sys.stdout.write(dumps(data))
    sys.stdout.flush()


def emit_text(text: str) -> None:
    """Text on stdout, through a pager on a terminal as systemd tools do: $PCRTOOL_PAGER, else
    $PAGER, else ``less``, with ``LESS=FRSXMK`` unless set (-F: no pager when it fits one screen);
    ``--no-pager``, a pager of ``cat`` or an empty one, or a non-terminal stdout write directly."""
    if not text.endswith("\n"):
        text += "\n"
    if _options.pager and sys.stdout.isatty():
        pager = os.environ.get("PCRTOOL_PAGER", os.environ.get("PAGER", "less"))
        if pager.strip() not in ("", "cat") and _page(text, pager):
            return
    sys.stdout.write(text)
    sys.stdout.flush()


def _page(text: str, pager: str) -> bool:
    import shlex
    import subprocess

    env = dict(os.environ)
    env.setdefault("LESS", "FRSXMK")
    env.setdefault("LESSCHARSET", "utf-8")
    sys.stdout.flush()
    try:
        proc = subprocess.Popen(shlex.split(pager), stdin=subprocess.PIPE, env=env)
    except (OSError, ValueError):
        return False  # no such pager: print directly, as systemd does
    try:
        proc.communicate(text.encode())
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    return True


@dataclass(slots=True)
class Table:
    """A table: rich on a TTY, plain aligned columns otherwise (header unless --no-legend)."""

    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    title: str | None = None
    footer: str | None = None  # one line after the table (a verdict, a count); hidden by --no-legend

    def add(self, *cells: Any) -> None:
        self.rows.append([("" if c is None else str(c)) for c in cells])


def emit(data: Any, *, table: Table | None = None, text: str | None = None) -> None:
    """Print ``data`` as JSON in JSON mode, else the table or text rendering."""
    if json_mode():
        emit_json(data)
    elif table is not None:
        emit_table(table)
    elif text is not None:
        emit_text(text)
    else:
        emit_json(data)


def emit_table(table: Table) -> None:
    footer = f"\n{table.footer}" if table.footer and _options.legend else ""
    if sys.stdout.isatty():
        import io

        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table as RichTable

        # Cells are data, never markup ("[sha1,sha256]" must stay visible); long cells fold
        # onto the next line instead of being cut with an ellipsis.
        rt = RichTable(title=escape(table.title) if table.title else None, show_header=_options.legend)
        for c in table.columns:
            rt.add_column(escape(c), overflow="fold")
        for r in table.rows:
            rt.add_row(*[escape(str(c)) for c in r])
        buf = io.StringIO()
        Console(file=buf, force_terminal=True, width=_terminal_columns()).print(rt)
        emit_text(buf.getvalue().rstrip("\n") + footer)
        return
    rows = [list(map(str, r)) for r in table.rows]
    widths = [len(c) for c in table.columns] if _options.legend else [0] * len(table.columns)
    for r in rows:
        for i, c in enumerate(r[: len(widths)]):
            widths[i] = max(widths[i], len(c))
    lines = []
    if _options.legend:
        lines.append("  ".join(c.upper().ljust(w) for c, w in zip(table.columns, widths)).rstrip())
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    emit_text("\n".join(lines) + footer)


def _terminal_columns() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 80


def warn(message: str) -> None:
    print(f"pcrtool: warning: {message}", file=sys.stderr)


def info(message: str) -> None:
    print(message, file=sys.stderr)


def error(message: str, hint: str | None = None) -> None:
    line = f"pcrtool: error: {message}"
    if hint:
        line += f" (hint: {hint})"
    print(line, file=sys.stderr)


def die_usage(message: str) -> None:
    error(message, "see pcrtool --help")
    sys.exit(2)
