"""PCR 5: EV_EFI_GPT_EVENT as EDK2 ``Tcg2MeasureGptTable`` measures it, from a disk image.

UEFI_GPT_DATA (TCG PFP §10.4.5): the 92-byte EFI_PARTITION_TABLE_HEADER, a UINTN count of the
non-empty partition entries, then those entries (SizeOfPartitionEntry bytes each, in table order).
"""

from __future__ import annotations

import zlib
from typing import Sequence

from pcrtool.errors import FormatError
from pcrtool.gpt import HEADER_SIZE, SIGNATURE, parse_header
from pcrtool.model import HashAlg
from pcrtool.predict.events import DEFAULT_BANKS, Measurement
from pcrtool.tcg.constants import EventType

PCR_BOOT_MANAGER_CONFIG = 5


def gpt_event_data(disk: bytes, *, sector_size: int = 512, uintn_size: int = 8, check_crc: bool = True) -> bytes:
    """UEFI_GPT_DATA for the primary GPT of a disk image (``disk`` needs the first sectors only).
    EDK2 refuses a partition array whose CRC does not match; systemd-pcrlock does not check it
    (``check_crc=False``)."""
    hdr = disk[sector_size:sector_size + HEADER_SIZE]
    if len(hdr) < HEADER_SIZE or hdr[:8] != SIGNATURE:
        raise FormatError(f"no GPT header at LBA 1 (sector size {sector_size})",
                          hint="give a GPT disk image; try --sector-size 4096")
    h = parse_header(hdr)
    if h.header_size > sector_size:
        raise FormatError(f"GPT header size {h.header_size} is longer than a sector")
    entries_lba, count, entry_size, entries_crc = h.entries_lba, h.entries_count, h.entry_size, h.entries_crc
    if entry_size < 128 or count > 4096 or count * entry_size > 1 << 20:
        raise FormatError(f"implausible GPT: {count} entries of {entry_size} bytes")
    start = entries_lba * sector_size
    table = disk[start:start + count * entry_size]
    if len(table) != count * entry_size:
        raise FormatError("disk image ends inside the GPT partition entry array", offset=len(disk))
    if check_crc and zlib.crc32(table) != entries_crc:
        raise FormatError("GPT partition entry array CRC mismatch", hint="the image's GPT is corrupt")
    used = [table[i:i + entry_size] for i in range(0, len(table), entry_size)
            if table[i:i + 16] != bytes(16)]
    return hdr + len(used).to_bytes(uintn_size, "little") + b"".join(used)


def gpt_measurement(disk: bytes, banks: Sequence[HashAlg] = DEFAULT_BANKS, *,
                    sector_size: int = 512) -> Measurement:
    data = gpt_event_data(disk, sector_size=sector_size)
    return Measurement.of_event(PCR_BOOT_MANAGER_CONFIG, EventType.EV_EFI_GPT_EVENT, "GPT", data, banks)
