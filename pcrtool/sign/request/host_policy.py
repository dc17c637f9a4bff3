"""The optional signing-host policy: which key may sign which kinds, products and svn range.

    {"format": "pcrtool-signing-host-policy/2",
     "keys": [{"fingerprint": "<SHA-256 of the SPKI DER, hex>", "name": "release 2026",
               "kinds": ["pcr-policy"], "products": ["fooOS"], "svn": {"min": 3, "max": 1000}}]}

A key absent from the policy signs nothing; ``products`` and ``svn`` constrain only what the bytes
carry (PCR-policy refs): an item whose decoded bytes carry no product/svn is refused when the rule
names products/an svn range. A key allowed more than one kind is reported (``warnings``): one key
per kind keeps a policy approval from ever passing for, say, a root-hash signature. Version 1 of
the file (``{"pcrtool-signing-host-policy": 1, "keys": …}``, the same keys) is read as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pcrtool.errors import FormatError, PolicyRefused
from pcrtool.sign.request.decode import KINDS
from pcrtool.sign.request import versions
from pcrtool.sign.request.limits import MAX_LABEL_CHARS, load_json, quote
from pcrtool.sign.request.summary import Summary

POLICY_FORMAT = "pcrtool-signing-host-policy"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class KeyRule:
    fingerprint: str
    name: str
    kinds: tuple[str, ...]
    products: tuple[str, ...] | None = None
    svn_min: int | None = None
    svn_max: int | None = None


@dataclass(frozen=True, slots=True)
class HostPolicy:
    rules: tuple[KeyRule, ...]

    def rule(self, fingerprint: str | None) -> KeyRule | None:
        return next((r for r in self.rules if r.fingerprint == fingerprint), None)

    def warnings(self) -> list[str]:
        return [f"signing-host policy: key {r.fingerprint} ({r.name}) may sign {len(r.kinds)} kinds "
                f"({', '.join(r.kinds)}); use one key per kind" for r in self.rules if len(r.kinds) > 1]

    def check(self, summary: Summary) -> None:
        """Refuse (PolicyRefused, exit 4) what this policy does not allow the signing key to sign."""
        r = self.rule(summary.key_fingerprint)
        if r is None:
            raise PolicyRefused(f"signing-host policy: key {summary.key_fingerprint or '(none)'} may sign nothing",
                                hint="add the key to the signing-host policy, or use a key it lists")
        if summary.kind not in r.kinds:
            raise PolicyRefused(f"signing-host policy: key {r.fingerprint} ({r.name}) may not sign "
                                f"{summary.kind} requests (only {', '.join(r.kinds)})")
        for it in summary.items:
            where = f"item {it.index + 1}"
            if r.products is not None and it.decoded.product not in r.products:
                got = "no product" if it.decoded.product is None else f"product {quote(it.decoded.product)}"
                raise PolicyRefused(f"signing-host policy: {where} carries {got}; key {r.name} signs only "
                                    f"{', '.join(map(quote, r.products))}")
            if r.svn_min is not None or r.svn_max is not None:
                svn = it.decoded.svn
                lo = 0 if r.svn_min is None else r.svn_min
                hi = r.svn_max
                if svn is None or svn < lo or (hi is not None and svn > hi):
                    raise PolicyRefused(f"signing-host policy: {where} has svn {'none' if svn is None else svn}; "
                                        f"key {r.name} signs svn {lo}..{'' if hi is None else hi} only")


def parse_host_policy(data: bytes | str, *, source: str = "signing-host policy") -> HostPolicy:
    doc = load_json(data, source=source)

    def fail(what: str):
        raise FormatError(f"{source}: {what}", hint="see README.md, 'Keys: … offline signing'")

    expected = f"expected {{\"format\": \"{POLICY_FORMAT}/2\", \"keys\": [...]}}"
    if not versions.is_document(doc, POLICY_FORMAT):
        fail(expected)
    versions.version_of(doc, POLICY_FORMAT, source=source, what="signing-host policy",
                        hint="see README.md, 'Keys: … offline signing'")
    if set(doc) - {POLICY_FORMAT, versions.FORMAT_FIELD, "keys"}:
        fail(expected)
    keys = doc.get("keys")
    if not isinstance(keys, list):
        fail("'keys' must be a list")
    rules, seen = [], set()
    for i, k in enumerate(keys):
        w = f"keys[{i}]"
        if not isinstance(k, dict) or set(k) - {"fingerprint", "name", "kinds", "products", "svn"}:
            fail(f"{w} must be an object with fingerprint, kinds and optionally name, products, svn")
        fp = k.get("fingerprint")
        if not isinstance(fp, str) or not _HEX64.match(fp) or fp in seen:
            fail(f"{w}.fingerprint must be 64 lowercase hex digits, once per key")
        seen.add(fp)
        name = k.get("name", fp[:16])
        if not isinstance(name, str) or len(name) > MAX_LABEL_CHARS:
            fail(f"{w}.name must be a short string")
        kinds = k.get("kinds")
        if not isinstance(kinds, list) or not kinds or any(x not in KINDS for x in kinds) \
                or len(set(kinds)) != len(kinds):
            fail(f"{w}.kinds must list some of {', '.join(KINDS)}")
        products = k.get("products")
        if products is not None and (not isinstance(products, list) or not products or
                                     any(not isinstance(p, str) or len(p) > MAX_LABEL_CHARS for p in products)):
            fail(f"{w}.products must be a non-empty list of strings")
        svn = k.get("svn")
        lo = hi = None
        if svn is not None:
            if not isinstance(svn, dict) or set(svn) - {"min", "max"} or not svn:
                fail(f"{w}.svn must be {{\"min\": N, \"max\": M}}")
            lo, hi = svn.get("min"), svn.get("max")
            for v in (lo, hi):
                if v is not None and (type(v) is not int or not 0 <= v < 2 ** 32):
                    fail(f"{w}.svn bounds must be integers 0..2^32-1")
            if lo is not None and hi is not None and lo > hi:
                fail(f"{w}.svn min is above max")
        rules.append(KeyRule(fp, name, tuple(kinds), None if products is None else tuple(products), lo, hi))
    return HostPolicy(tuple(rules))
