"""os-release and extension-release files, and systemd's rules for merging an extension.

Format: os-release(5) (``KEY=VALUE`` lines, shell-style quoting). Matching follows
systemd-sysext(8) and ``extension_release_validate``: ``ID=_any`` matches every host (and skips
the version checks), otherwise ``ID`` equals the host's ``ID`` or one of its ``ID_LIKE``; a
``SYSEXT_LEVEL``/``CONFEXT_LEVEL`` is compared when both sides have one, else ``VERSION_ID``
must be given and equal; ``ARCHITECTURE`` (if given and not ``_any``) equals the host's;
``SYSEXT_SCOPE``/``CONFEXT_SCOPE`` (if given) lists the scope the host merges in. Pure.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum

from pcrtool.errors import FormatError


class ExtensionType(StrEnum):
    SYSEXT = "sysext"
    CONFEXT = "confext"
    PORTABLE = "portable"

    @property
    def prefix(self) -> str:
        """The key prefix of the level and scope fields (SYSEXT_LEVEL, CONFEXT_SCOPE)."""
        return "CONFEXT" if self is ExtensionType.CONFEXT else "SYSEXT"

    def release_path(self, name: str) -> str:
        """Where the image's extension-release file lives, relative to the file-system root."""
        if self is ExtensionType.CONFEXT:
            return f"etc/extension-release.d/extension-release.{name}"
        if self is ExtensionType.SYSEXT:
            return f"usr/lib/extension-release.d/extension-release.{name}"
        return "usr/lib/os-release"


def parse_os_release(text: str, *, source: str = "os-release") -> dict[str, str]:
    """``KEY=VALUE`` lines; comments and blank lines skipped; values unquoted as a shell would."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.replace("_", "").isalnum():
            raise FormatError(f"{source} line {n} is not KEY=VALUE: {line[:60]!r}")
        try:
            parts = shlex.split(value, comments=False, posix=True)
        except ValueError as e:
            raise FormatError(f"{source} line {n}: {e}") from None
        out[key] = " ".join(parts) if parts else ""
    return out


def image_name(file_name: str) -> str:
    """The extension's name as systemd derives it from the image file name (``foo.raw`` → foo)."""
    return file_name[:-4] if file_name.endswith(".raw") else file_name


@dataclass(frozen=True, slots=True)
class Host:
    """What the merging host looks like."""

    os_release: dict[str, str]
    architecture: str
    scope: str = "system"        # system | initrd | portable


def match_extension(release: dict[str, str], host: Host, kind: ExtensionType, *,
                    name: str) -> str | None:
    """None if systemd would merge an extension with this release file on ``host``, else the
    first reason it would not (systemd's order: ID, then version/level, then arch, then scope)."""
    p = kind.prefix
    ext_id = release.get("ID")
    if not ext_id:
        return f"extension-release.{name} has no ID="
    scope = release.get(f"{p}_SCOPE")
    if scope is not None and host.scope not in scope.split():
        return f"extension-release.{name}: {p}_SCOPE={scope} does not include {host.scope!r}"
    arch = release.get("ARCHITECTURE")
    if arch and arch != "_any" and arch != host.architecture:
        return f"extension-release.{name}: ARCHITECTURE={arch}, the host is {host.architecture}"
    if ext_id == "_any":
        return None
    host_id = host.os_release.get("ID", "")
    like = host.os_release.get("ID_LIKE", "").split()
    if ext_id != host_id and ext_id not in like:
        return f"extension-release.{name}: ID={ext_id}, the host is ID={host_id}" + \
               (f" (ID_LIKE={' '.join(like)})" if like else "")
    ext_level = release.get(f"{p}_LEVEL")
    host_level = host.os_release.get(f"{p}_LEVEL")
    if ext_level and host_level:
        if ext_level != host_level:
            return f"extension-release.{name}: {p}_LEVEL={ext_level}, the host has {p}_LEVEL={host_level}"
        return None
    ext_version = release.get("VERSION_ID")
    if not ext_version:
        return f"extension-release.{name} has neither {p}_LEVEL= (matching the host) nor VERSION_ID="
    host_version = host.os_release.get("VERSION_ID")
    if ext_version != host_version:
        return f"extension-release.{name}: VERSION_ID={ext_version}, the host has VERSION_ID={host_version}"
    return None
