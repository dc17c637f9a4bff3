"""pcrtool's command line: a thin layer over the library.

Sub-commands are imported lazily (``pcrtool --help`` imports none of them) so the CLI starts fast.
Each sub-command module exposes ``app`` (a ``typer.Typer``). Global options are accepted anywhere on
the command line (before or after the sub-command): ``--json=short|pretty|off``, ``-j``,
``--no-pager``, ``--no-legend``, ``--debug``.

Exit codes: 0 ok, 1 error, 2 usage, 3 verify/replay mismatch, 4 policy refused, 5 TPM unavailable.
"""

from __future__ import annotations

import os
import sys

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
    if argv is None and _state["fast"]:
        # A whole process that ran the Typer-free `pe sign` (the console script, python -m):
        # everything is written and closed, the checksum child reaped, the hashing thread done;
        # skip the interpreter's teardown of ~150 modules (~10-20 ms of CPU). Only output
        # buffers need flushing; pcrtool registers no atexit work on this path.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - e.g. a closed pipe: the exit code still counts
                pass
        os._exit(code)
    sys.exit(code)


_state = {"listing": False,   # True while printing root help: sub-commands are not imported
          "fast": False}     # True once `pe sign` ran without Typer (main may skip the teardown)


def _invoke(args: list[str]) -> int:
    if args[:2] == ["pe", "sign"]:
        # Signing a release's PE set: parsed without Typer when the command line is plain
        # (pcrtool.cli.pe_sign says why and how it stays equal to Typer's parse).
        from pcrtool.cli import pe_sign
        params = pe_sign.parse(args[2:])
        if params is not None:
            _state["fast"] = True
            pe_sign.run(params.pop("files"), **params)
            return 0
    from pcrtool.cli.root import invoke
    return invoke(args)


def __getattr__(name: str):
    # The Typer application is built on first use (``pcrtool --version`` and friends need it;
    # ``pe sign`` usually does not).
    if name in ("app", "LazyGroup"):
        from pcrtool.cli import root
        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
