"""Discoverable Partitions Specification (UAPI.2): designators, architectures and type UUIDs.

A DDI partition is recognised by its GPT type UUID alone; ``classify`` maps one to its
architecture-agnostic designator (the names systemd.image-policy(7) uses) and its architecture.
Pure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pcrtool.ddi.dps_types import ARCH_TYPES, OTHER_TYPES
from pcrtool.errors import UsageError

# systemd.image-policy(7) designators, in systemd's order.
DESIGNATORS = ("root", "usr", "home", "srv", "esp", "xbootldr", "swap", "root-verity", "usr-verity",
               "root-verity-sig", "usr-verity-sig", "tmp", "var")
VERITY_OF = {"root": "root-verity", "usr": "usr-verity"}
SIG_OF = {"root": "root-verity-sig", "usr": "usr-verity-sig"}
DATA_OF = {"root-verity": "root", "usr-verity": "usr", "root-verity-sig": "root", "usr-verity-sig": "usr"}
_ARCH_SLOTS = ("root", "root-verity", "root-verity-sig", "usr", "usr-verity", "usr-verity-sig")

# uname -m → systemd architecture name (the ones DDIs are built for in practice).
_MACHINE = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm64", "arm64": "arm64",
            "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "armv7l": "arm",
            "riscv64": "riscv64", "ppc64le": "ppc64-le", "s390x": "s390x", "loongarch64": "loongarch64"}


@dataclass(frozen=True, slots=True)
class PartitionType:
    designator: str
    arch: str | None          # None for architecture-independent types (esp, home, …)
    uuid: uuid.UUID

    @property
    def name(self) -> str:
        """systemd's name, which repart also writes as the partition label (``root-x86-64-verity``)."""
        if self.arch is None:
            return self.designator
        base, _, suffix = self.designator.partition("-")
        return f"{base}-{self.arch}" + (f"-{suffix}" if suffix else "")


def _table() -> dict[uuid.UUID, PartitionType]:
    out: dict[uuid.UUID, PartitionType] = {}
    for arch, uuids in ARCH_TYPES.items():
        for designator, text in zip(_ARCH_SLOTS, uuids):
            u = uuid.UUID(text)
            out[u] = PartitionType(designator, arch, u)
    for designator, text in OTHER_TYPES.items():
        u = uuid.UUID(text)
        out[u] = PartitionType(designator, None, u)
    return out


_BY_UUID = _table()


def classify(type_uuid: uuid.UUID) -> PartitionType | None:
    """The DPS meaning of a GPT partition type, or None for types the DPS does not define."""
    return _BY_UUID.get(type_uuid)


def partition_type(designator: str, arch: str) -> PartitionType:
    """The type of ``designator`` (root, root-verity, …) for ``arch`` (x86-64, arm64, …)."""
    if designator in OTHER_TYPES:
        return _BY_UUID[uuid.UUID(OTHER_TYPES[designator])]
    if arch not in ARCH_TYPES:
        raise UsageError(f"unknown architecture {arch!r}",
                         hint="use a systemd architecture name: " + ", ".join(sorted(ARCH_TYPES)))
    if designator not in _ARCH_SLOTS:
        raise UsageError(f"unknown partition designator {designator!r}")
    return _BY_UUID[uuid.UUID(ARCH_TYPES[arch][_ARCH_SLOTS.index(designator)])]


def native_arch(machine: str) -> str:
    """systemd's architecture name for ``uname -m`` (``platform.machine()``)."""
    arch = _MACHINE.get(machine)
    if arch is None:
        raise UsageError(f"unknown machine type {machine!r}", hint="pass --arch (e.g. x86-64, arm64)")
    return arch


def is_arch(name: str) -> bool:
    return name in ARCH_TYPES
