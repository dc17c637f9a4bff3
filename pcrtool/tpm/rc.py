"""Decode TPM 2.0 / TSS2 response codes into names and hints (pure, no tpm2-pytss).

TPM 2.0 Part 2 §6.6 (TPM_RC): format-zero codes (RC_VER1 0x100 + n, RC_WARN 0x900 + n) and
format-one codes (RC_FMT1 0x080 + n) that carry a handle, session or parameter number. Bits 16…23
name the TSS layer that produced a code (TSS2 TCTI spec, ``TSS2_*_RC_LAYER``).
"""

from __future__ import annotations

from dataclasses import dataclass

RC_VER1 = 0x100
RC_FMT1 = 0x080
RC_WARN = 0x900

_VER1 = {
    0x000: "INITIALIZE", 0x001: "FAILURE", 0x003: "SEQUENCE", 0x00B: "PRIVATE", 0x019: "HMAC",
    0x020: "DISABLED", 0x021: "EXCLUSIVE", 0x024: "AUTH_TYPE", 0x025: "AUTH_MISSING",
    0x026: "POLICY", 0x027: "PCR", 0x028: "PCR_CHANGED", 0x02D: "UPGRADE",
    0x02E: "TOO_MANY_CONTEXTS", 0x02F: "AUTH_UNAVAILABLE", 0x030: "REBOOT", 0x031: "UNBALANCED",
    0x042: "COMMAND_SIZE", 0x043: "COMMAND_CODE", 0x044: "AUTHSIZE", 0x045: "AUTH_CONTEXT",
    0x046: "NV_RANGE", 0x047: "NV_SIZE", 0x048: "NV_LOCKED", 0x049: "NV_AUTHORIZATION",
    0x04A: "NV_UNINITIALIZED", 0x04B: "NV_SPACE", 0x04C: "NV_DEFINED", 0x050: "BAD_CONTEXT",
    0x051: "CPHASH", 0x052: "PARENT", 0x053: "NEEDS_TEST", 0x054: "NO_RESULT", 0x055: "SENSITIVE",
}
_FMT1 = {
    0x001: "ASYMMETRIC", 0x002: "ATTRIBUTES", 0x003: "HASH", 0x004: "VALUE", 0x005: "HIERARCHY",
    0x007: "KEY_SIZE", 0x008: "MGF", 0x009: "MODE", 0x00A: "TYPE", 0x00B: "HANDLE", 0x00C: "KDF",
    0x00D: "RANGE", 0x00E: "AUTH_FAIL", 0x00F: "NONCE", 0x010: "PP", 0x012: "SCHEME",
    0x015: "SIZE", 0x016: "SYMMETRIC", 0x017: "TAG", 0x018: "SELECTOR", 0x01A: "INSUFFICIENT",
    0x01B: "SIGNATURE", 0x01C: "KEY", 0x01D: "POLICY_FAIL", 0x01F: "INTEGRITY", 0x020: "TICKET",
    0x021: "RESERVED_BITS", 0x022: "BAD_AUTH", 0x023: "EXPIRED", 0x024: "POLICY_CC",
    0x025: "BINDING", 0x026: "CURVE", 0x027: "ECC_POINT",
}
_WARN = {
    0x001: "CONTEXT_GAP", 0x002: "OBJECT_MEMORY", 0x003: "SESSION_MEMORY", 0x004: "MEMORY",
    0x005: "SESSION_HANDLES", 0x006: "OBJECT_HANDLES", 0x007: "LOCALITY", 0x008: "YIELDED",
    0x009: "CANCELED", 0x00A: "TESTING", 0x020: "NV_RATE", 0x021: "LOCKOUT", 0x022: "RETRY",
    0x023: "NV_UNAVAILABLE",
    **{0x010 + i: f"REFERENCE_H{i}" for i in range(7)},
    **{0x018 + i: f"REFERENCE_S{i}" for i in range(7)},
}
# TSS2 layers (bits 16…23 of a TSS2_RC)
_LAYERS = {0: "TPM", 1: "FEATURE", 5: "FAPI", 6: "ESAPI", 7: "ESAPI", 8: "SYS", 9: "MU",
           10: "TCTI", 11: "RESMGR", 12: "RESMGR_TPM", 13: "POLICY"}
# Base TSS2 error codes (TSS2_BASE_RC_*) used by the non-TPM layers.
_BASE = {
    1: "GENERAL_FAILURE", 2: "NOT_IMPLEMENTED", 3: "BAD_CONTEXT", 4: "ABI_MISMATCH",
    5: "BAD_REFERENCE", 6: "INSUFFICIENT_BUFFER", 7: "BAD_SEQUENCE", 8: "NO_CONNECTION",
    9: "TRY_AGAIN", 10: "IO_ERROR", 11: "BAD_VALUE", 12: "NOT_PERMITTED", 13: "INVALID_SESSIONS",
    14: "NO_DECRYPT_PARAM", 15: "NO_ENCRYPT_PARAM", 16: "BAD_SIZE", 17: "MALFORMED_RESPONSE",
    18: "INSUFFICIENT_CONTEXT", 19: "INSUFFICIENT_RESPONSE", 20: "INCOMPATIBLE_TCTI",
    21: "NOT_SUPPORTED", 22: "BAD_TCTI_STRUCTURE", 23: "MEMORY", 24: "BAD_TR",
    25: "MULTIPLE_DECRYPT_SESSIONS", 26: "MULTIPLE_ENCRYPT_SESSIONS", 27: "RSP_AUTH_FAILED",
}

HINTS = {
    "POLICY_FAIL": "policy check failed: a PCR differs from the policy (or another assertion, "
                   "e.g. the approved policy or a PolicyOR branch, does not match)",
    "POLICY": "a PolicyNV comparison did not hold (e.g. the downgrade counter is past the floor "
              "for this release), or the session digest does not match the object's policy",
    "PCR_CHANGED": "PCRs changed while the policy session was in use; start a new session and retry",
    "VALUE": "a value is out of range or inconsistent (e.g. a stale PCR digest in PolicyPCR, a NULL "
             "verification ticket, or a wrong size)",
    "NV_DEFINED": "the NV index is defined already; undefine it first or choose another index",
    "HANDLE": "the handle does not exist (NV index or persistent object not defined)",
    "NV_UNINITIALIZED": "the NV index was never written (a counter needs one NV_Increment first)",
    "NV_AUTHORIZATION": "the NV index does not allow this kind of authorization (owner vs index auth)",
    "NV_LOCKED": "the NV index is write- or read-locked",
    "NV_RANGE": "offset and size are outside the NV index",
    "NV_SIZE": "the NV index size is not allowed for this index type",
    "NV_SPACE": "the TPM's NV memory is full",
    "AUTH_FAIL": "wrong authorization value (password or HMAC)",
    "BAD_AUTH": "wrong authorization value (password or HMAC)",
    "AUTH_UNAVAILABLE": "the object cannot be used with this kind of authorization (policy only?)",
    "LOCKOUT": "the TPM is in dictionary-attack lockout; wait, or reset it with the lockout auth",
    "SIGNATURE": "the signature does not verify with this key over this digest",
    "ATTRIBUTES": "attributes are inconsistent with the operation (e.g. NV_Write on a counter index)",
    "INITIALIZE": "the TPM was not started (TPM2_Startup missing)",
    "KEY": "key fields are not compatible with the selected use (ECC coordinates must be padded)",
    "INTEGRITY": "the blob does not belong to this TPM/parent key (integrity check failed)",
    "TICKET": "the verification ticket is invalid (another hierarchy, key or TPM boot)",
    "EXPIRED": "the policy session expired",
    "POLICY_CC": "the policy is bound to another command",
    "COMMAND_CODE": "this TPM does not implement the command",
    "RETRY": "the TPM is busy; retry",
    "YIELDED": "the TPM is busy; retry",
    "TESTING": "the TPM is self-testing; retry",
    "OBJECT_MEMORY": "out of object slots: flush transient objects (no resource manager?)",
    "SESSION_MEMORY": "out of session slots: flush sessions (no resource manager?)",
    "REBOOT": "the TPM needs a reboot (TPM2_Shutdown/Startup)",
    "HIERARCHY": "the hierarchy is disabled or wrong for this command",
    "NO_CONNECTION": "cannot reach the TPM (is the device present and swtpm running?)",
    "IO_ERROR": "I/O error talking to the TPM",
}


@dataclass(frozen=True, slots=True)
class DecodedRc:
    """A decoded response code: ``name`` like ``TPM_RC_POLICY_FAIL``, plus where it points."""

    rc: int
    layer: str
    name: str
    base: str  # short name without prefix: "POLICY_FAIL"
    handle: int | None = None
    session: int | None = None
    parameter: int | None = None
    is_warning: bool = False

    @property
    def hint(self) -> str | None:
        return HINTS.get(self.base)

    def describe(self) -> str:
        where = ""
        if self.parameter is not None:
            where = f", parameter {self.parameter}"
        elif self.session is not None:
            where = f", session {self.session}"
        elif self.handle is not None:
            where = f", handle {self.handle}"
        return f"{self.name} (0x{self.rc:x}{where})"


def decode_rc(rc: int) -> DecodedRc:
    """Decode a TSS2_RC (TPM 2.0 Part 2 §6.6; TSS layers in bits 16…23)."""
    rc = int(rc)  # tpm2-pytss hands out enum-like ints whose str() is a name
    layer_id = (rc >> 16) & 0xFF
    layer = _LAYERS.get(layer_id, f"LAYER{layer_id}")
    code = rc & 0xFFFF
    if layer_id not in (0, 12):  # TSS layer: base error codes
        base = _BASE.get(code, f"0x{code:x}")
        return DecodedRc(rc, layer, f"TSS2_{layer}_RC_{base}", base)
    prefix = "TPM_RC_" if layer_id == 0 else "TSS2_RESMGR_TPM_RC_"
    if code & RC_FMT1:
        number = code & 0x3F
        base = _FMT1.get(number, f"FMT1_0x{number:x}")
        n = (code >> 8) & 0xF
        if code & 0x40:
            return DecodedRc(rc, layer, prefix + base, base, parameter=n)
        if n & 0x8:
            return DecodedRc(rc, layer, prefix + base, base, session=n & 0x7)
        return DecodedRc(rc, layer, prefix + base, base, handle=n or None)
    if not code & RC_VER1:
        return DecodedRc(rc, layer, f"TPM1.2_RC_0x{code:x}", f"0x{code:x}")
    number = code & 0x7F
    if code & 0x800:
        base = _WARN.get(number, f"WARN_0x{number:x}")
        return DecodedRc(rc, layer, prefix + base, base, is_warning=True)
    if code & 0x400:
        return DecodedRc(rc, layer, f"{prefix}VENDOR_0x{number:x}", f"VENDOR_0x{number:x}")
    base = _VER1.get(number, f"VER1_0x{number:x}")
    return DecodedRc(rc, layer, prefix + base, base)


# The one mapping from a failed TPM command to a pcrtool error. A (command, TPM_RC) pair listed
# here means "the policy was not satisfied": unlock or validation refused (TpmPolicyFailed, exit
# 4) with the TPM's own return code in the message — never a TPM malfunction. "*" is any command.
# The value is the hint (None: the generic hint of the code, HINTS).
REFUSALS: dict[tuple[str, str], str | None] = {
    ("*", "POLICY_FAIL"): None,
    ("*", "POLICY"): None,
    ("*", "POLICY_CC"): None,
    ("*", "EXPIRED"): None,
    ("*", "PCR_CHANGED"): None,
    ("TPM2_VerifySignature", "SIGNATURE"): "the approval was not signed by the enrolled key (or over other "
                                           "bytes): the TPM refused the signature",
    ("TPM2_PolicyAuthorize", "VALUE"): "the approved policy differs from the session digest (the PCRs, or the "
                                       "assertions before PolicyAuthorize, are not the signed state), or the "
                                       "ticket is for another key, policyRef or approval",
    ("TPM2_PolicyAuthorize", "TICKET"): "the verification ticket is not from this TPM's VerifySignature",
    ("TPM2_PolicyAuthorizeNV", "VALUE"): "the session digest differs from the policy stored in the NV index: "
                                         "the PCRs are not the approved state",
    ("TPM2_PolicyOR", "VALUE"): "the session digest matches none of the PolicyOR branches (PCRs or the approved "
                                "policy differ from every branch)",
    ("TPM2_PolicyPCR", "VALUE"): "policy check failed: the PCRs differ from the expected PCR digest",
    ("TPM2_Unseal", "AUTH_FAIL"): "wrong PIN: the TPM counts wrong PINs against its dictionary-attack protection",
    ("TPM2_Unseal", "BAD_AUTH"): "wrong PIN (or authorization value) for the sealed object",
    ("TPM2_Unseal", "LOCKOUT"): "the TPM is in dictionary-attack lockout (too many wrong PINs); wait, or reset "
                                "it with the lockout authorization",
}


def refusal_hint(command: str, base: str) -> tuple[bool, str | None]:
    """(is a policy refusal, its hint) for a command that failed with TPM_RC_<base>."""
    for key in ((command, base), ("*", base)):
        if key in REFUSALS:
            return True, REFUSALS[key] or HINTS.get(base)
    return False, None


def rc_name(rc: int | None) -> str:
    """``TPM_RC_POLICY_FAIL``-style name of a return code ("" for None)."""
    return "" if rc is None else decode_rc(rc).name


def error_for_rc(command: str, rc: int, *, context: str | None = None, hint: str | None = None):
    """The pcrtool error for ``command`` failing with ``rc`` (the one mapping; ``Tpm`` and
    ``policy_session.tpm_call`` both use it): TpmUnavailable (exit 5) when the TCTI lost the TPM,
    TpmPolicyFailed (exit 4) for a refusal listed in REFUSALS, TpmError (exit 1) otherwise.
    ``hint``: the caller's hint for this command (a refusal's own hint comes first)."""
    from pcrtool.errors import TpmError, TpmPolicyFailed, TpmUnavailable

    rc = int(rc)
    d = decode_rc(rc)
    what = f"{command}{f' ({context})' if context else ''} failed: {d.describe()}"
    if d.layer == "TCTI":   # the TPM went away mid-command: never a policy refusal
        return TpmUnavailable(what, d.hint or "check the TCTI (--tcti / PCRTOOL_TCTI)")
    refused, refusal = refusal_hint(command, d.base)
    if refused:
        return TpmPolicyFailed(what, refusal or hint, rc=rc, command=command)
    return TpmError(what, hint or d.hint, rc=rc, command=command)
