"""What an approval is valid for, carried in the policyRef the TPM checks (pure).

PolicyAuthorize replaces the session digest with ``H(H(0…0 || CC || keyName) || policyRef)``:
after it, nothing of the approved PolicyPCR digest survives except what the policyRef says. So
everything an approval must be limited to lives in the ref string, and the sealed PolicyOR tree
has one branch per (svn, scope) the device accepts. The grammar is exact (one spelling per
value, so a ref compares as bytes):

    ref     = "pcrtool-svn=" DEC [ ",product=" PRODUCT ] ",bank=" BANK ",pcrs=" PCR *( "+" PCR )
    DEC     = "0" / %x31-39 *9DIGIT            ; 0 … 2^31−1, no leading zeros
    PRODUCT = LOWER-ALNUM *63( LOWER-ALNUM / "." / "_" / "-" )
    BANK    = "sha1" / "sha256" / "sha384" / "sha512"
    PCR     = DIGIT / %x31-32 DIGIT            ; 0 … 23, strictly ascending

e.g. ``pcrtool-svn=4,product=acme-os,bank=sha256,pcrs=7+11``. No whitespace, no newline, no other
field; anything containing ``pcrtool-`` that does not match is an error, never "no svn".
systemd passes the string through unchanged (``systemd-measure sign --policyref=REF``,
``systemd-cryptenroll --tpm2-public-key-policyref=REF``), so pcrtool's approvals stay usable there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg

REF_PREFIX = "pcrtool-"
SVN_MAX = 2 ** 31 - 1
MAX_REF_LENGTH = 200
SCOPE_BANKS = ("sha1", "sha256", "sha384", "sha512")
_PRODUCT = r"[a-z0-9][a-z0-9._-]{0,63}"
_PCR = r"(?:[0-9]|1[0-9]|2[0-3])"
_REF = re.compile(r"pcrtool-svn=(0|[1-9][0-9]{0,9})(?:,product=(" + _PRODUCT + r"))?"
                  r",bank=(sha1|sha256|sha384|sha512),pcrs=(" + _PCR + r"(?:\+" + _PCR + r")*)")
_PRODUCT_RE = re.compile(_PRODUCT)


@dataclass(frozen=True, slots=True)
class Scope:
    """Product (or "" for none), PCR bank and PCR selection an approval or enrolment is for."""

    bank: HashAlg
    pcrs: tuple[int, ...]
    product: str = ""

    def __post_init__(self) -> None:
        check_product(self.product)
        if self.bank.bank_name not in SCOPE_BANKS:
            raise UsageError(f"bank {self.bank.bank_name} cannot carry a pcrtool approval",
                             hint="use sha1, sha256, sha384 or sha512")
        if not self.pcrs or list(self.pcrs) != sorted(set(self.pcrs)) or not all(0 <= p <= 23 for p in self.pcrs):
            raise UsageError(f"PCR selection {list(self.pcrs)} must be ascending PCR indices 0…23")

    def ref(self, svn: int) -> str:
        if isinstance(svn, bool) or not isinstance(svn, int) or not 0 <= svn <= SVN_MAX:
            raise UsageError(f"security version {svn} out of range 0…{SVN_MAX}")
        product = f",product={self.product}" if self.product else ""
        return (f"pcrtool-svn={svn}{product},bank={self.bank.bank_name},"
                f"pcrs={'+'.join(str(p) for p in self.pcrs)}")

    def describe(self) -> str:
        return (f"product {self.product or '(none)'}, bank {self.bank.bank_name}, "
                f"PCRs {','.join(map(str, self.pcrs))}")


def check_product(product: str) -> str:
    if product and (not isinstance(product, str) or not _PRODUCT_RE.fullmatch(product)):
        raise UsageError(f"product {product!r} is not a valid product id",
                         hint="lower-case letters, digits, '.', '_' and '-', at most 64, e.g. acme-os")
    return product


@dataclass(frozen=True, slots=True)
class ParsedRef:
    svn: int
    scope: Scope


def parse_ref(ref: str) -> ParsedRef | None:
    """The svn and scope a pcrtool ref carries; None for a ref without ``pcrtool-`` in it (a
    systemd user's own string). A ref mentioning ``pcrtool-`` that is not exactly canonical
    (leading space, trailing newline, …) raises."""
    if not isinstance(ref, str):
        raise FormatError("ref must be a string")
    if REF_PREFIX not in ref:
        return None
    m = _REF.fullmatch(ref) if len(ref) <= MAX_REF_LENGTH else None
    if m is None:
        raise FormatError(f"ref {ref[:80]!r} is not a canonical pcrtool ref",
                          hint="expected e.g. pcrtool-svn=4,product=acme-os,bank=sha256,pcrs=7+11 "
                               "(approvals signed before scope binding: approve them again)")
    svn = int(m.group(1))
    if svn > SVN_MAX:
        raise FormatError(f"ref {ref!r}: svn above {SVN_MAX}")
    pcrs = tuple(int(p) for p in m.group(4).split("+"))
    if list(pcrs) != sorted(set(pcrs)):
        raise FormatError(f"ref {ref!r}: PCRs must be strictly ascending")
    return ParsedRef(svn, Scope(HashAlg.from_name(m.group(3)), pcrs, m.group(2) or ""))
