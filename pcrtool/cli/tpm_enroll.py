"""`pcrtool tpm enroll | unlock | advance-floor | status` (owned by the policy work)."""


def register(app) -> None:
    """Add the device-side policy commands to the `pcrtool tpm` group."""
