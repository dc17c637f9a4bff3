"""NV indices: define, read, write, increment, set bits, undefine (TPM 2.0 Part 3 §31).

Authorization is chosen with ``auth``: ``"index"`` (the index's own authValue, ``password``) or
``"owner"`` / ``"platform"`` (the hierarchy, for OWNERREAD/OWNERWRITE indices).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tpm2_pytss.constants import ESYS_TR, TPM2_CAP
from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg
from pcrtool.policy.digests import tpms_nv_public
from pcrtool.tpm.marshal import unmarshal_nv_public

NV_INDEX_FIRST = 0x01000000
NV_INDEX_LAST = 0x01FFFFFF
TPMA_NV_WRITTEN = 0x20000000
TPM_NT_MASK = 0x000000F0
NT_NAMES = {0x0: "ordinary", 0x1: "counter", 0x2: "bits", 0x4: "extend", 0x8: "pin_fail", 0x9: "pin_pass"}

_HIERARCHIES = {"owner": ESYS_TR.OWNER, "platform": ESYS_TR.PLATFORM}


@dataclass(frozen=True, slots=True)
class NvPublic:
    """TPMS_NV_PUBLIC of an index as the TPM reports it, plus its Name."""

    index: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    size: int
    name: bytes

    @property
    def type_name(self) -> str:
        return NT_NAMES.get((self.attributes & TPM_NT_MASK) >> 4, "unknown")

    @property
    def written(self) -> bool:
        return bool(self.attributes & TPMA_NV_WRITTEN)


def _check_index(index: int) -> int:
    if not NV_INDEX_FIRST <= index <= NV_INDEX_LAST:
        raise UsageError(f"NV index 0x{index:08x} is outside 0x01000000…0x01ffffff",
                         hint="NV indices start with 0x01, e.g. 0x01800000")
    return index


class NvMixin:
    """NV methods of ``Tpm`` (needs ``self.esys`` and ``self._call``)."""

    # -- handles
    def _nv_handle(self, index: int, password: bytes = b""):
        """ESYS_TR for an index (Esys_TR_FromTPMPublic issues TPM2_NV_ReadPublic)."""
        handle = self._call("TPM2_NV_ReadPublic", self.esys.tr_from_tpmpublic, _check_index(index),
                            context=f"NV index 0x{index:08x}")
        if password:
            self.esys.tr_set_auth(handle, password)
        return handle

    def _nv_auth(self, auth: str, handle):
        if auth == "index":
            return handle
        try:
            return _HIERARCHIES[auth]
        except KeyError:
            raise UsageError(f"unknown NV authorization {auth!r}", hint="use index, owner or platform") from None

    def _with_nv(self, index: int, password: bytes, fn):
        handle = self._nv_handle(index, password)
        try:
            return fn(handle)
        finally:
            self.esys.tr_close(handle)

    # -- define / undefine (Part 3 §31.3, §31.4)
    def nv_define(self, index: int, size: int, attrs: int, auth: bytes = b"", *, policy: bytes = b"",
                  name_alg: HashAlg = HashAlg.SHA256, hierarchy: str = "owner") -> NvPublic:
        """TPM2_NV_DefineSpace (Part 3 §31.3) under the owner (or platform) hierarchy."""
        public = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC.unmarshal(
            tpms_nv_public(_check_index(index), attrs, size, auth_policy=policy, name_alg=name_alg))[0])
        handle = self._call("TPM2_NV_DefineSpace", self.esys.nv_define_space, auth or None, public,
                            _HIERARCHIES[hierarchy], context=f"NV index 0x{index:08x}")
        self.esys.tr_close(handle)
        return self.nv_read_public(index)

    def nv_undefine(self, index: int, *, hierarchy: str = "owner") -> None:
        """TPM2_NV_UndefineSpace (Part 3 §31.4); on success ESAPI frees the ESYS_TR itself."""
        handle = self._nv_handle(index)
        try:
            self._call("TPM2_NV_UndefineSpace", self.esys.nv_undefine_space, handle,
                       _HIERARCHIES[hierarchy], context=f"NV index 0x{index:08x}")
        except BaseException:
            self.esys.tr_close(handle)
            raise

    # -- public area (Part 3 §31.6)
    def nv_read_public(self, index: int) -> NvPublic:
        """TPM2_NV_ReadPublic (Part 3 §31.6): attributes, size and the current Name (WRITTEN counts)."""
        def read(handle):
            pub, name = self._call("TPM2_NV_ReadPublic", self.esys.nv_read_public, handle,
                                   context=f"NV index 0x{index:08x}")
            idx, name_alg, attrs, policy, size = unmarshal_nv_public(pub.nvPublic.marshal())
            return NvPublic(idx, name_alg, attrs, policy, size, bytes(name))
        return self._with_nv(index, b"", read)

    def nv_exists(self, index: int) -> bool:
        """Whether an index is defined (TPM2_GetCapability, TPM_CAP_HANDLES)."""
        return _check_index(index) in self.nv_indices()

    def nv_indices(self) -> list[int]:
        """All defined NV indices (TPM2_GetCapability, TPM_CAP_HANDLES from 0x01000000)."""
        handles = self._get_capability(TPM2_CAP.HANDLES, NV_INDEX_FIRST, 254, "handles")
        return [int(h) for h in handles if NV_INDEX_FIRST <= int(h) <= NV_INDEX_LAST]

    # -- data (Part 3 §31.13, §31.5, §31.7, §31.8)
    def _buffer_max(self) -> int:
        if self._nv_buffer_max is None:
            self._nv_buffer_max = self.get_fixed_property(0x12C) or 512  # TPM_PT_NV_BUFFER_MAX
        return self._nv_buffer_max

    def nv_read(self, index: int, size: int | None = None, offset: int = 0, *, auth: str = "index",
                password: bytes = b"") -> bytes:
        """TPM2_NV_Read (Part 3 §31.13) in chunks of TPM_PT_NV_BUFFER_MAX; whole index by default."""
        if size is None:
            size = self.nv_read_public(index).size - offset

        def read(handle):
            out = b""
            while len(out) < size:
                n = min(self._buffer_max(), size - len(out))
                out += bytes(self._call("TPM2_NV_Read", self.esys.nv_read, handle, n, offset + len(out),
                                        auth_handle=self._nv_auth(auth, handle),
                                        context=f"NV index 0x{index:08x}"))
            return out
        return self._with_nv(index, password, read)

    def nv_write(self, index: int, data: bytes, offset: int = 0, *, auth: str = "index",
                 password: bytes = b"") -> None:
        """TPM2_NV_Write (Part 3 §31.5) in chunks of TPM_PT_NV_BUFFER_MAX."""
        def write(handle):
            pos = 0
            while pos < len(data) or (pos == 0 and not data):
                chunk = data[pos:pos + self._buffer_max()]
                self._call("TPM2_NV_Write", self.esys.nv_write, handle, chunk, offset + pos,
                           auth_handle=self._nv_auth(auth, handle), context=f"NV index 0x{index:08x}")
                pos += len(chunk)
                if not data:
                    break
        self._with_nv(index, password, write)

    def nv_increment(self, index: int, *, auth: str = "index", password: bytes = b"") -> int:
        """TPM2_NV_Increment (Part 3 §31.7) on a counter index; returns the new value (NV_Read)."""
        self._with_nv(index, password, lambda h: self._call(
            "TPM2_NV_Increment", self.esys.nv_increment, h, auth_handle=self._nv_auth(auth, h),
            context=f"NV index 0x{index:08x}"))
        return self.nv_read_counter(index, auth=auth, password=password)

    def nv_read_counter(self, index: int, *, auth: str = "index", password: bytes = b"") -> int:
        """TPM2_NV_Read of an 8-byte counter/bits index, big-endian (Part 2 §13.4 TPM_NT_COUNTER)."""
        data = self.nv_read(index, 8, 0, auth=auth, password=password)
        return struct.unpack(">Q", data)[0]

    def nv_set_bits(self, index: int, bits: int, *, auth: str = "index", password: bytes = b"") -> int:
        """TPM2_NV_SetBits (Part 3 §31.8): OR ``bits`` into a bit-field index; returns the new value."""
        if not 0 <= bits < 2 ** 64:
            raise UsageError(f"bits {bits} do not fit 64 bits")
        self._with_nv(index, password, lambda h: self._call(
            "TPM2_NV_SetBits", self.esys.nv_set_bits, h, bits, auth_handle=self._nv_auth(auth, h),
            context=f"NV index 0x{index:08x}"))
        return self.nv_read_counter(index, auth=auth, password=password)

