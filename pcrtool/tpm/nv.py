"""NV indices (TPM 2.0 Part 3 §31): the one implementation of each NV command.

Module functions take an ESAPI context and issue one command each (``open_nv``/``find_nv``:
TPM2_NV_ReadPublic through Esys_TR_FromTPMPublic, ``read_nv_public``, ``define_nv``,
``undefine_nv``, ``read_nv``, ``write_nv``, ``increment_nv``, ``set_bits_nv``). Two users call
them: ``Tpm``'s NV admin methods (``NvMixin``: `pcrtool tpm nv-*`, authorization chosen with
``auth``: ``"index"`` — the index's own authValue, ``password`` — or ``"owner"`` / ``"platform"``)
and the floor/epoch counter of enrolment and unlock (``define_counter``, ``increment_counter``,
``read_counter``: owner authorization through the salted owner session of policy_session, the
counter's Name checked by the caller before anything authorizes to it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pcrtool.errors import TpmError, UsageError
from pcrtool.model import HashAlg
from pcrtool.policy import digests
from pcrtool.tpm.marshal import unmarshal_nv_public
from pcrtool.tpm.policy_session import owner_session1, set_owner_auth, tpm_call
from pcrtool.tpm.rc import decode_rc

PT_NV_BUFFER_MAX = 0x12C   # TPM_PT_NV_BUFFER_MAX (Part 2 §6.13): the largest NV_Read/NV_Write piece

try:  # tpm2-pytss is optional; pcrtool.tpm.enroll imports this module
    from tpm2_pytss.constants import ESYS_TR, TPM2_CAP
    from tpm2_pytss.types import TPM2B_NV_PUBLIC, TPMS_NV_PUBLIC
except ImportError:  # pragma: no cover - exercised only without tpm2-pytss
    ESYS_TR = TPM2_CAP = TPM2B_NV_PUBLIC = TPMS_NV_PUBLIC = None

NV_INDEX_FIRST = 0x01000000
NV_INDEX_LAST = 0x01FFFFFF
TPMA_NV_WRITTEN = 0x20000000
TPM_NT_MASK = 0x000000F0
NT_NAMES = {0x0: "ordinary", 0x1: "counter", 0x2: "bits", 0x4: "extend", 0x8: "pin_fail", 0x9: "pin_pass"}


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


def check_index(index: int) -> int:
    if not NV_INDEX_FIRST <= index <= NV_INDEX_LAST:
        raise UsageError(f"NV index 0x{index:08x} is outside 0x01000000…0x01ffffff",
                         hint="NV indices start with 0x01, e.g. 0x01800000")
    return index


def _where(index: int) -> str:
    return f"NV index 0x{index:08x}"


# --- the NV commands (Part 3 §31) ----------------------------------------------------------------

def open_nv(esys, index: int):
    """An ESYS_TR for a defined index (Esys_TR_FromTPMPublic issues TPM2_NV_ReadPublic, §31.6);
    TpmError TPM_RC_HANDLE when it is not defined."""
    return tpm_call("TPM2_NV_ReadPublic", esys.tr_from_tpmpublic, check_index(index), context=_where(index))


def find_nv(esys, index: int):
    """``open_nv``, or None when the index is not defined (any other failure is raised)."""
    try:
        return open_nv(esys, index)
    except TpmError as err:
        if err.rc is not None and decode_rc(err.rc).base == "HANDLE":
            return None
        raise


def read_nv_public(esys, handle, index: int | None = None) -> NvPublic:
    """TPM2_NV_ReadPublic (Part 3 §31.6): attributes, size and the current Name (WRITTEN counts)."""
    pub, name = tpm_call("TPM2_NV_ReadPublic", esys.nv_read_public, handle,
                         context=_where(index) if index is not None else None)
    idx, name_alg, attrs, policy, size = unmarshal_nv_public(pub.nvPublic.marshal())
    return NvPublic(idx, name_alg, attrs, policy, size, bytes(name))


def define_nv(esys, index: int, size: int, attributes: int, *, auth: bytes = b"", policy: bytes = b"",
              name_alg: HashAlg = HashAlg.SHA256, hierarchy=None, session1=None, hint: str | None = None):
    """TPM2_NV_DefineSpace (Part 3 §31.3) under the owner (default) or platform hierarchy."""
    public = TPM2B_NV_PUBLIC(nvPublic=TPMS_NV_PUBLIC.unmarshal(
        digests.tpms_nv_public(check_index(index), attributes, size, auth_policy=policy, name_alg=name_alg))[0])
    return tpm_call("TPM2_NV_DefineSpace", esys.nv_define_space, auth or None, public,
                    ESYS_TR.OWNER if hierarchy is None else hierarchy,
                    session1=ESYS_TR.PASSWORD if session1 is None else session1, context=_where(index), hint=hint)


def undefine_nv(esys, handle, *, hierarchy=None, session1=None, index: int | None = None) -> None:
    """TPM2_NV_UndefineSpace (Part 3 §31.4); on success ESAPI frees the ESYS_TR itself."""
    tpm_call("TPM2_NV_UndefineSpace", esys.nv_undefine_space, handle, ESYS_TR.OWNER if hierarchy is None else hierarchy,
             session1=ESYS_TR.PASSWORD if session1 is None else session1,
             context=_where(index) if index is not None else None)


def read_nv(esys, handle, size: int, offset: int = 0, *, auth_handle=None, session1=None, chunk: int = 1024,
            index: int | None = None, hint: str | None = None) -> bytes:
    """TPM2_NV_Read (Part 3 §31.13) in pieces of at most ``chunk`` bytes (TPM_PT_NV_BUFFER_MAX);
    ``auth_handle``: the index itself (default) or a hierarchy."""
    out = b""
    while len(out) < size:
        n = min(chunk, size - len(out))
        out += bytes(tpm_call("TPM2_NV_Read", esys.nv_read, handle, n, offset + len(out),
                              auth_handle=handle if auth_handle is None else auth_handle,
                              session1=ESYS_TR.PASSWORD if session1 is None else session1,
                              context=_where(index) if index is not None else None, hint=hint))
    return out


def write_nv(esys, handle, data: bytes, offset: int = 0, *, auth_handle=None, chunk: int = 1024,
             index: int | None = None) -> None:
    """TPM2_NV_Write (Part 3 §31.5) in pieces of at most ``chunk`` bytes (one empty write for b"")."""
    pos = 0
    while True:
        piece = data[pos:pos + chunk]
        tpm_call("TPM2_NV_Write", esys.nv_write, handle, piece, offset + pos,
                 auth_handle=handle if auth_handle is None else auth_handle,
                 context=_where(index) if index is not None else None)
        pos += len(piece)
        if pos >= len(data):
            return


def increment_nv(esys, handle, *, auth_handle=None, session1=None, index: int | None = None,
                 hint: str | None = None) -> None:
    """TPM2_NV_Increment (Part 3 §31.7) of a counter index."""
    tpm_call("TPM2_NV_Increment", esys.nv_increment, handle, handle if auth_handle is None else auth_handle,
             session1=ESYS_TR.PASSWORD if session1 is None else session1,
             context=_where(index) if index is not None else None, hint=hint)


def set_bits_nv(esys, handle, bits: int, *, auth_handle=None, index: int | None = None) -> None:
    """TPM2_NV_SetBits (Part 3 §31.8): OR ``bits`` into a bit-field index."""
    if not 0 <= bits < 2 ** 64:
        raise UsageError(f"bits {bits} do not fit 64 bits")
    tpm_call("TPM2_NV_SetBits", esys.nv_set_bits, handle, bits, auth_handle=handle if auth_handle is None else auth_handle,
             context=_where(index) if index is not None else None)


# --- the floor / epoch counter ---------------------------------------------------------------------

def define_counter(esys, index: int, owner_auth: bytes | None = None):
    """TPM2_NV_DefineSpace of the floor counter (digests.COUNTER_ATTRIBUTES) with owner
    authorization (through the salted owner session when there is an owner password)."""
    set_owner_auth(esys, owner_auth)
    return define_nv(esys, index, digests.COUNTER_SIZE, int(digests.COUNTER_ATTRIBUTES), session1=owner_session1(esys),
                     hint="an index with this handle may exist already; pick another with --counter-index")


def increment_counter(esys, handle, owner_auth: bytes | None = None) -> None:
    """TPM2_NV_Increment with owner authorization (the counter has OWNERWRITE only: with an owner
    password set, nobody else can move the floor)."""
    set_owner_auth(esys, owner_auth)
    increment_nv(esys, handle, auth_handle=ESYS_TR.OWNER, session1=owner_session1(esys),
                 hint="the owner hierarchy has a password: pass it with --owner-auth-file")


def read_counter(esys, handle) -> int:
    """TPM2_NV_Read of the counter with the index's own (empty) auth (AUTHREAD), big-endian
    (Part 2 §13.4 TPM_NT_COUNTER)."""
    data = read_nv(esys, handle, digests.COUNTER_SIZE,
                   hint="the counter is not initialised (never incremented) or was redefined")
    return struct.unpack(">Q", data)[0]


def check_counter_attributes(public: NvPublic, index: int) -> None:
    """The index at ``index`` must be a floor counter as pcrtool defines it (else another
    --counter-index is needed)."""
    want = int(digests.COUNTER_ATTRIBUTES)
    got = public.attributes & ~int(digests.TPMA_NV.WRITTEN)
    if got != want or public.size != digests.COUNTER_SIZE:
        raise UsageError(f"NV index {index:#x} exists with other attributes ({got:#x}, size {public.size})",
                         hint="use another --counter-index or remove that index (tpm2_nvundefine)")


# --- Tpm's NV admin methods --------------------------------------------------------------------------

_HIERARCHIES = ("owner", "platform")


class NvMixin:
    """NV methods of ``Tpm`` (needs ``self.esys``), on the module's commands."""

    def _hierarchy(self, name: str):
        if name not in _HIERARCHIES:
            raise UsageError(f"unknown NV authorization {name!r}", hint="use index, owner or platform")
        return ESYS_TR.OWNER if name == "owner" else ESYS_TR.PLATFORM

    def _with_nv(self, index: int, password: bytes, fn):
        handle = open_nv(self.esys, index)
        if password:
            self.esys.tr_set_auth(handle, password)
        try:
            return fn(handle)
        finally:
            self.esys.tr_close(handle)

    def _auth(self, auth: str, handle):
        return handle if auth == "index" else self._hierarchy(auth)

    def nv_define(self, index: int, size: int, attrs: int, auth: bytes = b"", *, policy: bytes = b"",
                  name_alg: HashAlg = HashAlg.SHA256, hierarchy: str = "owner") -> NvPublic:
        """TPM2_NV_DefineSpace under the owner (or platform) hierarchy; returns the new public area."""
        handle = define_nv(self.esys, index, size, attrs, auth=auth, policy=policy, name_alg=name_alg,
                           hierarchy=self._hierarchy(hierarchy))
        self.esys.tr_close(handle)
        return self.nv_read_public(index)

    def nv_undefine(self, index: int, *, hierarchy: str = "owner") -> None:
        handle = open_nv(self.esys, index)
        try:
            undefine_nv(self.esys, handle, hierarchy=self._hierarchy(hierarchy), index=index)
        except BaseException:
            self.esys.tr_close(handle)
            raise

    def nv_read_public(self, index: int) -> NvPublic:
        return self._with_nv(index, b"", lambda h: read_nv_public(self.esys, h, index))

    def nv_indices(self) -> list[int]:
        """All defined NV indices (TPM2_GetCapability, TPM_CAP_HANDLES from 0x01000000)."""
        handles = self._get_capability(TPM2_CAP.HANDLES, NV_INDEX_FIRST, 254, "handles")
        return [int(h) for h in handles if NV_INDEX_FIRST <= int(h) <= NV_INDEX_LAST]

    def _buffer_max(self) -> int:
        if self._nv_buffer_max is None:
            self._nv_buffer_max = self.get_fixed_property(PT_NV_BUFFER_MAX) or 512
        return self._nv_buffer_max

    def nv_read(self, index: int, size: int | None = None, offset: int = 0, *, auth: str = "index",
                password: bytes = b"") -> bytes:
        """The index's data (whole index by default)."""
        if size is None:
            size = self.nv_read_public(index).size - offset
        return self._with_nv(index, password, lambda h: read_nv(
            self.esys, h, size, offset, auth_handle=self._auth(auth, h), chunk=self._buffer_max(), index=index))

    def nv_write(self, index: int, data: bytes, offset: int = 0, *, auth: str = "index",
                 password: bytes = b"") -> None:
        self._with_nv(index, password, lambda h: write_nv(
            self.esys, h, data, offset, auth_handle=self._auth(auth, h), chunk=self._buffer_max(), index=index))

    def nv_increment(self, index: int, *, auth: str = "index", password: bytes = b"") -> int:
        """Increment a counter index; returns the new value (NV_Read)."""
        self._with_nv(index, password, lambda h: increment_nv(self.esys, h, auth_handle=self._auth(auth, h),
                                                              index=index))
        return self.nv_read_counter(index, auth=auth, password=password)

    def nv_read_counter(self, index: int, *, auth: str = "index", password: bytes = b"") -> int:
        """An 8-byte counter/bits index, big-endian (Part 2 §13.4 TPM_NT_COUNTER)."""
        return struct.unpack(">Q", self.nv_read(index, 8, 0, auth=auth, password=password))[0]

    def nv_set_bits(self, index: int, bits: int, *, auth: str = "index", password: bytes = b"") -> int:
        """OR ``bits`` into a bit-field index; returns the new value."""
        self._with_nv(index, password, lambda h: set_bits_nv(self.esys, h, bits, auth_handle=self._auth(auth, h),
                                                             index=index))
        return self.nv_read_counter(index, auth=auth, password=password)
