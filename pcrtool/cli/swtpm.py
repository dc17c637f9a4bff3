"""`pcrtool swtpm run`: a software TPM for users' own CI and experiments."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Run a software TPM (swtpm) for tests and CI.")


@app.callback()
def _group() -> None:
    """Run a software TPM (swtpm) for tests and CI."""


@app.command("run")
def run_swtpm(
    state: Optional[Path] = typer.Option(None, "--state", metavar="DIR",
                                         help="Keep the TPM state (NV, seeds) in DIR across runs."),
) -> None:
    """Start swtpm (TPM 2.0) on a private unix socket, print its TCTI, run until Ctrl-C / SIGTERM.

    Use the printed line with `pcrtool … --tcti`, `PCRTOOL_TCTI`, `TPM2TOOLS_TCTI` or
    `SYSTEMD_TPM2_DEVICE`.
    """
    import signal
    import subprocess

    from pcrtool import render
    from pcrtool.swtpm import Swtpm

    def _term(signum, frame):  # SIGTERM ends like Ctrl-C: stop swtpm, remove the temp dir
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    try:
        with Swtpm.start(state) as sw:
            data = {"tcti": sw.tcti, "pid": sw.pid, "state": str(sw.state_dir),
                    "persistent": state is not None}
            render.emit(data, text=sw.tcti)
            render.info(f"swtpm pid {sw.pid} running; state in {sw.state_dir}"
                        f"{'' if state else ' (removed on exit)'}; press Ctrl-C to stop")
            while True:
                try:
                    sw.process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            render.warn(f"swtpm exited by itself (code {sw.process.returncode})")
            raise typer.Exit(1)
    except KeyboardInterrupt:
        pass  # the with block stopped swtpm and removed its temp dir
    return None


@app.command("reboot")
def reboot_swtpm(
    tcti: Optional[str] = typer.Option(None, "--tcti", "-T", metavar="TCTI",
                                       help="swtpm:path=… as `pcrtool swtpm run` printed it (default: $PCRTOOL_TCTI)"),
    startup_locality: int = typer.Option(0, "--startup-locality",
                                         help="issue TPM2_Startup from locality 3 (PCR 0 starts at 0…03) or 0"),
    unclean: bool = typer.Option(False, "--unclean", help="power loss: no TPM2_Shutdown first"),
) -> None:
    """Power-cycle a running swtpm: PCRs reset, NV kept (TPM2_Shutdown, _TPM_Init, TPM2_Startup)."""
    from pcrtool import render
    from pcrtool.swtpm import SwtpmControl
    from pcrtool.tpm import resolve_tcti

    control = SwtpmControl.from_tcti(resolve_tcti(tcti))
    if unclean:
        control.reset_unclean(startup_locality=startup_locality)
    else:
        control.reboot(startup_locality=startup_locality)
    render.emit({"tcti": control.tcti, "clean": not unclean, "startup_locality": startup_locality},
                text=f"rebooted {control.tcti}{' (unclean)' if unclean else ''}")
