"""PCR 4: the boot chain as UEFI firmware (and shim) measure it.

TCG PFP §3.3.4.5 / §10.4.4 and EDK2 ``DxeTpm2MeasureBootLib``: at ReadyToBoot the firmware extends
EV_EFI_ACTION "Calling EFI Application from Boot Option" (digest over the ASCII text, no NUL), then
EV_SEPARATOR (PCR 0–7); each image then started via LoadImage (shim, boot loader, UKI or kernel —
shim and sd-boot load the next stage the same way) is measured as EV_EFI_BOOT_SERVICES_APPLICATION
whose digest is the image's Authenticode (PE/COFF) hash.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

from pcrtool.eventlog.families import family_of
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.tcg.constants import EventType

PCR_BOOT_MANAGER_CODE = 4
CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
RETURNING_FROM_EFI_APPLICATION = b"Returning from EFI Application from Boot Option"
SEPARATOR_OK = b"\x00\x00\x00\x00"
SEPARATOR_ERROR = b"\x01\x00\x00\x00"

#: An image is its bytes, or its precomputed Authenticode digests per bank.
Image = Union[bytes, Mapping[HashAlg, bytes]]


def efi_action(pcr: int, text: bytes, banks: Sequence[HashAlg] = DEFAULT_BANKS) -> Measurement:
    """EV_EFI_ACTION: digest over the ASCII action string (TCG PFP §10.4.4, no terminating NUL)."""
    return Measurement.of_event(pcr, EventType.EV_EFI_ACTION, text.decode("ascii"), text, banks)


def separator(pcr: int, banks: Sequence[HashAlg] = DEFAULT_BANKS, value: bytes = SEPARATOR_OK) -> Measurement:
    """EV_SEPARATOR: digest over the 4-byte value (0 on success, 1 on error; some firmware uses FFFFFFFF)."""
    return Measurement.of_event(pcr, EventType.EV_SEPARATOR, f"separator {value.hex()}", value, banks)


def image_digests(image: Image, banks: Sequence[HashAlg], *, name: str = "image") -> dict[HashAlg, bytes]:
    """Authenticode digests of a PE image per bank (or the precomputed ones, checked for every bank)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return family_of(EventType.EV_EFI_BOOT_SERVICES_APPLICATION).rehash_artefact(bytes(image), banks)
    out = {}
    for alg in banks:
        if alg not in image:
            from pcrtool.errors import UsageError
            raise UsageError(f"{name}: no precomputed {alg.bank_name} Authenticode digest",
                             hint="give the image file or digests for every bank")
        if len(image[alg]) != alg.digest_size:
            from pcrtool.errors import FormatError
            raise FormatError(f"{name}: {alg.bank_name} digest has {len(image[alg])} bytes, "
                              f"expected {alg.digest_size}")
        out[alg] = bytes(image[alg])
    return out


def image_load_event(path: str, length: int = 0, *, location: int = 0) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT (TCG PFP §10.2.3, 64-bit UINTN) with a FilePath device path node.

    The digest never covers this structure; it only makes emulated logs look like firmware's.
    """
    import struct

    name = ("\\" + path.replace("/", "\\").lstrip("\\")).encode("utf-16-le") + b"\0\0"
    devpath = struct.pack("<BBH", 4, 4, 4 + len(name)) + name + b"\x7f\xff\x04\x00"
    return struct.pack("<QQQQ", location, length, 0, len(devpath)) + devpath


def application_measurement(image: Image, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                            name: str = "image", pcr: int = PCR_BOOT_MANAGER_CODE) -> Measurement:
    """EV_EFI_BOOT_SERVICES_APPLICATION for one image (digest = Authenticode hash)."""
    length = len(image) if isinstance(image, (bytes, bytearray, memoryview)) else 0
    return Measurement(pcr, image_digests(image, banks, name=name),
                       EventType.EV_EFI_BOOT_SERVICES_APPLICATION, name,
                       image_load_event(name.rsplit("/", 1)[-1], length))


def boot_chain_measurements(images: Sequence[tuple[str, Image]], banks: Sequence[HashAlg] = DEFAULT_BANKS,
                            *, separator_value: bytes = SEPARATOR_OK) -> list[Measurement]:
    """PCR 4 events from reset for a boot chain ``[(name, image), …]`` in load order."""
    out = [efi_action(PCR_BOOT_MANAGER_CODE, CALLING_EFI_APPLICATION, banks),
           separator(PCR_BOOT_MANAGER_CODE, banks, separator_value)]
    out += [application_measurement(img, banks, name=name) for name, img in images]
    return out
