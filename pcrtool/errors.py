"""pcrtool's error hierarchy.

Every error carries a one-line message (naming the input and, where it applies, the byte offset)
and a hint. Each class knows its exit code; only ``pcrtool.cli`` turns errors into exit codes.

Exit codes (documented in README.md):
  0 ok, 1 error, 2 usage, 3 verify/replay mismatch, 4 policy refused, 5 TPM unavailable.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3
EXIT_POLICY_REFUSED = 4
EXIT_TPM_UNAVAILABLE = 5


class PcrtoolError(Exception):
    """Base class: a one-line ``message`` plus a ``hint`` for the user."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PcrtoolError):
    """Options that contradict each other or a value that cannot be understood."""

    exit_code = EXIT_USAGE


class InputFileError(PcrtoolError):
    """A file could not be read or written (missing, permissions, exists already)."""


class FormatError(PcrtoolError):
    """Input bytes do not follow the format they claim (event log, PE, JSON, ESL...).

    ``offset`` is the byte offset of the problem, ``partial`` whatever was parsed before it.
    """

    def __init__(self, message: str, hint: str | None = None, *, offset: int | None = None,
                 partial: object = None) -> None:
        if offset is not None and "offset" not in message:
            message = f"{message} (at byte offset {offset})"
        super().__init__(message, hint)
        self.offset = offset
        self.partial = partial


class MismatchError(PcrtoolError):
    """A replay or verification disagreed with reality (exit 3)."""

    exit_code = EXIT_MISMATCH

    def __init__(self, message: str, hint: str | None = None, *, pcrs: tuple[int, ...] = ()) -> None:
        super().__init__(message, hint)
        self.pcrs = pcrs


class ReplayMismatch(MismatchError):
    """Replayed PCR values differ from the PCRs they were compared with."""


class SignatureError(PcrtoolError):
    """A signature does not verify, or was made by another key, or over other bytes."""

    exit_code = EXIT_MISMATCH


class KeyReferenceError(PcrtoolError):
    """A key reference cannot be used: missing file, wrong passphrase or PIN, unsupported type."""


class UnsupportedError(PcrtoolError):
    """A combination the consumer of the output cannot verify (refused, with the reason)."""


class PolicyRefused(PcrtoolError):
    """The TPM (or pcrtool's own check) refused to satisfy a policy: unlock denied (exit 4)."""

    exit_code = EXIT_POLICY_REFUSED

    def __init__(self, message: str, hint: str | None = None, *, tpm_rc: int | None = None) -> None:
        super().__init__(message, hint)
        self.tpm_rc = tpm_rc


class TpmUnavailable(PcrtoolError):
    """No TPM, no tpm2-pytss, or no libtss2 (exit 5)."""

    exit_code = EXIT_TPM_UNAVAILABLE


class TpmError(PcrtoolError):
    """A TPM command failed; ``rc`` is the decoded TPM return code."""

    def __init__(self, message: str, hint: str | None = None, *, rc: int | None = None,
                 command: str | None = None) -> None:
        super().__init__(message, hint)
        self.rc = rc
        self.command = command


class ToolError(PcrtoolError):
    """An external program is missing or failed."""


class TpmPolicyFailed(PolicyRefused, TpmError):
    """The TPM refused a policy assertion or the final command (TPM_RC_POLICY_FAIL, TPM_RC_POLICY…):
    a PolicyRefused (exit 4) that is also a TpmError with the decoded ``rc`` and ``command``."""

    def __init__(self, message: str, hint: str | None = None, *, rc: int | None = None,
                 command: str | None = None) -> None:
        PcrtoolError.__init__(self, message, hint)
        self.rc = rc
        self.tpm_rc = rc
        self.command = command
