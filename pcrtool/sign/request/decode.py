"""Decode the bytes to sign per kind and check them against the context the request carries.

The signing host shows only what these functions derive from the bytes (and from context it
recomputes), never the build host's labels. Every kind has exactly one accepted shape; anything
else is a ``FormatError`` (or ``MismatchError`` when bytes and context disagree):

Context keys are snake_case (``root_hash_algorithm``, ``spc_indirect_data``), kebab-case in a
format-version-1 request (``root-hash-algorithm``): ``versions.key`` names them per version.

- ``verity-roothash``: the lowercase hex of a root hash of the context's ``root_hash_algorithm``
  (systemd-reference §5.4: 64 characters for sha256, no newline, no NUL), nothing else;
- ``authenticode``: a DER SET of exactly the four signed attributes systemd-sbsign and pcrtool
  write (smimeCapabilities empty, contentType = SpcIndirectDataContent, signingTime,
  messageDigest; systemd-reference §4.2–4.3); the context carries the SpcIndirectDataContent, which
  must be the canonical SpcPeImageData encoding, and messageDigest must equal H(its content
  octets) (Authenticode PE spec, "Calculating the PE image hash"); the image digest shown is the
  one inside it (and equals the given image's, when the host has the image);
- ``pcr-policy``: ``approvedPolicy || policyRef`` (TPM 2.0 Part 3 §23.16 PolicyAuthorize, signed
  by TPM2_VerifySignature): the host recomputes PolicyPCR from the context's bank and PCR values
  and policyRef from its ``ref`` and compares byte for byte (systemd-reference §1.6).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from pcrtool.errors import FormatError, MismatchError, PcrtoolError
from pcrtool.model import HashAlg
from pcrtool.sign.request.limits import (MAX_LABEL_CHARS, MAX_POLICY_PCRS, MAX_SPC_INDIRECT_DATA_BYTES,
                                         MAX_TBS_BYTES, escape, quote)
from pcrtool.sign.request.versions import WRITE_VERSION
from pcrtool.sign.request.versions import key as _key

KINDS = ("verity-roothash", "authenticode", "pcr-policy")
VERITY_ROOT_HASH_ALGS = {"sha1": HashAlg.SHA1, "sha256": HashAlg.SHA256, "sha512": HashAlg.SHA512}
_OID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_OID_SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
EXPECTED_SIGNED_ATTRIBUTES = (_OID_CONTENT_TYPE, _OID_MESSAGE_DIGEST, _OID_SIGNING_TIME, _OID_SMIME_CAPABILITIES)
_PCR_KEY = re.compile(r"^(0|[1-9][0-9]?)$")


@dataclass(frozen=True, slots=True)
class DecodedItem:
    """What one item's bytes say, as the signing host derived it.

    ``lines`` are (name, value) pairs to show, all printable ASCII; ``values`` is the same as JSON
    with snake_case keys (it goes into the canonical summary, in the request's key style, and the
    audit log). ``svn``/``product`` feed the
    signing-host policy (None: the bytes do not carry one).
    """

    kind: str
    shape: str
    lines: tuple[tuple[str, str], ...]
    values: Mapping[str, Any] = field(default_factory=dict)
    svn: int | None = None
    product: str | None = None


def decode_item(kind: str, untrusted_tbs: bytes, untrusted_context: object, *, signature_hash: HashAlg,
                image_digest: bytes | None = None, where: str = "item",
                version: int = WRITE_VERSION) -> DecodedItem:
    """Decode one item of a request of format ``version``; ``image_digest`` (Authenticode only) is
    the host's own digest of the PE. The bytes and the context are the build host's: what is
    returned is only what they were checked to say."""
    tbs, context = untrusted_tbs, untrusted_context
    if kind not in KINDS:
        raise FormatError(f"{where}: unknown kind {quote(kind)}")
    limit = MAX_TBS_BYTES[kind]
    if len(tbs) > limit:
        raise FormatError(f"{where}: {len(tbs)} bytes to sign; a {kind} item has at most {limit}",
                          hint="the bytes are not of this kind's shape")
    if not isinstance(context, dict):
        raise FormatError(f"{where}: the request carries no context for a {kind} item",
                          hint="prepare the request again with this pcrtool (the signing host "
                               "recomputes what it signs from the context)")
    try:
        if kind == "verity-roothash":
            return _verity(tbs, context, where, version)
        if kind == "authenticode":
            return _authenticode(tbs, context, signature_hash, image_digest, where, version)
        return _pcr_policy(tbs, context, signature_hash, where)
    except PcrtoolError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, binascii.Error) as e:
        # asn1crypto and friends raise these on malformed input: one line, no content.
        raise FormatError(f"{where}: the bytes are not a {kind} item ({type(e).__name__})") from None


def _keys(context: dict, required: set[str], optional: set[str], where: str) -> None:
    have = set(context)
    if not required <= have or not have <= required | optional:
        extra = sorted(have - required - optional)
        missing = sorted(required - have)
        raise FormatError(f"{where}: context has fields {', '.join(map(quote, extra)) or '-'} it must not "
                          f"have and lacks {', '.join(missing) or '-'}")


def _hex_of(value: object, size: int, what: str, where: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not re.fullmatch(r"[0-9a-f]*", value):
        raise FormatError(f"{where}: {what} must be {2 * size} lowercase hex digits")
    return bytes.fromhex(value)


# --- verity ---------------------------------------------------------------------------------------

def _verity(tbs: bytes, context: dict, where: str, version: int) -> DecodedItem:
    field_name = _key("root_hash_algorithm", version)
    _keys(context, {field_name}, set(), where)
    name = context[field_name]
    if not isinstance(name, str) or name not in VERITY_ROOT_HASH_ALGS:
        raise FormatError(f"{where}: {field_name} must be one of {', '.join(VERITY_ROOT_HASH_ALGS)}")
    alg = VERITY_ROOT_HASH_ALGS[name]
    if not re.fullmatch(rb"[0-9a-f]{%d}" % (2 * alg.digest_size), tbs):
        raise FormatError(f"{where}: the bytes to sign are not exactly {2 * alg.digest_size} lowercase hex "
                          f"digits (a {name} dm-verity root hash, no newline)",
                          hint="a verity-roothash request signs the root hash's hex text and nothing else")
    root = tbs.decode("ascii")
    return DecodedItem("verity-roothash", f"dm-verity root hash ({name}, lowercase hex)",
                       (("root hash", root), ("root hash algorithm", name)),
                       {"root_hash": root, "root_hash_algorithm": name})


# --- authenticode ---------------------------------------------------------------------------------

def _authenticode(tbs: bytes, context: dict, hash_alg: HashAlg, image_digest: bytes | None,
                  where: str, version: int) -> DecodedItem:
    from asn1crypto import cms

    from pcrtool.sign import authenticode_pkcs7 as ac

    field_name = _key("spc_indirect_data", version)
    _keys(context, {field_name}, set(), where)
    raw = context[field_name]
    if not isinstance(raw, str) or len(raw) > 2 * MAX_SPC_INDIRECT_DATA_BYTES:
        raise FormatError(f"{where}: {field_name} must be base64 DER of at most "
                          f"{MAX_SPC_INDIRECT_DATA_BYTES} bytes")
    try:
        idc = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise FormatError(f"{where}: {field_name} is not base64") from None
    if hash_alg not in ac.SIGNING_ALGS:
        raise FormatError(f"{where}: Authenticode signatures use sha256 or sha384, not {hash_alg.bank_name}")
    if not tbs[:1] == b"\x31":
        raise FormatError(f"{where}: the bytes to sign are not a DER SET of signed attributes",
                          hint="an authenticode request signs the signed-attributes SET (tag 0x31)")
    attrs = cms.CMSAttributes.load(tbs, strict=True)
    seen: dict[str, object] = {}
    for a in attrs:
        oid = a["type"].dotted
        if oid in seen:
            raise FormatError(f"{where}: signed attribute {oid} appears twice")
        if oid not in EXPECTED_SIGNED_ATTRIBUTES:
            raise FormatError(f"{where}: unexpected signed attribute {oid}",
                              hint="expected exactly smimeCapabilities, contentType, signingTime, messageDigest")
        if len(a["values"]) != 1:
            raise FormatError(f"{where}: signed attribute {oid} must have exactly one value")
        seen[oid] = a["values"][0]
    if set(seen) != set(EXPECTED_SIGNED_ATTRIBUTES):
        missing = sorted(set(EXPECTED_SIGNED_ATTRIBUTES) - set(seen))
        raise FormatError(f"{where}: signed attributes lack {', '.join(missing)}",
                          hint="expected exactly smimeCapabilities, contentType, signingTime, messageDigest")
    if seen[_OID_CONTENT_TYPE].dotted != ac.SPC_INDIRECT_DATA:
        raise FormatError(f"{where}: contentType is {seen[_OID_CONTENT_TYPE].dotted}, not SpcIndirectDataContent "
                          f"({ac.SPC_INDIRECT_DATA})")
    if seen[_OID_SMIME_CAPABILITIES].dump() != b"\x30\x00":
        raise FormatError(f"{where}: smimeCapabilities must be the empty SEQUENCE systemd-sbsign writes")
    message_digest = seen[_OID_MESSAGE_DIGEST].native
    if not isinstance(message_digest, bytes) or len(message_digest) != hash_alg.digest_size:
        raise FormatError(f"{where}: messageDigest is not a {hash_alg.bank_name} digest")
    signing_time = seen[_OID_SIGNING_TIME].native
    if not isinstance(signing_time, _dt.datetime):
        raise FormatError(f"{where}: signingTime is not a time")
    # Canonical DER only: re-encoding the parsed SET must give the very bytes to sign.
    if ac._der_set(sorted(a.dump(force=True) for a in attrs)) != tbs:
        raise FormatError(f"{where}: the signed attributes are not canonical DER")
    # The SpcIndirectDataContent: exactly the encoding sbsign/pcrtool write for its digest.
    parsed = ac.SpcIndirectDataContent.load(idc, strict=True)
    if parsed["data"]["type"].dotted != ac.SPC_PE_IMAGE_DATA:
        raise FormatError(f"{where}: SpcIndirectDataContent is not for a PE image (SpcPeImageData)")
    digest_alg = parsed["message_digest"]["digest_algorithm"]["algorithm"].native
    if digest_alg != hash_alg.bank_name:
        raise FormatError(f"{where}: SpcIndirectDataContent uses {escape(str(digest_alg))}, the request "
                          f"{hash_alg.bank_name}")
    digest = parsed["message_digest"]["digest"].native
    if not isinstance(digest, bytes) or len(digest) != hash_alg.digest_size \
            or ac.spc_indirect_data_content(digest, hash_alg) != idc:
        raise FormatError(f"{where}: SpcIndirectDataContent is not the canonical SpcPeImageData encoding",
                          hint="pcrtool and systemd-sbsign write one fixed encoding")
    if hash_alg.digest(ac.content_octets(idc)) != message_digest:
        raise MismatchError(f"{where}: messageDigest does not cover the SpcIndirectDataContent the request "
                            "carries: the image digest it shows is not the one that would be signed",
                            hint="prepare the request again from the image")
    if image_digest is not None and image_digest != digest:
        raise MismatchError(f"{where}: the given image's Authenticode digest differs from the one inside "
                            "the signed attributes", hint="this request was not prepared for that image")
    when = signing_time.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    image_status = "recomputed from the given image: equal" if image_digest is not None else \
        "not checked against an image (pass --image PE to recompute it)"
    return DecodedItem(
        "authenticode", "Authenticode signed attributes (systemd-sbsign offline layout)",
        (("image digest", digest.hex()), ("image digest algorithm", hash_alg.bank_name), ("image", image_status),
         ("signing time", when), ("messageDigest", message_digest.hex()),
         ("attributes", "smimeCapabilities (empty), contentType SpcIndirectDataContent, signingTime, messageDigest")),
        {"image_digest": digest.hex(), "image_digest_algorithm": hash_alg.bank_name,
         "image_checked": image_digest is not None, "signing_time": when, "message_digest": message_digest.hex()})


# --- PCR policy -----------------------------------------------------------------------------------

def _pcr_policy(tbs: bytes, context: dict, hash_alg: HashAlg, where: str) -> DecodedItem:
    from pcrtool.model import PcrValues
    from pcrtool.policy import approvals as ap
    from pcrtool.policy.digests import authorize_tbs, policy_pcr

    if hash_alg is not HashAlg.SHA256:
        raise FormatError(f"{where}: PCR-policy approvals are verified with SHA-256 only (TPM2_VerifySignature "
                          f"as systemd calls it), not {hash_alg.bank_name}")
    _keys(context, {"bank", "pcrs"}, {"ref"}, where)
    bank_name = context["bank"]
    banks = {b.bank_name: b for b in ap.PCRSIG_BANKS}
    if not isinstance(bank_name, str) or bank_name not in banks:
        raise FormatError(f"{where}: bank must be one of {', '.join(banks)}")
    bank = banks[bank_name]
    pcrs = context["pcrs"]
    if not isinstance(pcrs, dict) or not 1 <= len(pcrs) <= MAX_POLICY_PCRS:
        raise FormatError(f"{where}: pcrs must map 1..{MAX_POLICY_PCRS} PCR indices to values")
    values: dict[int, bytes] = {}
    for k, v in pcrs.items():
        if not isinstance(k, str) or not _PCR_KEY.match(k) or int(k) > 23:
            raise FormatError(f"{where}: PCR index {quote(str(k))} is not 0..23")
        values[int(k)] = _hex_of(v, bank.digest_size, f"PCR {k} value", where)
    ref = context.get("ref")
    if ref is not None and (not isinstance(ref, str) or not ref or len(ref) > MAX_LABEL_CHARS):
        raise FormatError(f"{where}: ref must be a non-empty string of at most {MAX_LABEL_CHARS} characters or null")
    pol = policy_pcr(PcrValues({bank: dict(values)}))
    policy_ref = ap.policy_ref_bytes(ref)
    if tbs != authorize_tbs(pol, policy_ref):
        raise MismatchError(f"{where}: the bytes to sign are not approvedPolicy || policyRef of the PCR values, "
                            "bank and ref the request carries",
                            hint="the request shows one policy and asks for a signature over another")
    try:
        svn, scope = decode_ref(ref)
    except PcrtoolError as e:
        raise FormatError(f"{where}: {e.message}", hint=e.hint) from None
    product = None
    scope_json = None
    if scope is not None:
        # The ref's scope must be the approval's own bank and PCR selection (the TPM binds the ref).
        scope_bank = getattr(getattr(scope, "bank", None), "bank_name", None)
        scope_pcrs = tuple(getattr(scope, "pcrs", ()))
        if scope_bank != bank_name or scope_pcrs != tuple(sorted(values)):
            raise MismatchError(f"{where}: the ref's scope (bank {scope_bank}, PCRs {list(scope_pcrs)}) is not the "
                                f"approval's (bank {bank_name}, PCRs {sorted(values)})")
        product = getattr(scope, "product", "") or None
        scope_json = {"product": product, "bank": scope_bank, "pcrs": list(scope_pcrs)}
    lines: list[tuple[str, str]] = [("bank", bank_name)]
    lines += [(f"PCR {i}", values[i].hex()) for i in sorted(values)]
    lines += [("svn", "none (no policyRef: a systemd-style approval without svn)" if svn is None else str(svn))]
    if scope is not None:
        lines.append(("product (from the ref)", product or "none"))
    if ref is not None:
        lines.append(("ref", ref))
    lines.append(("approvedPolicy", pol.hex()))
    return DecodedItem("pcr-policy", "TPM2 PolicyAuthorize approval: approvedPolicy || policyRef",
                       tuple(lines),
                       {"bank": bank_name, "pcrs": {str(i): values[i].hex() for i in sorted(values)},
                        "svn": svn, "scope": scope_json, "ref": ref, "approved_policy": pol.hex()},
                       svn=svn, product=product)


def decode_ref(ref: str | None) -> tuple[int | None, object | None]:
    """(svn, scope) of a policyRef string, through the parser ``pcrtool.policy`` exposes: the scoped
    grammar (``pcrtool.policy.scope.parse_ref``: svn, product, bank, PCRs) when present, else the
    svn-only one. A ref naming ``pcrtool-`` that does not parse is refused, never read as "no svn"."""
    from pcrtool.policy import approvals as ap

    if ref is None:
        return None, None
    try:
        from pcrtool.policy import scope as policy_scope
    except ImportError:
        policy_scope = None
    if policy_scope is not None and hasattr(policy_scope, "parse_ref"):
        parsed = policy_scope.parse_ref(ref)
        return (None, None) if parsed is None else (parsed.svn, parsed.scope)
    svn = ap.svn_from_ref(ref)
    if (svn is None and "pcrtool-" in ref) or (svn is not None and ap.svn_ref(svn) != ref):
        raise FormatError(f"ref {quote(ref)} is not a canonical pcrtool ref")
    return svn, None
