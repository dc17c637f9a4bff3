"""The TPM adapter: the only part of pcrtool that imports tpm2-pytss.

    from pcrtool.tpm import open_tpm
    with open_tpm("swtpm:path=/tmp/…/tpm.sock") as tpm:
        tpm.read_pcrs(PcrSelection.parse("sha256:0,7"))

The TCTI comes from the argument, else ``$PCRTOOL_TCTI``, else ``device:/dev/tpmrm0``. Importing
this package never needs tpm2-pytss; ``open_tpm`` raises ``TpmUnavailable`` (exit 5) with an
install hint when tpm2-pytss or libtss2 is missing or no TPM answers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pcrtool.errors import TpmUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from pcrtool.tpm.device import Tpm

DEFAULT_TCTI = "device:/dev/tpmrm0"
INSTALL_HINT = "pip install 'pcrtool[tpm]' (tpm2-pytss) and apt-get install libtss2-dev"

__all__ = ["open_tpm", "resolve_tcti", "load_pytss", "DEFAULT_TCTI", "Tpm"]


def resolve_tcti(tcti: str | None = None) -> str:
    """``--tcti`` wins, then ``$PCRTOOL_TCTI``, then ``device:/dev/tpmrm0``; a bare device path
    (``/dev/tpm0``) is accepted as ``device:/dev/tpm0``."""
    chosen = tcti or os.environ.get("PCRTOOL_TCTI") or DEFAULT_TCTI
    if chosen.startswith("/dev/"):
        chosen = f"device:{chosen}"
    return chosen


def load_pytss():
    """Import tpm2-pytss, or raise TpmUnavailable naming what to install.

    libtss2 logs expected TPM failures on stderr; pcrtool reports them itself, so its logging is
    off unless TSS2_LOG is set (or --debug/PCRTOOL_DEBUG asks for it)."""
    if not os.environ.get("PCRTOOL_DEBUG"):
        os.environ.setdefault("TSS2_LOG", "all+none")
    try:
        import tpm2_pytss  # noqa: F401
        from tpm2_pytss import ESAPI  # noqa: F401  (loads libtss2-esys)
    except ImportError as e:
        raise TpmUnavailable(f"tpm2-pytss is not usable: {e}", hint=INSTALL_HINT) from None
    except OSError as e:  # libtss2 shared objects missing
        raise TpmUnavailable(f"libtss2 is not usable: {e}", hint=INSTALL_HINT) from None
    return tpm2_pytss


def open_tpm(tcti: str | None = None) -> "Tpm":
    """Open the TPM behind ``tcti`` (an ESAPI context; use as a context manager)."""
    load_pytss()
    from pcrtool.tpm.device import Tpm

    return Tpm.open(resolve_tcti(tcti))


def __getattr__(name: str):
    if name == "Tpm":
        load_pytss()
        from pcrtool.tpm.device import Tpm

        return Tpm
    raise AttributeError(name)
