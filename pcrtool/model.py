"""Shared value types: hash algorithms, PCR selections and PCR values.

Digests are ``bytes`` inside pcrtool and lowercase hex only at the edges. The text syntaxes are
the ones tpm2-tools and systemd use: selections ``sha256:0,7+sha1:7`` (tpm2-tools "PCR selection
list") and values ``11:sha256=<hex>`` (systemd-measure, tpm2-tools ``tpm2_policypcr``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Iterator, Mapping

from pcrtool.errors import FormatError, UsageError

PCR_COUNT = 24


class HashAlg(IntEnum):
    """TPM_ALG_ID of the hash algorithms a PCR bank can use (TPM 2.0 Part 2 §6.3, TCG Algorithm Registry)."""

    SHA1 = 0x0004
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    SM3_256 = 0x0012
    SHA3_256 = 0x0027
    SHA3_384 = 0x0028
    SHA3_512 = 0x0029

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZES[self]

    @property
    def hashlib_name(self) -> str:
        return _HASHLIB_NAMES[self]

    @property
    def bank_name(self) -> str:
        """Name as tpm2-tools, sysfs and systemd spell it (``sha256``, ``sm3_256``)."""
        return self.name.lower()

    def new(self, data: bytes = b""):
        """A hashlib object for this algorithm."""
        return hashlib.new(self.hashlib_name, data)

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.hashlib_name, data).digest()

    @property
    def zero(self) -> bytes:
        return bytes(self.digest_size)

    @classmethod
    def from_name(cls, name: str) -> "HashAlg":
        key = name.strip().lower().replace("-", "").replace("_", "")
        alg = _BY_NAME.get(key)
        if alg is None:
            raise UsageError(f"unknown hash algorithm {name!r}",
                             hint="use one of sha1, sha256, sha384, sha512, sm3_256")
        return alg

    @classmethod
    def from_id(cls, alg_id: int) -> "HashAlg | None":
        try:
            return cls(alg_id)
        except ValueError:
            return None


_DIGEST_SIZES = {
    HashAlg.SHA1: 20, HashAlg.SHA256: 32, HashAlg.SHA384: 48, HashAlg.SHA512: 64,
    HashAlg.SM3_256: 32, HashAlg.SHA3_256: 32, HashAlg.SHA3_384: 48, HashAlg.SHA3_512: 64,
}
_HASHLIB_NAMES = {
    HashAlg.SHA1: "sha1", HashAlg.SHA256: "sha256", HashAlg.SHA384: "sha384",
    HashAlg.SHA512: "sha512", HashAlg.SM3_256: "sm3", HashAlg.SHA3_256: "sha3_256",
    HashAlg.SHA3_384: "sha3_384", HashAlg.SHA3_512: "sha3_512",
}
_BY_NAME = {a.name.lower().replace("_", ""): a for a in HashAlg} | {"sm3": HashAlg.SM3_256}


def parse_pcr_index(text: str) -> int:
    try:
        index = int(text, 0)
    except ValueError:
        raise UsageError(f"not a PCR index: {text!r}", hint="PCR indices are 0…23") from None
    if not 0 <= index < PCR_COUNT:
        raise UsageError(f"PCR index {index} out of range", hint="PCR indices are 0…23")
    return index


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """Which PCRs of which banks: ``{HashAlg.SHA256: (0, 7)}``."""

    banks: Mapping[HashAlg, tuple[int, ...]]

    @classmethod
    def parse(cls, text: str) -> "PcrSelection":
        """Parse tpm2-tools syntax: ``sha256:0,7+sha1:7``, ``sha256:all``; also ``0,7`` (sha256)."""
        banks: dict[HashAlg, tuple[int, ...]] = {}
        text = text.strip()
        if not text:
            raise UsageError("empty PCR selection", hint="e.g. sha256:0,7+sha1:7")
        for part in text.split("+"):
            if ":" in part:
                alg_text, _, pcrs_text = part.partition(":")
                alg = HashAlg.from_name(alg_text)
            else:
                alg, pcrs_text = HashAlg.SHA256, part
            if pcrs_text.strip().lower() == "all":
                pcrs = tuple(range(PCR_COUNT))
            elif pcrs_text.strip() == "":
                pcrs = ()
            else:
                pcrs = tuple(sorted({parse_pcr_index(p) for p in pcrs_text.split(",") if p.strip()}))
            banks[alg] = tuple(sorted(set(banks.get(alg, ())) | set(pcrs)))
        return cls(banks)

    def __str__(self) -> str:
        return "+".join(f"{alg.bank_name}:{','.join(map(str, pcrs))}" for alg, pcrs in self.banks.items())

    def items(self) -> Iterator[tuple[HashAlg, int]]:
        for alg, pcrs in self.banks.items():
            for pcr in pcrs:
                yield alg, pcr


@dataclass(frozen=True, slots=True)
class PcrValue:
    pcr: int
    alg: HashAlg
    value: bytes

    def __str__(self) -> str:
        return f"{self.pcr}:{self.alg.bank_name}={self.value.hex()}"


@dataclass(slots=True)
class PcrValues:
    """PCR values per bank: ``values[HashAlg.SHA256][11] = b'...'``."""

    values: dict[HashAlg, dict[int, bytes]] = field(default_factory=dict)

    def get(self, alg: HashAlg, pcr: int) -> bytes | None:
        return self.values.get(alg, {}).get(pcr)

    def set(self, alg: HashAlg, pcr: int, value: bytes) -> None:
        if len(value) != alg.digest_size:
            raise FormatError(f"PCR {pcr} {alg.bank_name} value has {len(value)} bytes, "
                              f"expected {alg.digest_size}")
        self.values.setdefault(alg, {})[pcr] = value

    def banks(self) -> list[HashAlg]:
        return list(self.values)

    def __iter__(self) -> Iterator[PcrValue]:
        for alg, pcrs in self.values.items():
            for pcr in sorted(pcrs):
                yield PcrValue(pcr, alg, pcrs[pcr])

    def to_text(self) -> str:
        """systemd-measure / tpm2-tools text: one ``N:alg=hex`` line per value."""
        return "".join(f"{v}\n" for v in self)

    def to_json(self) -> dict:
        return {alg.bank_name: {str(p): v.hex() for p, v in sorted(pcrs.items())}
                for alg, pcrs in self.values.items()}

    @classmethod
    def parse(cls, text: str, *, source: str = "PCR values") -> "PcrValues":
        """Parse PCR values in any of the formats users have at hand.

        - ``N:alg=hex`` lines (systemd-measure, tpm2-tools), also ``alg:N=hex``;
        - tpm2_pcrread YAML (``sha256:`` then ``  0 : 0x…`` lines);
        - JSON: ``{"sha256": {"0": hex}}``, ``{"banks": {...}}``, ``{"bank": alg, "pcrs": {...}}``,
          or systemd-measure's ``{"sha256": [{"pcr": 11, "hash": hex}]}``.
        """
        stripped = text.strip()
        if stripped.startswith("{") or stripped.startswith("["):
            return cls._parse_json(stripped, source)
        return cls._parse_lines(text, source)

    @classmethod
    def _parse_json(cls, text: str, source: str) -> "PcrValues":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise FormatError(f"{source}: bad JSON at line {e.lineno} column {e.colno}: {e.msg}",
                              hint="expected {\"sha256\": {\"0\": \"hex\", …}}") from None
        return cls.from_json(data, source=source)

    @classmethod
    def from_json(cls, data: object, *, source: str = "PCR values") -> "PcrValues":
        """PCR values from already-decoded JSON (any of the shapes ``parse`` reads as JSON)."""
        out = cls()
        if isinstance(data, dict) and "banks" in data and isinstance(data["banks"], dict):
            data = data["banks"]
        elif isinstance(data, dict) and "bank" in data and "pcrs" in data:
            data = {data["bank"]: data["pcrs"]}
        elif isinstance(data, dict) and isinstance(data.get("pcrs"), list):
            # go-attestation dumps: {"pcrs": [{"index": 0, "alg": "sha1", "digest": hex}, …]}
            for j, e in enumerate(data["pcrs"]):
                if not isinstance(e, dict) or not {"index", "alg", "digest"} <= e.keys():
                    raise FormatError(f"{source}: pcrs[{j}] needs index, alg and digest")
                out.set(HashAlg.from_name(str(e["alg"])), _pcr_from_any(e["index"], source),
                        _hex_value(e["digest"], source))
            if not out.values:
                raise FormatError(f"{source}: no PCR values found")
            return out
        if not isinstance(data, dict):
            raise FormatError(f"{source}: JSON must be an object keyed by bank",
                              hint="expected {\"sha256\": {\"0\": \"hex\", …}}")
        for bank, entries in data.items():
            try:
                alg = HashAlg.from_name(bank)
            except UsageError:
                continue  # other metadata keys ("source", "log")
            if isinstance(entries, list):
                pairs = [(e.get("pcr"), e.get("hash")) for e in entries if isinstance(e, dict)]
            elif isinstance(entries, dict):
                pairs = list(entries.items())
            else:
                raise FormatError(f"{source}: bank {bank!r} must map PCR index to hex")
            for pcr, value in pairs:
                out.set(alg, _pcr_from_any(pcr, source), _hex_value(value, source))
        if not out.values:
            raise FormatError(f"{source}: no PCR values found", hint="expected {\"sha256\": {\"0\": \"hex\"}}")
        return out

    @classmethod
    def _parse_lines(cls, text: str, source: str) -> "PcrValues":
        out = cls()
        current_bank: HashAlg | None = None
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            m = _LINE_PCR_FIRST.match(line.strip())
            if m:
                out.set(HashAlg.from_name(m["alg"]), _pcr_from_any(m["pcr"], source),
                        _hex_value(m["hex"], source))
                continue
            m = _LINE_ALG_FIRST.match(line.strip())
            if m:
                out.set(HashAlg.from_name(m["alg"]), _pcr_from_any(m["pcr"], source),
                        _hex_value(m["hex"], source))
                continue
            m = _YAML_BANK.match(line)
            if m:
                try:
                    current_bank = HashAlg.from_name(m["alg"])
                except UsageError:
                    current_bank = None
                continue
            m = _YAML_ENTRY.match(line)
            if m and current_bank is not None:
                out.set(current_bank, _pcr_from_any(m["pcr"], source), _hex_value(m["hex"], source))
                continue
            if line.strip() in ("pcrs:",) or line.strip().startswith("count:"):
                continue
            raise FormatError(f"{source}:{lineno}: cannot read {line.strip()[:60]!r}",
                              hint="use N:alg=hex lines, tpm2_pcrread YAML or JSON")
        if not out.values:
            raise FormatError(f"{source}: no PCR values found", hint="use N:alg=hex lines")
        return out


_LINE_PCR_FIRST = re.compile(r"^(?P<pcr>\d+)\s*:\s*(?P<alg>[A-Za-z0-9_-]+)\s*=\s*(?:0x)?(?P<hex>[0-9A-Fa-f]+)$")
_LINE_ALG_FIRST = re.compile(r"^(?P<alg>[A-Za-z][A-Za-z0-9_-]*)\s*:\s*(?P<pcr>\d+)\s*=\s*(?:0x)?(?P<hex>[0-9A-Fa-f]+)$")
_YAML_BANK = re.compile(r"^\s*(?P<alg>[A-Za-z][A-Za-z0-9_-]*)\s*:\s*$")
_YAML_ENTRY = re.compile(r"^\s+(?P<pcr>\d+)\s*:\s*(?:0x)?(?P<hex>[0-9A-Fa-f]+)\s*$")


def _pcr_from_any(value: object, source: str) -> int:
    try:
        pcr = int(str(value), 0) if not isinstance(value, int) else value
    except ValueError:
        raise FormatError(f"{source}: bad PCR index {value!r}") from None
    if not 0 <= pcr < PCR_COUNT:
        raise FormatError(f"{source}: PCR index {pcr} out of range 0…23")
    return pcr


def _hex_value(value: object, source: str) -> bytes:
    text = str(value).strip()
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise FormatError(f"{source}: not a hex digest: {text[:40]!r}") from None


def parse_hex(text: str, *, what: str = "digest", size: int | None = None) -> bytes:
    """Hex from the command line or a file into bytes, with a clear error."""
    clean = text.strip().lower()
    if clean.startswith("0x"):
        clean = clean[2:]
    try:
        data = bytes.fromhex(clean)
    except ValueError:
        raise UsageError(f"{what} is not hex: {text[:40]!r}") from None
    if size is not None and len(data) != size:
        raise UsageError(f"{what} has {len(data)} bytes, expected {size}")
    return data
