"""``Tpm``: an open ESAPI context with capabilities and PCR access (TPM 2.0 Part 3 §22, §30).

NV admin (``nv.NvMixin``, on the one implementation of each NV command in ``nv.py``) is mixed
in; every method names the TPM command it issues. ``tpm.esys`` is
the raw tpm2-pytss ESAPI for anything not covered here. Sealing, the SRK, signature verification
and policy sessions have one implementation: ``policy_session.py`` (salted session, pinned SRK).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from tpm2_pytss import ESAPI
from tpm2_pytss.constants import TPM2_CAP
from tpm2_pytss.TSS2_Exception import TSS2_Exception

from pcrtool.errors import TpmError, TpmUnavailable, UsageError
from pcrtool.model import PCR_COUNT, HashAlg, PcrSelection, PcrValues
from pcrtool.tpm import INSTALL_HINT
from pcrtool.tpm.marshal import unmarshal_pcr_selection
from pcrtool.tpm.nv import NvMixin
from pcrtool.tpm.policy_session import extend_pcr, read_pcr_selection
from pcrtool.tpm.rc import decode_rc, error_for_rc

# TPM_PT values (Part 2 §6.13): PT_FIXED = 0x100
PT_FAMILY_INDICATOR = 0x100
PT_REVISION = 0x102
PT_MANUFACTURER = 0x105
PT_VENDOR_STRING_1 = 0x106
PT_FIRMWARE_VERSION_1 = 0x10B
PT_FIRMWARE_VERSION_2 = 0x10C
PT_MAX_CAP_ALGS = 127
TPM_CC_FIRST = 0x11F


def _plain(field: str, item):
    if field == "algorithms":
        return (int(item.alg), int(item.algProperties))
    if field == "tpmProperties":
        return (int(item.property), int(item.value))
    return int(item)  # command (TPMA_CC) or handle


class Tpm(NvMixin):
    """An open TPM (ESAPI over a TCTI). Close it, or use it as a context manager."""

    def __init__(self, esys: ESAPI, tcti: str) -> None:
        self.esys = esys
        self.tcti = tcti
        self._nv_buffer_max: int | None = None
        self._banks: list[HashAlg] | None = None

    @classmethod
    def open(cls, tcti: str) -> "Tpm":
        """Open an ESAPI context on ``tcti`` (Esys_Initialize; libtss2 sends no command yet)."""
        try:
            esys = ESAPI(tcti)
        except TSS2_Exception as e:
            d = decode_rc(e.rc)
            raise TpmUnavailable(f"cannot open TPM at {tcti}: {d.describe()}",
                                 hint="is the device present (and readable) or swtpm running? "
                                      "choose it with --tcti or PCRTOOL_TCTI") from None
        except (OSError, RuntimeError, ValueError) as e:
            raise TpmUnavailable(f"cannot open TPM at {tcti}: {e}", hint=INSTALL_HINT) from None
        tpm = cls(esys, tcti)
        try:
            tpm.get_fixed_property(PT_FAMILY_INDICATOR)  # first round trip: is anybody there?
        except TpmError as e:
            tpm.close()
            raise TpmUnavailable(f"no TPM answers at {tcti}: {e.message}",
                                 hint="is the device present or swtpm running? "
                                      "choose it with --tcti or PCRTOOL_TCTI") from None
        return tpm

    def close(self) -> None:
        """Esys_Finalize and TCTI finalize (idempotent)."""
        if self.esys is not None:
            self.esys.close()
            self.esys = None  # type: ignore[assignment]

    def __enter__(self) -> "Tpm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, command: str, fn: Callable[..., Any], *args, context: str | None = None,
              **kwargs) -> Any:
        """Run one ESAPI call; a TSS2 failure becomes a pcrtool error with the decoded RC."""
        try:
            return fn(*args, **kwargs)
        except TSS2_Exception as e:
            raise error_for_rc(command, e.rc, context=context) from None

    # ------------------------------------------------------------------ capabilities (Part 3 §30.2)
    def _get_capability(self, cap: int, first: int, count: int, field: str) -> list:
        """TPM2_GetCapability, following ``moreData`` until the list is complete.

        Items are copied out as plain ints/tuples at once: tpm2-pytss' items point into the
        response buffer, which is freed with the response."""
        items: list = []
        prop = first
        while True:
            more, data = self._call("TPM2_GetCapability", self.esys.get_capability, cap, prop, count)
            batch = [_plain(field, item) for item in getattr(data.data, field)]
            del data
            items.extend(batch)
            if not more or not batch:
                return items
            last = batch[-1]
            prop = (last[0] if isinstance(last, tuple) else last & (0xFFFF if field == "command" else ~0)) + 1

    def get_fixed_property(self, prop: int) -> int | None:
        """One TPM_PT value via TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES)."""
        for p, value in self._get_capability(TPM2_CAP.TPM_PROPERTIES, prop, 1, "tpmProperties")[:1]:
            if p == prop:
                return value
        return None

    def banks(self) -> list[HashAlg]:
        """Active PCR banks: TPM2_GetCapability(TPM_CAP_PCRS) entries with any PCR allocated."""
        _, data = self._call("TPM2_GetCapability", self.esys.get_capability, TPM2_CAP.PCRS, 0, 1)
        assigned = data.data.assignedPCR.marshal()
        out = []
        for alg_id, pcrs in unmarshal_pcr_selection(assigned):
            alg = HashAlg.from_id(alg_id)
            if alg is not None and pcrs:
                out.append(alg)
        return out

    def _active_banks(self) -> list[HashAlg]:
        """banks(), cached: the allocation changes only with TPM2_PCR_Allocate plus a reboot."""
        if self._banks is None:
            self._banks = self.banks()
        return self._banks

    def algorithms(self) -> dict[int, int]:
        """Implemented algorithms {TPM_ALG_ID: TPMA_ALGORITHM} (TPM2_GetCapability, TPM_CAP_ALGS)."""
        return dict(self._get_capability(TPM2_CAP.ALGS, 0, PT_MAX_CAP_ALGS, "algorithms"))

    def commands(self) -> set[int]:
        """Implemented command codes (TPM2_GetCapability, TPM_CAP_COMMANDS)."""
        return {int(c) & 0xFFFF
                for c in self._get_capability(TPM2_CAP.COMMANDS, TPM_CC_FIRST, 256, "command")}

    def info(self) -> dict[str, Any]:
        """Manufacturer, vendor string, firmware and spec revision (TPM_CAP_TPM_PROPERTIES)."""
        props = dict(self._get_capability(TPM2_CAP.TPM_PROPERTIES, PT_FAMILY_INDICATOR, 64,
                                          "tpmProperties"))

        def text(v: int | None) -> str:
            return (v or 0).to_bytes(4, "big").rstrip(b"\0").decode("ascii", "replace")

        vendor = "".join(text(props.get(PT_VENDOR_STRING_1 + i)) for i in range(4))
        fw1, fw2 = props.get(PT_FIRMWARE_VERSION_1, 0), props.get(PT_FIRMWARE_VERSION_2, 0)
        return {
            "manufacturer": text(props.get(PT_MANUFACTURER)),
            "vendor": vendor,
            "firmware": f"{fw1 >> 16}.{fw1 & 0xFFFF}.{fw2 >> 16}.{fw2 & 0xFFFF}",
            "spec_revision": (props.get(PT_REVISION) or 0) / 100,
            "family": text(props.get(PT_FAMILY_INDICATOR)),
        }

    # ------------------------------------------------------------------ PCRs (Part 3 §22)
    def read_pcrs(self, selection: PcrSelection | str) -> PcrValues:
        """TPM2_PCR_Read (Part 3 §22.4), at most 8 PCRs per call; every requested PCR must come back."""
        if isinstance(selection, str):
            selection = PcrSelection.parse(selection)
        inactive = [alg for alg in selection.banks if alg not in self._active_banks()]
        if inactive:
            raise TpmError(f"the TPM has no active {', '.join(a.bank_name for a in inactive)} PCR bank",
                           hint=f"active banks: {', '.join(a.bank_name for a in self._active_banks()) or 'none'}")
        return read_pcr_selection(self.esys, selection)

    def extend(self, pcr: int, digests: Mapping[HashAlg, bytes]) -> None:
        """TPM2_PCR_Extend (Part 3 §22.2): one digest per bank (banks left out stay untouched)."""
        if not 0 <= pcr < PCR_COUNT:
            raise UsageError(f"PCR index {pcr} out of range", hint="PCR indices are 0…23")
        if not digests:
            raise UsageError(f"no digests to extend PCR {pcr} with")
        extend_pcr(self.esys, pcr, digests)

    def extend_data(self, pcr: int, data: bytes, banks: list[HashAlg] | None = None) -> dict[HashAlg, bytes]:
        """Hash ``data`` in software for each bank, then TPM2_PCR_Extend; returns the digests."""
        digests = {alg: alg.digest(data) for alg in (banks or self.banks())}
        self.extend(pcr, digests)
        return digests
