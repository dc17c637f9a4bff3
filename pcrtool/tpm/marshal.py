"""Pure marshalling of the TPM 2.0 structures pcrtool sends (Part 2), independent of tpm2-pytss.

Policy and Name maths (TPM2B, TPMS_NV_PUBLIC, TPMT_PUBLIC) live in the pure core,
``pcrtool.policy.digests``; this module adds only what the device adapter sends (PCR selections,
digest lists) and parses (NV public areas). The device adapter builds every structure as bytes
and lets tpm2-pytss ``unmarshal`` it, so the layout is testable without a TPM and does not depend on tpm2-pytss' union helpers.
"""

from __future__ import annotations

import struct
from typing import Iterable, Mapping

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import PCR_COUNT, HashAlg, PcrSelection

# TPM2_PCR_Read returns at most 8 digests per call (TPML_DIGEST holds 8: Part 2 §10.9.2).
PCR_READ_MAX_DIGESTS = 8
PCR_SELECT_MIN = 3  # sizeofSelect for 24 PCRs (PCR_SELECT_MIN, Part 2 §10.6.1)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


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


def unmarshal_nv_public(data: bytes) -> tuple[int, int, int, bytes, int]:
    """Parse a TPMS_NV_PUBLIC into (index, name_alg, attributes, auth_policy, size)."""
    try:
        index, name_alg, attrs, plen = struct.unpack_from(">IHIH", data, 0)
        policy = data[12:12 + plen]
        (size,) = struct.unpack_from(">H", data, 12 + plen)
    except struct.error:
        raise FormatError("truncated TPMS_NV_PUBLIC from the TPM") from None
    return index, name_alg, attrs, policy, size
