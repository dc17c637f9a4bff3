"""`pcrtool clevis`: install the clevis pin (the two executables, an initramfs-tools hook, a dracut
module) and run it (``encrypt``/``decrypt``). The pin itself is ``pcrtool.clevis.pin`` (no typer,
no rich on its decrypt path); what an initramfs needs is listed by ``pcrtool.clevis.initramfs``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from pcrtool.cli.common import new_app
from pcrtool.clevis.pin import PIN, decrypt_main, encrypt_main

app = new_app("clevis pin (clevis-encrypt-pcrtool / clevis-decrypt-pcrtool) for LUKS2 unlock.")


HOOK = "pcrtool-clevis"
DRACUT_MODULE = "60clevis-pin-pcrtool"


def _generator() -> str:
    """The shell command that runs ``pcrtool.clevis.initramfs`` with this Python (and PYTHONPATH)."""
    import shlex

    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " if os.environ.get("PYTHONPATH") else ""
    return f"{env}{shlex.quote(sys.executable)} -m pcrtool.clevis.initramfs"


def _boot_script(template: str, tcti_modules: list[str], approvals: list[Path]) -> str:
    import shlex
    from importlib import resources

    args = [f"--tcti {shlex.quote(t)}" for t in tcti_modules] + [f"--approvals {shlex.quote(str(a))}" for a in approvals]
    text = resources.files("pcrtool").joinpath("data", "clevis", template).read_text()
    return text.replace("@GENERATOR@", _generator()).replace("@ARGS@", " ".join(args))


@app.command()
def install(
    directory: Path = typer.Option(Path("/usr/local/bin"), "--dir", help="Where to write the two pin executables."),
    force: bool = typer.Option(False, "--force", help="Replace existing files."),
    initramfs: bool = typer.Option(False, "--initramfs", help=f"Also write the initramfs-tools hook "
                                   f"{HOOK} into --hooks-dir (then: update-initramfs -u)."),
    hooks_dir: Path = typer.Option(Path("/etc/initramfs-tools/hooks"), "--hooks-dir",
                                   help="Where --initramfs writes its hook."),
    dracut: bool = typer.Option(False, "--dracut", help=f"Also write the dracut module {DRACUT_MODULE} "
                                "into --dracut-dir (then: dracut -f)."),
    dracut_dir: Path = typer.Option(Path("/usr/lib/dracut/modules.d"), "--dracut-dir",
                                    help="Where --dracut writes its module."),
    tcti_module: list[str] = typer.Option(["device"], "--tcti-module", help="libtss2 TCTI module the initramfs "
                                          "gets (repeat: device, swtpm, mssim …)."),
    approvals: list[Path] = typer.Option([Path("/etc/pcrtool/approvals.pcrsig")], "--approvals", "-a",
                                         help="Approvals file(s) the initramfs gets (the pin's \"approvals\"; "
                                              "rebuild the initramfs after each `policy approve`)."),
) -> None:
    """Write clevis-encrypt-pcrtool and clevis-decrypt-pcrtool (running this Python) into --dir;
    --initramfs / --dracut also write the boot hook that puts the pin into the initramfs."""
    from pcrtool import fileio, render

    env = f'PYTHONPATH={os.environ["PYTHONPATH"]!r} ' if os.environ.get("PYTHONPATH") else ""
    written = []
    directory.mkdir(parents=True, exist_ok=True)
    for verb in ("encrypt", "decrypt"):
        path = directory / f"clevis-{verb}-{PIN}"
        script = (f"#!/bin/sh\n# clevis pin written by `pcrtool clevis install` (see pcrtool/clevis/pin.py)\n"
                  f'{env}exec {sys.executable!s} -m pcrtool.clevis.pin {verb} "$@"\n')
        fileio.write_atomic(path, script, mode=0o755, overwrite=force, what="pin executable")
        written.append(str(path))
    if initramfs:
        hooks_dir.mkdir(parents=True, exist_ok=True)
        fileio.write_atomic(hooks_dir / HOOK, _boot_script("initramfs-tools-hook", tcti_module, approvals),
                            mode=0o755, overwrite=force, what="initramfs-tools hook")
        written.append(str(hooks_dir / HOOK))
    if dracut:
        (dracut_dir / DRACUT_MODULE).mkdir(parents=True, exist_ok=True)
        path = dracut_dir / DRACUT_MODULE / "module-setup.sh"
        fileio.write_atomic(path, _boot_script("dracut-module-setup.sh", tcti_module, approvals), mode=0o755,
                            overwrite=force, what="dracut module")
        written.append(str(path))
    render.emit({"installed": written}, text="\n".join(written))


@app.command("encrypt")
def encrypt_cmd(config: str = typer.Argument(..., help="JSON configuration (see pcrtool/clevis/pin.py).")) -> None:
    """clevis-encrypt-pcrtool CONFIG: read the plaintext on stdin, write the compact JWE."""
    raise typer.Exit(encrypt_main([config]))


@app.command("decrypt")
def decrypt_cmd() -> None:
    """clevis-decrypt-pcrtool: read the compact JWE on stdin, write the plaintext."""
    raise typer.Exit(decrypt_main([]))

