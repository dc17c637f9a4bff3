"""Pure marshalling of the TPM 2.0 structures pcrtool sends (Part 2), independent of tpm2-pytss.

The device adapter builds every structure here as bytes and lets tpm2-pytss ``unmarshal`` it, so
the layout is testable without a TPM and does not depend on tpm2-pytss' union helpers.
"""

from __future__ import annotations

import struct
from typing import Iterable, Mapping

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import PCR_COUNT, HashAlg, PcrSelection

# TPM2_PCR_Read returns at most 8 digests per call (TPML_DIGEST holds 8: Part 2 §10.9.2).
PCR_READ_MAX_DIGESTS = 8
PCR_SELECT_MIN = 3  # sizeofSelect for 24 PCRs (PCR_SELECT_MIN, Part 2 §10.6.1)

TPM_ALG_RSA = 0x0001
TPM_ALG_KEYEDHASH = 0x0008
TPM_ALG_NULL = 0x0010
TPM_ALG_AES = 0x0006
TPM_ALG_CFB = 0x0043
TPM_ALG_RSASSA = 0x0014
TPM_ALG_RSAPSS = 0x0016
TPM_ALG_ECDSA = 0x0018
TPM_ALG_ECC = 0x0023
TPM_ECC_NIST_P256 = 0x0003

# TPMA_OBJECT bits (Part 2 §8.3.2)
FIXED_TPM = 0x00000002
FIXED_PARENT = 0x00000010
SENSITIVE_DATA_ORIGIN = 0x00000020
USER_WITH_AUTH = 0x00000040
ADMIN_WITH_POLICY = 0x00000080
NO_DA = 0x00000400
RESTRICTED = 0x00010000
DECRYPT = 0x00020000

SRK_ATTRIBUTES = (FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | RESTRICTED
                  | DECRYPT)
SRK_PERSISTENT_HANDLE = 0x81000001  # TCG Provisioning Guidance §7.8 (systemd uses it too)
MAX_SEALED_SIZE = 128  # MAX_SYM_DATA (Part 2 §10.4.6, TPM2B_SENSITIVE_DATA for keyedhash)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def tpm2b(data: bytes) -> bytes:
    return u16(len(data)) + data


def marshal_pcr_selection(banks: Mapping[HashAlg, Iterable[int]]) -> bytes:
    """TPML_PCR_SELECTION (Part 2 §10.9.7): count, then per bank hash, sizeofSelect, bitmap."""
    out = [u32(len(banks))]
    for alg, pcrs in banks.items():
        bitmap = bytearray(PCR_SELECT_MIN)
        for pcr in pcrs:
            if not 0 <= pcr < PCR_COUNT:
                raise UsageError(f"PCR index {pcr} out of range", hint="PCR indices are 0…23")
            bitmap[pcr // 8] |= 1 << (pcr % 8)
        out.append(u16(int(alg)) + bytes([PCR_SELECT_MIN]) + bytes(bitmap))
    return b"".join(out)


def unmarshal_pcr_selection(data: bytes) -> list[tuple[int, list[int]]]:
    """Parse a TPML_PCR_SELECTION into ``[(alg_id, [pcr, …]), …]`` in wire order."""
    try:
        (count,) = struct.unpack_from(">I", data, 0)
        pos, out = 4, []
        for _ in range(count):
            alg, size = struct.unpack_from(">HB", data, pos)
            pos += 3
            bitmap = data[pos:pos + size]
            if len(bitmap) != size:
                raise struct.error("short bitmap")
            pos += size
            out.append((alg, [i for i in range(size * 8) if bitmap[i // 8] >> (i % 8) & 1]))
    except struct.error:
        raise FormatError("truncated TPML_PCR_SELECTION from the TPM") from None
    return out


def chunk_selection(selection: PcrSelection, limit: int = PCR_READ_MAX_DIGESTS
                    ) -> list[dict[HashAlg, tuple[int, ...]]]:
    """Split a selection into pieces of at most ``limit`` PCRs (over all banks) for TPM2_PCR_Read."""
    chunks: list[dict[HashAlg, tuple[int, ...]]] = []
    current: dict[HashAlg, list[int]] = {}
    used = 0
    for alg, pcr in selection.items():
        if used == limit:
            chunks.append({a: tuple(p) for a, p in current.items()})
            current, used = {}, 0
        current.setdefault(alg, []).append(pcr)
        used += 1
    if current:
        chunks.append({a: tuple(p) for a, p in current.items()})
    return chunks


def marshal_digest_values(digests: Mapping[HashAlg, bytes]) -> bytes:
    """TPML_DIGEST_VALUES (Part 2 §10.9.6): count, then TPMT_HA (alg, digest) per bank."""
    out = [u32(len(digests))]
    for alg, digest in digests.items():
        if len(digest) != alg.digest_size:
            raise UsageError(f"{alg.bank_name} digest has {len(digest)} bytes, expected {alg.digest_size}")
        out.append(u16(int(alg)) + digest)
    return b"".join(out)


def srk_template(alg: str = "ecc", *, noda: bool = True) -> bytes:
    """TPMT_PUBLIC of the SRK (TCG TPM v2.0 Provisioning Guidance §7.5.1, EK profile templates
    L-1/L-2 with userWithAuth): ECC NIST P-256 or RSA-2048, AES-128-CFB, restricted decrypt,
    unique zero-filled to the key size."""
    attrs = SRK_ATTRIBUTES | (NO_DA if noda else 0)
    head = u16(TPM_ALG_ECC if alg == "ecc" else TPM_ALG_RSA) + u16(HashAlg.SHA256) + u32(attrs) + tpm2b(b"")
    sym = u16(TPM_ALG_AES) + u16(128) + u16(TPM_ALG_CFB)
    if alg == "ecc":
        params = sym + u16(TPM_ALG_NULL) + u16(TPM_ECC_NIST_P256) + u16(TPM_ALG_NULL)
        return head + params + tpm2b(bytes(32)) + tpm2b(bytes(32))
    if alg == "rsa":
        params = sym + u16(TPM_ALG_NULL) + u16(2048) + u32(0)
        return head + params + tpm2b(bytes(256))
    raise UsageError(f"unknown SRK algorithm {alg!r}", hint="use ecc or rsa")


def sealed_object_template(policy_digest: bytes, *, user_with_auth: bool = False,
                           noda: bool = True, name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """TPMT_PUBLIC of a sealed data object (keyedhash, scheme NULL; Part 2 §12.2.3.6):
    fixedTPM|fixedParent, authPolicy = ``policy_digest``, no userWithAuth unless asked."""
    if len(policy_digest) not in (0, name_alg.digest_size):
        raise UsageError(f"policy digest has {len(policy_digest)} bytes, expected {name_alg.digest_size}")
    attrs = FIXED_TPM | FIXED_PARENT | (USER_WITH_AUTH if user_with_auth else 0) | (NO_DA if noda else 0)
    return (u16(TPM_ALG_KEYEDHASH) + u16(int(name_alg)) + u32(attrs) + tpm2b(policy_digest)
            + u16(TPM_ALG_NULL) + tpm2b(b""))


def sensitive_create(data: bytes = b"", auth: bytes = b"") -> bytes:
    """TPMS_SENSITIVE_CREATE (Part 2 §11.1.15): userAuth, data."""
    return tpm2b(auth) + tpm2b(data)


def marshal_signature(sig_alg: int, hash_alg: HashAlg, signature: bytes | tuple[bytes, bytes]) -> bytes:
    """TPMT_SIGNATURE (Part 2 §11.3.4): RSASSA/RSAPSS carry one TPM2B, ECDSA carries r and s."""
    if sig_alg in (TPM_ALG_RSASSA, TPM_ALG_RSAPSS):
        assert isinstance(signature, bytes)
        return u16(sig_alg) + u16(int(hash_alg)) + tpm2b(signature)
    if sig_alg == TPM_ALG_ECDSA:
        r, s = signature  # type: ignore[misc]
        return u16(sig_alg) + u16(int(hash_alg)) + tpm2b(r) + tpm2b(s)
    raise UsageError(f"unsupported signature algorithm 0x{sig_alg:04x}", hint="use RSASSA or ECDSA")


def marshal_nv_public(index: int, attributes: int, size: int, *, auth_policy: bytes = b"",
                      name_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """TPMS_NV_PUBLIC (Part 2 §13.5)."""
    return u32(index) + u16(int(name_alg)) + u32(int(attributes)) + tpm2b(auth_policy) + u16(size)


def unmarshal_nv_public(data: bytes) -> tuple[int, int, int, bytes, int]:
    """Parse a TPMS_NV_PUBLIC into (index, name_alg, attributes, auth_policy, size)."""
    try:
        index, name_alg, attrs, plen = struct.unpack_from(">IHIH", data, 0)
        policy = data[12:12 + plen]
        (size,) = struct.unpack_from(">H", data, 12 + plen)
    except struct.error:
        raise FormatError("truncated TPMS_NV_PUBLIC from the TPM") from None
    return index, name_alg, attrs, policy, size
