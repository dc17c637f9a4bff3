"""One way for tests to run the CLI: ``run_pcrtool`` (a child process, what users run) and
``run_pcrtool_in_process`` (through ``pcrtool.cli.main``, fast). Both return a
``subprocess.CompletedProcess`` with text stdout/stderr (``run_pcrtool(..., text=False)``: bytes); ``check=True`` turns a non-zero exit into
an assertion that shows stderr. Without ``--debug`` a traceback on stderr always fails the test
(the house rule: bad input gives a one-line error, never a traceback)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

PCRTOOL = [sys.executable, "-m", "pcrtool"]


def _checked(proc: subprocess.CompletedProcess, args: tuple, check: bool) -> subprocess.CompletedProcess:
    err = proc.stderr if isinstance(proc.stderr, str) else (proc.stderr or b"").decode(errors="replace")
    if "--debug" not in args:
        assert "Traceback (most recent call last)" not in err, err
    if check and proc.returncode != 0:
        raise AssertionError(f"pcrtool {' '.join(args)} exited {proc.returncode}: {err}")
    return proc


def run_pcrtool(*args, env: dict | None = None, cwd=None, check: bool = False, input: str | bytes | None = None,
                timeout: float = 120, unset: tuple[str, ...] = (), text: bool = True) -> subprocess.CompletedProcess:
    """``pcrtool ARGS`` in a new interpreter; ``env`` adds to this process' environment and the
    names in ``unset`` are removed from it."""
    args = tuple(map(str, args))
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    full_env.update(env or {})
    proc = subprocess.run([*PCRTOOL, *args], capture_output=True, text=text, env=full_env, cwd=cwd,
                          input=input, timeout=timeout)
    return _checked(proc, args, check)


def run_pcrtool_in_process(*args, env: dict | None = None, cwd=None,
                           check: bool = False) -> subprocess.CompletedProcess:
    """``pcrtool ARGS`` through ``pcrtool.cli.main`` in this process (environment, working
    directory and output options are restored afterwards)."""
    from pcrtool import render
    from pcrtool.cli import main

    args = tuple(map(str, args))
    out, err = io.StringIO(), io.StringIO()
    saved_render = render.options()
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        render.configure(saved_render)
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return _checked(subprocess.CompletedProcess(["pcrtool", *args], code, out.getvalue(), err.getvalue()),
                    args, check)
