"""`pcrtool tpm`: PCRs, NV indices, boot emulation (owned by the TPM layer).

Device-side policy commands (enroll, unlock, advance-floor, status) live in
``pcrtool.cli.tpm_enroll`` and are registered at the bottom of this module.
"""

from pcrtool.cli.common import new_app

app = new_app("Talk to a TPM: PCRs, NV, enrol, unlock, advance the floor.")


# --- keep this at the end: device-side policy commands (pcrtool/cli/tpm_enroll.py) ---
from pcrtool.cli.tpm_enroll import register as _register_enroll  # noqa: E402

_register_enroll(app)
