"""Valid request items of every kind (label, file, bytes, context), for the signing-host tests.

The PCR-policy bytes come from pcrtool's PolicyPCR code; the systemd-measure test
(test_sign_request_interop.py) pins that code to systemd's own output."""

from __future__ import annotations

import datetime as _dt
import hashlib

from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy.approvals import policy_ref_bytes
from pcrtool.policy.digests import authorize_tbs, policy_pcr
from pcrtool.sign import authenticode_pkcs7 as ac

WHEN = _dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=_dt.timezone.utc)


def pcr11(i: int, bank: HashAlg = HashAlg.SHA256) -> bytes:
    return bank.digest(b"release %d" % i)


def make_ref(svn: int, bank: HashAlg = HashAlg.SHA256, pcrs: tuple = (11,), product: str = "") -> str:
    """The policyRef string pcrtool writes for an svn (scoped to product, bank and PCRs once
    pcrtool.policy.scope exists)."""
    try:
        from pcrtool.policy.scope import Scope
    except ImportError:
        from pcrtool.policy.approvals import svn_ref
        return svn_ref(svn)
    return Scope(bank, tuple(pcrs), product).ref(svn)


def policy_item(i: int, svn: int | None = None, *, name: str | None = None, label: str | None = None,
                bank: HashAlg = HashAlg.SHA256, value: bytes | None = None, product: str = ""):
    value = pcr11(i, bank) if value is None else value
    ref = None if svn is None else make_ref(svn, bank, (11,), product)
    tbs = authorize_tbs(policy_pcr(PcrValues({bank: {11: value}})), policy_ref_bytes(ref))
    return (label or f"{bank.bank_name}/release-{i}", name or f"rel.{i}.tbs", tbs,
            {"bank": bank.bank_name, "pcrs": {"11": value.hex()}, "ref": ref})


def verity_item(root_hex: str = "5c3f0e1d" * 8, *, name: str = "img.roothash", alg: str = "sha256"):
    return ("roothash", name, root_hex.encode(), {"root_hash_algorithm": alg})


def authenticode_item(image_digest: bytes = hashlib.sha256(b"image").digest(), *, name: str = "uki.sattrs.der",
                      when: _dt.datetime = WHEN):
    import base64
    idc = ac.spc_indirect_data_content(image_digest)
    return ("signed-attributes", name, ac.signed_attributes(idc, when),
            {"spc_indirect_data": base64.b64encode(idc).decode()})


def item_of(kind: str, **kw):
    return {"pcr-policy": policy_item, "verity-roothash": verity_item, "authenticode": authenticode_item}[kind](
        **({"i": 1, "svn": 1} if kind == "pcr-policy" else {}), **kw)
