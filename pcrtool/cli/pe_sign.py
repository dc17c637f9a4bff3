"""`pcrtool pe sign`, runnable without Typer.

``run`` is what the ``pe sign`` command does (``pcrtool.cli.pe`` calls it with Typer's
parameters). ``parse`` reads the same command line for ``pcrtool.cli.main``'s fast path: signing
a release's PE set is the command whose start-up matters (see bench/pe_bench.py), and Typer
and click alone take ~30 ms to import. ``parse`` accepts only a plain subset of what click
accepts and returns None for anything else (help, an unknown or repeated option, an attached
short value, a missing value or required option, ``--``, completion): such a command line goes
through Typer, so help, errors and exit codes stay Typer's own. tests/cli/test_pe_sign_fast.py
holds ``OPTIONS`` equal to the Typer command's options and ``parse`` equal to click's parse.
"""

from __future__ import annotations

import os

#: option spelling -> (parameter, takes a value, repeatable), as the Typer command declares them.
OPTIONS = {
    "--key": ("key", True, False), "-k": ("key", True, False),
    "--cert": ("cert", True, False), "--certificate": ("cert", True, False), "-c": ("cert", True, False),
    "--output": ("output", True, False), "-o": ("output", True, False),
    "--suffix": ("suffix", True, False),
    "--hash": ("hash_name", True, False),
    "--chain": ("chain", True, True),
    "--detached": ("detached", False, False),
}
DEFAULTS = {"key": None, "cert": None, "output": None, "suffix": None, "hash_name": "sha256", "chain": [],
            "detached": False}


def parse(args: list[str]) -> dict | None:
    """The parameters of ``pe sign ARGS`` ({"files": [...], "key": ..., ...}), or None when the
    command line is anything but plain (then Typer parses it)."""
    if "_PCRTOOL_COMPLETE" in os.environ:
        return None
    params = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    seen: set[str] = set()
    files: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            files.append(arg)
            i += 1
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = OPTIONS.get(name)
        if spec is None:
            return None                      # help, --, -, unknown, or -kVALUE: Typer's
        param, takes_value, repeatable = spec
        if param in seen and not repeatable:
            return None
        seen.add(param)
        if not takes_value:
            if eq:
                return None
            params[param] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            value = args[i + 1]
            i += 1
        if repeatable:
            params[param].append(value)
        else:
            params[param] = value
        i += 1
    if not files or params["key"] is None:
        return None
    params["files"] = files
    return params


def run(files: list[str], *, key: str, cert: str | None, output: str | None, suffix: str | None,
        hash_name: str, chain: list[str], detached: bool) -> None:
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.model import HashAlg
    from pcrtool.pe.files import sign_files, sign_outputs, signing_time

    if key.strip() == "offline":
        raise UsageError("--key offline: use 'pcrtool pe prepare' to write a signing request")
    outputs = sign_outputs(list(files), output, suffix)
    alg = HashAlg.from_name(hash_name)
    when = signing_time()
    for file, out in sign_files(list(files), outputs, key=key, cert=cert, alg=alg, when=when, chain=list(chain),
                                detached=detached):
        render.info(f"wrote PKCS#7 for {file} to {out}" if detached else f"signed {file} -> {out}")
