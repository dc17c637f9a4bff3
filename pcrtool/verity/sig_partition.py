"""Root-hash signature payload and systemd's verity-sig partition (repart ``partition_format_verity_sig``).

What is signed is the lowercase hex root hash without a newline: the kernel verifies the root-hash
string of the dm table (``verify_pkcs7_signature`` over ``strlen(root_hash)`` bytes), and
cryptsetup and systemd build that string in lowercase.

The verity-sig partition holds compact JSON ``{"rootHash","certificateFingerprint","signature"}``
(fingerprint = SHA-256 of the certificate DER, signature = base64 DER PKCS#7), NUL-padded to the
partition size (16 KiB as repart makes it). Pure.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from pcrtool.errors import FormatError, UsageError

VERITY_SIG_SIZE = 16 * 1024   # repart VERITY_SIG_SIZE (4 × 4096)
_HEX = re.compile(r"^[0-9a-f]+$")


def roothash_tbs(root_hash: bytes) -> bytes:
    """The exact bytes a root-hash signature covers: lowercase hex, no newline, no NUL."""
    return root_hash.hex().encode("ascii")


def parse_root_hash(text: str | bytes, *, source: str = "root hash") -> bytes:
    """A root hash given as hex (a ``--root-hash-file`` may end in a newline)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise UsageError(f"{source} is not hex text") from None
    clean = text.strip().rstrip("\0").lower()
    if not _HEX.match(clean) or len(clean) not in (40, 64, 128):
        raise UsageError(f"{source} is not a 20-, 32- or 64-byte hex root hash: {text[:80]!r}")
    return bytes.fromhex(clean)


@dataclass(frozen=True, slots=True)
class VeritySig:
    root_hash: bytes
    certificate_fingerprint: bytes
    signature: bytes          # DER PKCS#7

    def to_json(self) -> bytes:
        """Compact JSON, keys in repart's order."""
        obj = {"rootHash": self.root_hash.hex(),
               "certificateFingerprint": self.certificate_fingerprint.hex(),
               "signature": base64.b64encode(self.signature).decode("ascii")}
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def build_sig_partition(sig: VeritySig, size: int = VERITY_SIG_SIZE) -> bytes:
    """The verity-sig partition contents: the JSON, NUL-padded to ``size``."""
    blob = sig.to_json()
    if size % 512:
        raise UsageError(f"partition size {size} is not a multiple of 512")
    if len(blob) >= size:
        raise UsageError(f"verity-sig JSON has {len(blob)} bytes, the partition only {size}",
                         hint="use a larger --size or do not embed a certificate chain")
    return blob + bytes(size - len(blob))


def parse_sig_partition(untrusted_data: bytes, *, source: str = "verity-sig partition") -> VeritySig:
    """Read a verity-sig partition (or the bare JSON): NUL padding is stripped. The partition is
    the image's, so the result is only what it claims; the signature is checked by the caller."""
    data = untrusted_data
    end = data.find(b"\0")
    text = data if end < 0 else data[:end]
    if end >= 0 and data[end:].count(0) != len(data) - end:
        raise FormatError(f"{source}: bytes after the JSON are not NUL padding", offset=end)
    try:
        obj = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{source} is not verity-sig JSON: {e}",
                          hint="expected {\"rootHash\",\"certificateFingerprint\",\"signature\"}") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{source}: JSON is not an object")
    missing = [k for k in ("rootHash", "signature") if not isinstance(obj.get(k), str)]
    if missing:
        raise FormatError(f"{source}: missing or non-string field {missing[0]!r}")
    root = parse_root_hash(obj["rootHash"], source=f"{source} rootHash")
    fp_text = obj.get("certificateFingerprint", "")
    if not isinstance(fp_text, str) or (fp_text and not re.fullmatch(r"[0-9a-fA-F]{64}", fp_text)):
        raise FormatError(f"{source}: certificateFingerprint is not a SHA-256 hex value")
    try:
        signature = base64.b64decode(obj["signature"], validate=True)
    except binascii.Error:
        raise FormatError(f"{source}: signature is not base64") from None
    return VeritySig(root, bytes.fromhex(fp_text), signature)
