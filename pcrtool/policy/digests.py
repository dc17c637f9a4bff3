"""Policy-digest maths for TPM 2.0 enhanced authorization, computed in software.

Every function takes the running policy digest (``prev``) and returns the new one, exactly as the
TPM updates ``policyDigest`` in a session whose hash is SHA-256 (TPM 2.0 Part 3 §23). Names of
keys and NV indices are computed from marshalled TPMT_PUBLIC / TPMS_NV_PUBLIC (Part 2 §12.2.4,
§13.5). Pure: no TPM, no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import Sequence

from pcrtool.errors import FormatError, UnsupportedError, UsageError
from pcrtool.model import HashAlg, PcrValues

POLICY_HASH = HashAlg.SHA256
ZERO_DIGEST = bytes(32)
OR_MAX_BRANCHES = 8  # TPML_DIGEST in TPM2_PolicyOR holds 2…8 digests (Part 3 §23.6)


class TPM_CC(IntEnum):
    """Command codes that enter policy digests (TPM 2.0 Part 2 §6.5.2)."""

    NV_Write = 0x00000137
    NV_Increment = 0x00000134
    PolicySigned = 0x00000160
    PolicyAuthorize = 0x0000016A
    PolicyAuthValue = 0x0000016B
    PolicyCommandCode = 0x0000016C
    PolicyNV = 0x00000149
    PolicyOR = 0x00000171
    PolicyPCR = 0x0000017F
    PolicyAuthorizeNV = 0x00000192
    Unseal = 0x0000015E


class TPM_EO(IntEnum):
    """PolicyNV / PolicyCounterTimer comparison operations (Part 2 §6.8)."""

    EQ = 0x0000
    NEQ = 0x0001
    SIGNED_GT = 0x0002
    UNSIGNED_GT = 0x0003
    SIGNED_LT = 0x0004
    UNSIGNED_LT = 0x0005
    SIGNED_GE = 0x0006
    UNSIGNED_GE = 0x0007
    SIGNED_LE = 0x0008
    UNSIGNED_LE = 0x0009
    BITSET = 0x000A
    BITCLEAR = 0x000B


class TPMA_OBJECT(IntFlag):
    """Object attributes (Part 2 §8.3)."""

    FIXEDTPM = 0x00000002
    STCLEAR = 0x00000004
    FIXEDPARENT = 0x00000010
    SENSITIVEDATAORIGIN = 0x00000020
    USERWITHAUTH = 0x00000040
    ADMINWITHPOLICY = 0x00000080
    NODA = 0x00000400
    ENCRYPTEDDUPLICATION = 0x00000800
    RESTRICTED = 0x00010000
    DECRYPT = 0x00020000
    SIGN_ENCRYPT = 0x00040000


class TPMA_NV(IntFlag):
    """NV index attributes (Part 2 §13.4); the type (TPM_NT) sits in bits 4…7."""

    PPWRITE = 0x00000001
    OWNERWRITE = 0x00000002
    AUTHWRITE = 0x00000004
    POLICYWRITE = 0x00000008
    TPM_NT_COUNTER = 0x00000010
    TPM_NT_BITS = 0x00000020
    TPM_NT_EXTEND = 0x00000040
    POLICY_DELETE = 0x00000400
    WRITELOCKED = 0x00000800
    WRITEALL = 0x00001000
    WRITEDEFINE = 0x00002000
    WRITE_STCLEAR = 0x00004000
    GLOBALLOCK = 0x00008000
    PPREAD = 0x00010000
    OWNERREAD = 0x00020000
    AUTHREAD = 0x00040000
    POLICYREAD = 0x00080000
    NO_DA = 0x02000000
    ORDERLY = 0x04000000
    CLEAR_STCLEAR = 0x08000000
    READLOCKED = 0x10000000
    WRITTEN = 0x20000000
    PLATFORMCREATE = 0x40000000
    READ_STCLEAR = 0x80000000


TPM_ALG_RSA = 0x0001
TPM_ALG_ECC = 0x0023
TPM_ALG_NULL = 0x0010
TPM_ECC_NIST_P256 = 0x0003
_ECC_CURVES = {"secp256r1": (TPM_ECC_NIST_P256, 32), "secp384r1": (0x0004, 48), "secp521r1": (0x0005, 66)}

# systemd's attributes for an external PCR-signing key (tpm2_tpm2b_public_from_openssl_pkey)
SIGNING_KEY_ATTRIBUTES = TPMA_OBJECT.DECRYPT | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.USERWITHAUTH
# The storage root key: TCG Provisioning Guidance §7.5.1 template L-2 with userWithAuth, plus noDA
# (an unclean reset must not count as a dictionary-attack failure) = 0x00030472. tpm/policy_session
# creates and pins it with these attributes.
SRK_ATTRIBUTES = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                  | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA | TPMA_OBJECT.RESTRICTED
                  | TPMA_OBJECT.DECRYPT)


def _h(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _u16(v: int) -> bytes:
    return struct.pack(">H", v)


def _u32(v: int) -> bytes:
    return struct.pack(">I", v)


def tpm2b(data: bytes) -> bytes:
    """TPM2B_*: u16 size then the bytes (Part 2 §10.4)."""
    if len(data) > 0xFFFF:
        raise FormatError(f"TPM2B payload of {len(data)} bytes is too large")
    return _u16(len(data)) + data


def _check_digest(d: bytes, what: str = "policy digest") -> bytes:
    if len(d) != 32:  # SHA-256 policy sessions
        raise UsageError(f"{what} has {len(d)} bytes, expected 32 (SHA-256 policy session)")
    return d


# --- PCR selections -------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _tpml(selection: tuple) -> bytes:
    out = [_u32(len(selection))]
    for alg, pcrs in selection:
        bitmap = bytearray(3)
        for pcr in pcrs:
            if not 0 <= pcr < 24:
                raise UsageError(f"PCR index {pcr} out of range 0…23")
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        out.append(_u16(int(alg)) + b"\x03" + bytes(bitmap))
    return b"".join(out)


def pcr_digest(values: PcrValues) -> bytes:
    """SHA-256 over the selected PCR values, bank by bank, PCRs ascending (Part 3 §23.7)."""
    h = hashlib.sha256()
    for alg, pcrs in values.values.items():
        for pcr in sorted(pcrs):
            h.update(pcrs[pcr])
    return h.digest()


def policy_pcr(values: PcrValues, prev: bytes = ZERO_DIGEST) -> bytes:
    """TPM2_PolicyPCR (Part 3 §23.7): H(prev || CC || TPML_PCR_SELECTION || H(values))."""
    selection = tuple((alg, tuple(sorted(pcrs))) for alg, pcrs in values.values.items())
    if not any(pcrs for _, pcrs in selection):
        raise UsageError("PolicyPCR needs at least one PCR value")
    h = hashlib.sha256()
    for alg, pcrs in selection:
        bank = values.values[alg]
        for pcr in pcrs:
            h.update(bank[pcr])
    return _h(_check_digest(prev), _CC_POLICY_PCR, _tpml(selection), h.digest())


_CC_POLICY_PCR = _u32(TPM_CC.PolicyPCR)


# --- simple assertions ------------------------------------------------------------------------

def policy_auth_value(prev: bytes = ZERO_DIGEST) -> bytes:
    """TPM2_PolicyAuthValue (Part 3 §23.17): H(prev || CC)."""
    return _h(_check_digest(prev), _u32(TPM_CC.PolicyAuthValue))


def policy_authorize(key_name: bytes, policy_ref: bytes = b"") -> bytes:
    """TPM2_PolicyAuthorize (Part 3 §23.16): the digest is reset, then
    H(H(0…0 || CC || keyName) || policyRef)."""
    return _h(_h(ZERO_DIGEST, _u32(TPM_CC.PolicyAuthorize), key_name), policy_ref)


def authorize_tbs(approved_policy: bytes, policy_ref: bytes = b"") -> bytes:
    """The message the key signs for PolicyAuthorize: approvedPolicy || policyRef (Part 3 §23.16)."""
    return _check_digest(approved_policy, "approved policy") + policy_ref


def policy_nv(nv_name: bytes, operand_b: bytes, operation: TPM_EO, offset: int = 0,
              prev: bytes = ZERO_DIGEST) -> bytes:
    """TPM2_PolicyNV (Part 3 §23.9): H(prev || CC || H(operandB || offset || op) || nvName)."""
    args = _h(operand_b, _u16(offset), _u16(int(operation)))
    return _h(_check_digest(prev), _u32(TPM_CC.PolicyNV), args, nv_name)


def policy_or(branches: Sequence[bytes]) -> bytes:
    """TPM2_PolicyOR (Part 3 §23.6): the digest is reset, then H(0…0 || CC || d1 || … || dn)."""
    if not 2 <= len(branches) <= OR_MAX_BRANCHES:
        raise UsageError(f"PolicyOR takes 2…8 branches, got {len(branches)}",
                         hint="use PolicyOrTree for any number of branches")
    return _h(ZERO_DIGEST, _u32(TPM_CC.PolicyOR), *(_check_digest(b, "PolicyOR branch") for b in branches))


# --- PolicyOR trees ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PolicyOrTree:
    """A PolicyOR tree over any number of leaf digests (fan-out 8).

    ``levels[0]`` are the leaves; each next level groups the previous one in runs of 8 and ORs
    every run of two or more (a lone digest at the end of a level is carried up unchanged).
    ``root`` is the policy digest to seal to. ``path(i)`` lists, bottom-up, the PolicyOR calls
    (their branch lists) a session that reached leaf ``i`` must issue to reach ``root``.
    """

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def build(cls, leaves: Sequence[bytes]) -> "PolicyOrTree":
        if not leaves:
            raise UsageError("a PolicyOR tree needs at least one branch")
        level = tuple(_check_digest(d, "PolicyOR leaf") for d in leaves)
        levels = [level]
        while len(level) > 1:
            nxt = []
            for i in range(0, len(level), OR_MAX_BRANCHES):
                group = level[i:i + OR_MAX_BRANCHES]
                nxt.append(group[0] if len(group) == 1 else policy_or(group))
            level = tuple(nxt)
            levels.append(level)
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    @property
    def leaves(self) -> tuple[bytes, ...]:
        return self.levels[0]

    def path(self, index: int) -> list[tuple[bytes, ...]]:
        """Branch lists of the PolicyOR commands from leaf ``index`` up to the root."""
        if not 0 <= index < len(self.levels[0]):
            raise UsageError(f"leaf {index} not in a tree of {len(self.levels[0])} leaves")
        calls: list[tuple[bytes, ...]] = []
        for level in self.levels[:-1]:
            start = (index // OR_MAX_BRANCHES) * OR_MAX_BRANCHES
            group = level[start:start + OR_MAX_BRANCHES]
            if len(group) > 1:
                calls.append(tuple(group))
            index //= OR_MAX_BRANCHES
        return calls

    def replay(self, index: int) -> bytes:
        """Software replay of ``path(index)`` (what the TPM's digest becomes), for checks."""
        digest = self.levels[0][index]
        for group in self.path(index):
            if digest not in group:
                raise UsageError("PolicyOR path does not contain the running digest")
            digest = policy_or(group)
        return digest


# --- Names ----------------------------------------------------------------------------------------

def tpmt_public_rsa(modulus: bytes, exponent: int, *, attributes: int = SIGNING_KEY_ATTRIBUTES,
                    auth_policy: bytes = b"", symmetric: tuple[int, int, int] | None = None,
                    scheme: int = TPM_ALG_NULL, name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """Marshal an RSA TPMT_PUBLIC (Part 2 §12.2.4). The exponent is written literally, as systemd
    does since PR #30971 (65537, not the "default" 0), so Names agree with systemd's."""
    sym = _u16(TPM_ALG_NULL) if symmetric is None else b"".join(_u16(x) for x in symmetric)
    parms = sym + _u16(scheme) + _u16(len(modulus) * 8) + _u32(exponent)
    return (_u16(TPM_ALG_RSA) + _u16(int(name_alg)) + _u32(int(attributes)) + tpm2b(auth_policy)
            + parms + tpm2b(modulus))


def tpmt_public_ecc(curve_id: int, x: bytes, y: bytes, *, attributes: int = SIGNING_KEY_ATTRIBUTES,
                    auth_policy: bytes = b"", symmetric: tuple[int, int, int] | None = None,
                    name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """Marshal an ECC TPMT_PUBLIC; x and y must already be padded to the curve size."""
    sym = _u16(TPM_ALG_NULL) if symmetric is None else b"".join(_u16(v) for v in symmetric)
    parms = sym + _u16(TPM_ALG_NULL) + _u16(curve_id) + _u16(TPM_ALG_NULL)
    return (_u16(TPM_ALG_ECC) + _u16(int(name_alg)) + _u32(int(attributes)) + tpm2b(auth_policy)
            + parms + tpm2b(x) + tpm2b(y))


def name_of(marshalled_public: bytes, name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """Name = nameAlg || H_nameAlg(marshalled public area) (Part 1 §16)."""
    return _u16(int(name_alg)) + name_alg.digest(marshalled_public)


def public_key_tpmt(public_key) -> bytes:
    """TPMT_PUBLIC of a ``cryptography`` RSA or EC public key, with systemd's attributes.

    ECC coordinates are left-padded to the curve size (tpm2-pytss's from_pem drops leading
    zeros, which gives a wrong Name and a LoadExternal TPM_RC_KEY for ~1% of P-256 keys).
    """
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        size = (public_key.key_size + 7) // 8
        return tpmt_public_rsa(nums.n.to_bytes(size, "big"), nums.e)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve_id, size = ecc_curve(public_key)
        nums = public_key.public_numbers()
        return tpmt_public_ecc(curve_id, nums.x.to_bytes(size, "big"), nums.y.to_bytes(size, "big"))
    raise UnsupportedError(f"unsupported public key type {type(public_key).__name__}",
                           hint="use an RSA-2048 key")


def is_rsa_key(public_key) -> bool:
    """Is ``public_key`` (a ``cryptography`` public key) an RSA key? (Else ECC: RSASSA vs ECDSA.)"""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return isinstance(public_key, rsa.RSAPublicKey)


def ecc_curve(public_key) -> tuple[int, int]:
    """(TPM_ECC_CURVE, parameter size in bytes) of an EC public key: the curveID of its TPMT_PUBLIC
    and the size of its coordinates and of an ECDSA signature's r and s (Part 2 §11.2.5.1)."""
    curve = _ECC_CURVES.get(public_key.curve.name)
    if curve is None:
        raise UnsupportedError(f"EC curve {public_key.curve.name} is not supported by TPMs",
                               hint="use RSA-2048 (what systemd verifies) or P-256")
    return curve


def public_key_name(public_key) -> bytes:
    """The TPM Name the key gets when LoadExternal'd with systemd's template."""
    return name_of(public_key_tpmt(public_key))


def public_key_fingerprint(public_key) -> bytes:
    """systemd's ``pkfp``: SHA-256 of i2d_PublicKey (PKCS#1 RSAPublicKey DER; EC: the X9.62 point),
    as systemd's pubkey_fingerprint() (openssl-util.c) computes it for systemd-measure sign. The one
    pkfp function: .pcrsig entries, enrolments, `policy show` and `key fingerprint` use it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        der = public_key.public_bytes(serialization.Encoding.X962,
                                      serialization.PublicFormat.UncompressedPoint)
    else:
        raise UnsupportedError(f"unsupported public key type {type(public_key).__name__}")
    return hashlib.sha256(der).digest()


def tpms_nv_public(index: int, attributes: int, data_size: int, *, auth_policy: bytes = b"",
                   name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """Marshal a TPMS_NV_PUBLIC (Part 2 §13.5)."""
    return (_u32(index) + _u16(int(name_alg)) + _u32(int(attributes)) + tpm2b(auth_policy)
            + _u16(data_size))


def nv_name(index: int, attributes: int, data_size: int, *, auth_policy: bytes = b"",
            name_alg: HashAlg = HashAlg.SHA256, written: bool = True) -> bytes:
    """Name of an NV index; policies bind the *written* Name (TPMA_NV_WRITTEN set) because that
    is the Name the index has when the policy is executed."""
    attrs = int(attributes) | (TPMA_NV.WRITTEN if written else 0)
    return name_of(tpms_nv_public(index, attrs, data_size, auth_policy=auth_policy, name_alg=name_alg),
                   name_alg)


# Counter index used for the downgrade floor (ARCHITECTURE.md "Downgrade protection"):
# not ORDERLY (an orderly counter jumps after an unclean reset), NO_DA, AUTHREAD so a real
# policy session can read it with the index's empty auth even when owner auth is set, and
# OWNERWRITE only (no AUTHWRITE: the index's empty auth must not let anyone increment it).
COUNTER_ATTRIBUTES = (TPMA_NV.TPM_NT_COUNTER | TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD
                      | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA)
COUNTER_SIZE = 8


def counter_bound(c0: int, f0: int, svn: int) -> int:
    """The highest counter value at which a release with ``svn`` may unlock: c0 + svn − f0."""
    return c0 + svn - f0


def svn_branch(key_name: bytes, policy_ref: bytes, counter_name: bytes, bound: int) -> bytes:
    """One downgrade-protection branch: PolicyAuthorize(K, ref_s) → PolicyNV(counter ≤ bound)."""
    if not 0 <= bound < 2 ** 64:
        raise UsageError(f"counter bound {bound} out of range")
    return policy_nv(counter_name, struct.pack(">Q", bound), TPM_EO.UNSIGNED_LE,
                     prev=policy_authorize(key_name, policy_ref))
