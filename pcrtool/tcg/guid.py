"""EFI_GUID: 16 bytes, first three fields little-endian (UEFI 2.10 Appendix A), and well-known GUIDs."""

from __future__ import annotations

import uuid

import construct as c


class _GuidAdapter(c.Adapter):
    def _decode(self, obj: bytes, context, path) -> uuid.UUID:
        return uuid.UUID(bytes_le=obj)

    def _encode(self, obj, context, path) -> bytes:
        if isinstance(obj, str):
            obj = uuid.UUID(obj)
        return obj.bytes_le


EFI_GUID = _GuidAdapter(c.Bytes(16))


def guid_from_bytes(data: bytes) -> uuid.UUID:
    return uuid.UUID(bytes_le=bytes(data[:16]))


_GUID_TEXT: dict[bytes, str] = {}


def guid_text(data: bytes) -> str:
    """``str(guid_from_bytes(data))``, memoised: logs repeat a handful of GUIDs thousands of times."""
    key = bytes(data[:16])
    text = _GUID_TEXT.get(key)
    if text is None:
        text = str(uuid.UUID(bytes_le=key))
        if len(_GUID_TEXT) < 4096:
            _GUID_TEXT[key] = text
    return text


EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE_GUID = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SHIM_LOCK_GUID = uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23")

# EFI_SIGNATURE_LIST.SignatureType (UEFI 2.10 §32.4.1)
EFI_CERT_SHA256_GUID = uuid.UUID("c1c41626-504c-4092-aca9-41f936934328")
EFI_CERT_RSA2048_GUID = uuid.UUID("3c5766e8-269c-4e34-aa14-ed776e85b3b6")
EFI_CERT_RSA2048_SHA256_GUID = uuid.UUID("e2b36190-879b-4a3d-ad8d-f2e7bba32784")
EFI_CERT_SHA1_GUID = uuid.UUID("826ca512-cf10-4ac9-b187-be01496631bd")
EFI_CERT_RSA2048_SHA1_GUID = uuid.UUID("67f8444f-8743-48f1-a328-1eaab8736080")
EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
EFI_CERT_SHA224_GUID = uuid.UUID("0b6e5233-a65c-44c9-9407-d9ab83bfc8bd")
EFI_CERT_SHA384_GUID = uuid.UUID("ff3e5307-9fd0-48c9-85f1-8ad56c701e01")
EFI_CERT_SHA512_GUID = uuid.UUID("093e0fae-a6c4-4f50-9f1b-d41e2b89c19a")
EFI_CERT_X509_SHA256_GUID = uuid.UUID("3bd2a492-96c0-4079-b420-fcf98ef103ed")
EFI_CERT_X509_SHA384_GUID = uuid.UUID("7076876e-80c2-4ee6-aad2-28b349a6865b")
EFI_CERT_X509_SHA512_GUID = uuid.UUID("446dbf63-2502-4cda-bcfa-2465d2b0fe9d")

SIGNATURE_TYPES = {
    EFI_CERT_SHA256_GUID: "sha256", EFI_CERT_RSA2048_GUID: "rsa2048",
    EFI_CERT_RSA2048_SHA256_GUID: "rsa2048-sha256", EFI_CERT_SHA1_GUID: "sha1",
    EFI_CERT_RSA2048_SHA1_GUID: "rsa2048-sha1", EFI_CERT_X509_GUID: "x509",
    EFI_CERT_SHA224_GUID: "sha224", EFI_CERT_SHA384_GUID: "sha384", EFI_CERT_SHA512_GUID: "sha512",
    EFI_CERT_X509_SHA256_GUID: "x509-sha256", EFI_CERT_X509_SHA384_GUID: "x509-sha384",
    EFI_CERT_X509_SHA512_GUID: "x509-sha512",
}

WELL_KNOWN = {
    EFI_GLOBAL_VARIABLE: "EFI_GLOBAL_VARIABLE",
    EFI_IMAGE_SECURITY_DATABASE_GUID: "EFI_IMAGE_SECURITY_DATABASE",
    SHIM_LOCK_GUID: "SHIM_LOCK",
    uuid.UUID("77fa9abd-0359-4d32-bd60-28f4e78f784b"): "MICROSOFT",
    uuid.UUID("eb9d2d30-2d88-11d3-9a16-0090273fc14d"): "EFI_ACPI_TABLE",
    uuid.UUID("8868e871-e4f1-11d3-bc22-0080c73c8881"): "EFI_ACPI_20_TABLE",
    uuid.UUID("eb9d2d31-2d88-11d3-9a16-0090273fc14d"): "SMBIOS_TABLE",
    uuid.UUID("f2fd1544-9794-4a2c-992e-e5bbcf20e394"): "SMBIOS3_TABLE",
    uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b"): "EFI System Partition",
    uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4"): "Linux filesystem",
    uuid.UUID("e6d6d379-f507-44c2-a23c-238f2a3df928"): "Linux LVM",
    uuid.UUID("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"): "Linux swap",
    uuid.UUID("21686148-6449-6e6f-744e-656564454649"): "BIOS boot",
    uuid.UUID("ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"): "Microsoft basic data",
    uuid.UUID("e3c9e316-0b5c-4db8-817d-f92df00215ae"): "Microsoft reserved",
    uuid.UUID("de94bba4-06d1-4d40-a16a-bfd50179d6ac"): "Windows recovery",
    uuid.UUID("4f68bce3-e8cd-4db1-96e7-fbcaf984b709"): "Linux root (x86-64)",
    uuid.UUID("bc13c2ff-59e6-4262-a352-b275fd6f7172"): "Linux extended boot",
}
