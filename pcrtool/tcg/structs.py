"""construct definitions of the TCG/UEFI structures found in event logs.

Names follow the specs: TCG PC Client PFP 1.05 §10.2–10.4 (TCG_PCR_EVENT, TCG_PCR_EVENT2,
TCG_EfiSpecIDEvent, UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT, UEFI_GPT_DATA,
UEFI_PLATFORM_FIRMWARE_BLOB2, UEFI_HANDOFF_TABLE_POINTERS(2), TCG_PCClientTaggedEvent, the SP800-155
events) and UEFI 2.10 (EFI_SIGNATURE_LIST §32.4.1, GPT §5.3). All little-endian.
Structures with a UINTN field come in 32- and 64-bit variants chosen by the Spec ID uintnSize.
Each is usable for parse and build (round-trip tested).
"""

from __future__ import annotations

import construct as c
from construct import this

from pcrtool.tcg.guid import EFI_GUID

TCG_PCR_EVENT = c.Struct(
    "pcr_index" / c.Int32ul,
    "event_type" / c.Int32ul,
    "digest" / c.Bytes(20),
    "event_size" / c.Rebuild(c.Int32ul, c.len_(this.event)),
    "event" / c.Bytes(this.event_size),
)

TCG_EfiSpecIdEventAlgorithmSize = c.Struct("algorithm_id" / c.Int16ul, "digest_size" / c.Int16ul)

TCG_EfiSpecIDEvent = c.Struct(
    "signature" / c.Bytes(16),
    "platform_class" / c.Int32ul,
    "spec_version_minor" / c.Int8ul,
    "spec_version_major" / c.Int8ul,
    "spec_errata" / c.Int8ul,
    "uintn_size" / c.Int8ul,
    "number_of_algorithms" / c.Rebuild(c.Int32ul, c.len_(this.digest_sizes)),
    "digest_sizes" / c.Array(this.number_of_algorithms, TCG_EfiSpecIdEventAlgorithmSize),
    "vendor_info_size" / c.Rebuild(c.Int8ul, c.len_(this.vendor_info)),
    "vendor_info" / c.Bytes(this.vendor_info_size),
)

# TPMT_HA with the digest size from the Spec ID table, passed as parse(..., digest_sizes={alg: n}).
TPMT_HA = c.Struct(
    "hash_alg" / c.Int16ul,
    "digest" / c.Bytes(lambda ctx: ctx._params.digest_sizes[ctx.hash_alg]),
)

TCG_PCR_EVENT2 = c.Struct(
    "pcr_index" / c.Int32ul,
    "event_type" / c.Int32ul,
    "count" / c.Rebuild(c.Int32ul, c.len_(this.digests)),
    "digests" / c.Array(this.count, TPMT_HA),
    "event_size" / c.Rebuild(c.Int32ul, c.len_(this.event)),
    "event" / c.Bytes(this.event_size),
)


UEFI_VARIABLE_DATA = c.Struct(
    "variable_name" / EFI_GUID,
    "unicode_name_length" / c.Rebuild(c.Int64ul, c.len_(this.unicode_name) // 2),
    "variable_data_length" / c.Rebuild(c.Int64ul, c.len_(this.variable_data)),
    "unicode_name" / c.Bytes(this.unicode_name_length * 2),
    "variable_data" / c.Bytes(this.variable_data_length),
)

EFI_SIGNATURE_DATA = c.Struct(
    "signature_owner" / EFI_GUID,
    "signature_data" / c.Bytes(this._.signature_size - 16),
)

EFI_SIGNATURE_LIST = c.Struct(
    "signature_type" / EFI_GUID,
    "signature_list_size" / c.Rebuild(
        c.Int32ul, 28 + c.len_(this.signature_header) + c.len_(this.signatures) * this.signature_size),
    "signature_header_size" / c.Rebuild(c.Int32ul, c.len_(this.signature_header)),
    "signature_size" / c.Int32ul,
    c.Check(this.signature_size >= 16),
    c.Check(this.signature_list_size >= 28 + this.signature_header_size),
    c.Check((this.signature_list_size - 28 - this.signature_header_size) % this.signature_size == 0),
    "signature_header" / c.Bytes(this.signature_header_size),
    "signatures" / c.Array(
        (this.signature_list_size - 28 - this.signature_header_size) // this.signature_size,
        EFI_SIGNATURE_DATA),
)




TCG_PCClientTaggedEvent = c.Struct(
    "tagged_event_id" / c.Int32ul,
    "tagged_event_data_size" / c.Rebuild(c.Int32ul, c.len_(this.tagged_event_data)),
    "tagged_event_data" / c.Bytes(this.tagged_event_data_size),
)


UEFI_PLATFORM_FIRMWARE_BLOB2 = c.Struct(
    "blob_description_size" / c.Rebuild(c.Int8ul, c.len_(this.blob_description)),
    "blob_description" / c.Bytes(this.blob_description_size),
    "blob_base" / c.Int64ul,
    "blob_length" / c.Int64ul,
)

EFI_PARTITION_TABLE_HEADER = c.Struct(
    "signature" / c.Bytes(8),
    "revision" / c.Int32ul,
    "header_size" / c.Int32ul,
    "header_crc32" / c.Int32ul,
    "reserved" / c.Int32ul,
    "my_lba" / c.Int64ul,
    "alternate_lba" / c.Int64ul,
    "first_usable_lba" / c.Int64ul,
    "last_usable_lba" / c.Int64ul,
    "disk_guid" / EFI_GUID,
    "partition_entry_lba" / c.Int64ul,
    "number_of_partition_entries" / c.Int32ul,
    "size_of_partition_entry" / c.Int32ul,
    "partition_entry_array_crc32" / c.Int32ul,
)

EFI_PARTITION_ENTRY = c.Struct(
    "partition_type_guid" / EFI_GUID,
    "unique_partition_guid" / EFI_GUID,
    "starting_lba" / c.Int64ul,
    "ending_lba" / c.Int64ul,
    "attributes" / c.Int64ul,
    "partition_name" / c.Bytes(lambda ctx: ctx._.header.size_of_partition_entry - 56),
)


def _uintn(width: int):
    return c.Int32ul if width == 4 else c.Int64ul


def uefi_image_load_event(uintn_bytes: int = 8) -> c.Struct:
    """UEFI_IMAGE_LOAD_EVENT (TCG PFP §10.2.3): location u64, length/link address/path length UINTN."""
    u = _uintn(uintn_bytes)
    return c.Struct(
        "image_location_in_memory" / c.Int64ul,
        "image_length_in_memory" / u,
        "image_link_time_address" / u,
        "length_of_device_path" / c.Rebuild(u, c.len_(this.device_path)),
        "device_path" / c.Bytes(this.length_of_device_path),
    )


def uefi_gpt_data(uintn_bytes: int = 8) -> c.Struct:
    """UEFI_GPT_DATA (TCG PFP §10.2.6): header, UINTN number of partitions, entries."""
    u = _uintn(uintn_bytes)
    return c.Struct(
        "header" / EFI_PARTITION_TABLE_HEADER,
        c.Check(this.header.size_of_partition_entry >= 56),
        "number_of_partitions" / c.Rebuild(u, c.len_(this.partitions)),
        "partitions" / c.Array(this.number_of_partitions, EFI_PARTITION_ENTRY),
    )


def uefi_handoff_table_pointers(uintn_bytes: int = 8, *, with_description: bool = False) -> c.Struct:
    """UEFI_HANDOFF_TABLE_POINTERS(2) (TCG PFP §10.2.5): UINTN count, {GUID, pointer} pairs."""
    u = _uintn(uintn_bytes)
    fields = []
    if with_description:
        fields += ["table_description_size" / c.Rebuild(c.Int8ul, c.len_(this.table_description)),
                   "table_description" / c.Bytes(this.table_description_size)]
    fields += ["number_of_tables" / c.Rebuild(u, c.len_(this.table_entry)),
               "table_entry" / c.Array(this.number_of_tables,
                                       c.Struct("vendor_guid" / EFI_GUID, "vendor_table" / u))]
    return c.Struct(*fields)


UEFI_HANDOFF_TABLE_POINTERS = uefi_handoff_table_pointers(8)
UEFI_HANDOFF_TABLE_POINTERS2 = uefi_handoff_table_pointers(8, with_description=True)

TCG_Sp800_155_PlatformId_Event = c.Struct(
    "signature" / c.Bytes(16),
    "vendor_id" / c.Int32ul,
    "reference_manifest_guid" / EFI_GUID,
    "platform_manufacturer_str" / c.PascalString(c.Int8ul, "latin-1"),
    "platform_model" / c.PascalString(c.Int8ul, "latin-1"),
    "platform_version" / c.PascalString(c.Int8ul, "latin-1"),
    "firmware_manufacturer_str" / c.PascalString(c.Int8ul, "latin-1"),
    "firmware_manufacturer_id" / c.Int32ul,
    "firmware_version" / c.PascalString(c.Int8ul, "latin-1"),
)

# PFP 1.06 §10.4.5.3: Event3 adds RIM and platform-certificate locators.
TCG_Sp800_155_PlatformId_Event3 = c.Struct(
    *TCG_Sp800_155_PlatformId_Event.subcons,
    "rim_locator_type" / c.Int32ul,
    "rim_locator" / c.Prefixed(c.Int32ul, c.GreedyBytes),
    "platform_cert_locator_type" / c.Int32ul,
    "platform_cert_locator" / c.Prefixed(c.Int32ul, c.GreedyBytes),
)
