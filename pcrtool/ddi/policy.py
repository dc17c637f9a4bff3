"""Image policies as systemd.image-policy(7) defines them (grammar, derived rules, checks).

``designator=flag+flag:designator=…``; an empty designator sets the default for the designators not
listed; ``*`` (everything), ``-`` (use nothing) and ``~`` (everything absent) are whole policies.
Flags fall into four categories, and a category left empty means "any" (systemd's
``partition_policy_flags_extend``): the use/protection flags, ``read-only-on/off``,
``growfs-on/off`` and file-system types. Rules for ``*-verity``/``*-verity-sig`` that are not
given are derived from their data partition's rule (as ``systemd-analyze image-policy`` shows);
designators that cannot carry verity lose ``verity``/``signed``. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from pcrtool.ddi.dps import DATA_OF, DESIGNATORS
from pcrtool.errors import UsageError

USE_FLAGS = ("verity", "signed", "encrypted", "encryptedwithintegrity", "unprotected", "unused", "absent")
FSTYPES = ("btrfs", "erofs", "ext4", "f2fs", "squashfs", "vfat", "xfs")
OPEN = frozenset(USE_FLAGS)
IGNORE = frozenset({"unused", "absent"})
_VERITY_ONLY = frozenset({"unprotected", "unused", "absent"})   # what a hash/sig partition can be
_NO_VERITY = OPEN - {"verity", "signed"}


@dataclass(frozen=True, slots=True)
class Rule:
    """What one designator may be: ``use`` (protection/use flags), read-only and growfs as sets of
    allowed booleans, and the allowed file-system types (None = any)."""

    use: frozenset[str]
    read_only: frozenset[bool] = frozenset({True, False})
    growfs: frozenset[bool] = frozenset({True, False})
    fstypes: frozenset[str] | None = None

    def allows(self, flag: str) -> bool:
        return flag in self.use

    def use_text(self) -> str:
        if self.use == OPEN:
            return "open"
        if self.use == IGNORE:
            return "ignore"
        return "+".join(f for f in USE_FLAGS if f in self.use) or "-"

    def text(self) -> str:
        """The flags in systemd's long form."""
        parts = [f for f in USE_FLAGS if f in self.use]
        if len(self.read_only) == 1:
            parts.append("read-only-on" if True in self.read_only else "read-only-off")
        if len(self.growfs) == 1:
            parts.append("growfs-on" if True in self.growfs else "growfs-off")
        if self.fstypes is not None:
            parts.extend(sorted(self.fstypes))
        return "+".join(parts)

    def to_json(self) -> dict:
        return {"mode": self.use_text(), "flags": sorted(self.use, key=USE_FLAGS.index),
                "readOnly": None if len(self.read_only) != 1 else next(iter(self.read_only)),
                "growfs": None if len(self.growfs) != 1 else next(iter(self.growfs)),
                "fstypes": None if self.fstypes is None else sorted(self.fstypes)}


def parse_flags(text: str, *, designator: str = "") -> Rule:
    """One rule's flags (``verity+signed+read-only-on+erofs``); empty categories mean "any"."""
    use: set[str] = set()
    ro: set[bool] = set()
    grow: set[bool] = set()
    fs: set[str] = set()
    for flag in filter(None, text.split("+")):
        if flag in USE_FLAGS:
            use.add(flag)
        elif flag == "open":
            use |= OPEN
        elif flag == "ignore":
            use |= IGNORE
        elif flag in ("read-only-on", "read-only-off"):
            ro.add(flag == "read-only-on")
        elif flag in ("growfs-on", "growfs-off"):
            grow.add(flag == "growfs-on")
        elif flag in FSTYPES:
            fs.add(flag)
        else:
            where = f" for {designator}" if designator else ""
            raise UsageError(f"image policy: unknown flag {flag!r}{where}",
                             hint="flags: " + ", ".join(USE_FLAGS + ("open", "ignore", "read-only-on",
                                                                      "read-only-off", "growfs-on",
                                                                      "growfs-off") + FSTYPES))
    return Rule(frozenset(use) or OPEN, frozenset(ro) or frozenset({True, False}),
                frozenset(grow) or frozenset({True, False}), frozenset(fs) if fs else None)


def _mask(rule: Rule, designator: str) -> Rule:
    if designator in DATA_OF:
        allowed = _VERITY_ONLY
    elif designator in ("root", "usr"):
        return rule
    else:
        allowed = _NO_VERITY
    return Rule(rule.use & allowed, rule.read_only, rule.growfs, rule.fstypes)


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    explicit: tuple[tuple[str, Rule], ...]
    default: Rule

    def rule(self, designator: str) -> Rule:
        """The effective rule of ``designator``, derived as systemd derives it."""
        given = dict(self.explicit)
        if designator in given:
            return _mask(given[designator], designator)
        data = DATA_OF.get(designator)
        if data is not None and data in given:
            d = given[data]
            needed = {"verity", "signed"} if designator.endswith("-verity") else {"signed"}
            if d.use & needed:
                return Rule(frozenset({"unprotected"}) | (d.use & IGNORE), d.read_only, d.growfs, None)
        return _mask(self.default, designator)

    def long_form(self) -> str:
        parts = [f"{d}={r.text()}" for d, r in self.explicit]
        parts.append(f"={self.default.text()}")
        return ":".join(parts)

    def to_json(self) -> dict:
        return {"longForm": self.long_form(),
                "rules": {d: self.rule(d).to_json() for d in DESIGNATORS},
                "default": self.default.to_json()}


def parse_image_policy(text: str) -> ImagePolicy:
    """Parse a policy string (systemd.image-policy(7))."""
    text = text.strip()
    special = {"*": OPEN, "-": IGNORE, "~": frozenset({"absent"})}
    if text in special:
        return ImagePolicy((), Rule(special[text]))
    explicit: dict[str, Rule] = {}
    default = Rule(IGNORE)
    seen_default = False
    for item in filter(None, text.split(":")):
        designator, eq, flags = item.partition("=")
        if not eq:
            raise UsageError(f"image policy: {item!r} is not designator=flags",
                             hint="e.g. root=verity+signed+absent:usr=verity+signed+absent")
        designator = designator.strip()
        if designator == "":
            if seen_default:
                raise UsageError("image policy: the default (=flags) is given twice")
            default, seen_default = parse_flags(flags), True
            continue
        if designator not in DESIGNATORS:
            raise UsageError(f"image policy: unknown partition designator {designator!r}",
                             hint="designators: " + ", ".join(DESIGNATORS))
        if designator in explicit:
            raise UsageError(f"image policy: {designator} is given twice")
        explicit[designator] = parse_flags(flags, designator=designator)
    order = {d: i for i, d in enumerate(DESIGNATORS)}
    return ImagePolicy(tuple(sorted(explicit.items(), key=lambda kv: order[kv[0]])), default)


# systemd-sysext's and systemd-confext's built-in policy when none is given (systemd-sysext(8)).
SYSEXT_DEFAULT = "root=verity+signed+encrypted+unprotected+absent:usr=verity+signed+encrypted+unprotected+absent"
