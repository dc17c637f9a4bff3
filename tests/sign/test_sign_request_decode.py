"""Attacks 1 and 2 of issue 19: the signing host shows what the bytes say and signs only the shape
of the request's kind. Each test failed on the code before the signing host decoded requests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from helpers_sign import run_cli, sign_cli, summary_digest
from pcrtool.errors import FormatError, MismatchError, PcrtoolError
from pcrtool.model import HashAlg
from pcrtool.sign.offline import new_request, read_request, summarize_request, write_request
from pcrtool.sign.request.decode import decode_item
from request_items import authenticode_item, policy_item, verity_item

EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


def write(d: Path, kind: str, items, *, key=None, extra=None, name="r.sign-request.json") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    req, blobs = new_request(kind, items, key=key, extra=extra)
    write_request(d / name, req, blobs)
    return d / name


def show_json(path: Path, *args: str) -> dict:
    proc = run_cli("sign-request", "show", str(path), *args, "--json=short")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_verity_shows_the_root_hash_it_signs_not_the_one_the_request_claims(tmp_path, keys):
    shown, signed = "ab" * 32, "66" * 32
    path = write(tmp_path, "verity-roothash", [verity_item(signed)], extra={"root_hash": shown})
    doc = show_json(path)
    assert doc["summary"]["items"][0]["decoded"] == {"root_hash": signed, "root_hash_algorithm": "sha256"}
    text = run_cli("sign-request", "show", str(path)).stdout
    assert signed in text and shown not in text
    # a root hash of another length than the stated algorithm's, or with a newline, is refused
    for tbs, alg in [(signed.encode() + b"\n", "sha256"), (("6a" * 32).upper().encode(), "sha256"),
                     (signed.encode(), "sha512"), (b"66" * 20, "sha256")]:
        with pytest.raises(FormatError, match="lowercase hex"):
            decode_item("verity-roothash", tbs, {"root_hash_algorithm": alg}, signature_hash=HashAlg.SHA256)
    assert decode_item("verity-roothash", b"66" * 64, {"root_hash_algorithm": "sha512"},
                       signature_hash=HashAlg.SHA256).values["root_hash"] == "66" * 64


def test_authenticode_shows_the_image_digest_inside_the_signed_attributes(tmp_path, keys):
    digest_a, digest_b = hashlib.sha256(b"PE A").digest(), hashlib.sha256(b"PE B").digest()
    label_a = authenticode_item(digest_a)
    signed_b = authenticode_item(digest_b)
    # The request carries A's SpcIndirectDataContent but asks for a signature over B's attributes.
    mixed = (label_a[0], label_a[1], signed_b[2], label_a[3])
    path = write(tmp_path / "mixed", "authenticode", [mixed], extra={"image_digest": digest_a.hex()})
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 3 and "messageDigest does not cover" in proc.stderr
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", "00" * 32)
    assert proc.returncode == 3 and not (tmp_path / "mixed" / "uki.sattrs.der.sig").exists()
    # A consistent request for B labelled as A shows B's digest, never A's.
    path = write(tmp_path / "b", "authenticode", [signed_b], extra={"image_digest": digest_a.hex()})
    doc = show_json(path)
    assert doc["summary"]["items"][0]["decoded"]["image_digest"] == digest_b.hex()
    assert digest_a.hex() not in run_cli("sign-request", "show", str(path)).stdout
    # signed attributes beyond the expected set, or without signingTime, are refused
    from asn1crypto import cms
    attrs = cms.CMSAttributes.load(signed_b[2])
    from asn1crypto import core
    extra_attr = cms.CMSAttribute({"type": "1.3.6.1.4.1.311.2.1.12", "values": [core.Any.load(b"\x30\x00")]})
    from pcrtool.sign import authenticode_pkcs7 as ac
    more = ac._der_set(sorted([a.dump() for a in attrs] + [extra_attr.dump()]))
    fewer = ac._der_set(sorted(a.dump() for a in attrs if a["type"].dotted != "1.2.840.113549.1.9.5"))
    for tbs, why in [(more, "unexpected signed attribute"), (fewer, "lack")]:
        with pytest.raises(FormatError, match=why):
            decode_item("authenticode", tbs, signed_b[3], signature_hash=HashAlg.SHA256)


def test_authenticode_image_given_to_the_host_is_recomputed(tmp_path, keys):
    if not EFI.is_file():
        pytest.skip(f"{EFI} missing") if not os.environ.get("CI") else pytest.fail(f"{EFI} missing")
    from pcrtool.pe.sign import prepare_for_pkcs7
    data = EFI.read_bytes()
    digest = prepare_for_pkcs7(data).image_digest
    path = write(tmp_path, "authenticode", [authenticode_item(digest)])
    assert show_json(path, "--image", str(EFI))["summary"]["items"][0]["decoded"]["image_checked"] is True
    other = tmp_path / "other.efi"
    other.write_bytes(data + b"\0" * 8)  # other bytes after the image: another Authenticode digest
    proc = run_cli("sign-request", "show", str(path), "--image", str(other))
    assert proc.returncode == 3 and "differs from the one inside the signed attributes" in proc.stderr


def test_pcr_policy_shows_decoded_values_and_svn_not_the_label(tmp_path, keys):
    real = policy_item(1, 1, label="release 1.0, svn 1")
    attacker_value = HashAlg.SHA256.digest(b"attacker")
    attack = policy_item(9, 2 ** 31 - 1, value=attacker_value)
    # Label and context of the real release, bytes of the attacker's approval: refused.
    mixed = (real[0], real[1], attack[2], real[3])
    path = write(tmp_path / "mixed", "pcr-policy", [mixed])
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 3 and "not approvedPolicy || policyRef" in proc.stderr
    # Consistent bytes and context under the real release's label: shown as what they are.
    path = write(tmp_path / "labelled", "pcr-policy", [(real[0], real[1], attack[2], attack[3])])
    item = show_json(path)["summary"]["items"][0]
    assert item["decoded"]["svn"] == 2 ** 31 - 1 and item["decoded"]["pcrs"] == {"11": attacker_value.hex()}
    assert item["label_unverified"] == "release 1.0, svn 1"
    text = run_cli("sign-request", "show", str(path)).stdout
    assert "svn: 2147483647" in text and attacker_value.hex() in text
    assert "label (unverified, written by the build host): release 1.0, svn 1" in text
    # a policyRef (svn) swapped under the same PCR values is refused too
    swapped = (real[0], real[1], policy_item(1, 2)[2], real[3])
    with pytest.raises(MismatchError):
        decode_item("pcr-policy", swapped[2], swapped[3], signature_hash=HashAlg.SHA256)
    # a ref naming pcrtool that is not canonical ("svn 1" with a newline) is refused, not read as no svn
    _, _, _, ctx = real
    bad_ref = dict(ctx, ref=ctx["ref"] + "\n")
    from pcrtool.model import PcrValues
    from pcrtool.policy.approvals import policy_ref_bytes
    from pcrtool.policy.digests import authorize_tbs, policy_pcr
    tbs = authorize_tbs(policy_pcr(PcrValues({HashAlg.SHA256: {11: bytes.fromhex(ctx["pcrs"]["11"])}})),
                        policy_ref_bytes(bad_ref["ref"]))
    with pytest.raises(FormatError, match="canonical pcrtool ref"):
        decode_item("pcr-policy", tbs, bad_ref, signature_hash=HashAlg.SHA256)
    # a scoped ref (pcrtool.policy.scope) must name the approval's own bank and PCRs
    from request_items import make_ref
    other_scope = make_ref(1, HashAlg.SHA256, (7, 11))
    if other_scope != make_ref(1):
        tbs = authorize_tbs(policy_pcr(PcrValues({HashAlg.SHA256: {11: bytes.fromhex(ctx["pcrs"]["11"])}})),
                            policy_ref_bytes(other_scope))
        with pytest.raises(MismatchError, match="scope"):
            decode_item("pcr-policy", tbs, dict(ctx, ref=other_scope), signature_hash=HashAlg.SHA256)


SHAPES = ["hex root hash", "signed attributes", "policy bytes", "whole PE", "1 MiB random"]
MATCH = {"verity-roothash": "hex root hash", "authenticode": "signed attributes", "pcr-policy": "policy bytes"}


def _shape(name: str) -> bytes:
    if name == "hex root hash":
        return verity_item()[2]
    if name == "signed attributes":
        return authenticode_item()[2]
    if name == "policy bytes":
        return policy_item(1, 1)[2]
    if name == "whole PE":
        return EFI.read_bytes() if EFI.is_file() else b"MZ" + bytes(4094)
    return os.urandom(1 << 20)


@pytest.mark.parametrize("kind", list(MATCH))
def test_kind_by_shape_matrix_only_matching_cells_sign(tmp_path, keys, kind):
    """5 shapes under each kind, with the kind's own valid context: only the matching cell signs."""
    context = {"verity-roothash": verity_item, "authenticode": authenticode_item,
               "pcr-policy": lambda: policy_item(1, 1)}[kind]()[3]
    for shape in SHAPES:
        d = tmp_path / shape.replace(" ", "-")
        path = write(d, kind, [("x", "x.tbs", _shape(shape), context)])
        if shape == MATCH[kind]:
            proc = sign_cli(path, str(keys.rsa))
            assert proc.returncode == 0, proc.stderr
            assert (d / "x.tbs.sig").is_file()
        else:
            proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", "00" * 32)
            assert proc.returncode in (1, 3), (shape, proc.stderr)
            assert proc.stderr.count("\n") == 1 and "internal error" not in proc.stderr
            assert not (d / "x.tbs.sig").exists(), shape
    # policy bytes with an EC key under kind verity-roothash (signed before): refused
    d = tmp_path / "ec"
    path = write(d, "verity-roothash", [("x", "x.tbs", _shape("policy bytes"), verity_item()[3])])
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.ec256), "--expect", "00" * 32)
    assert proc.returncode == 1 and "lowercase hex" in proc.stderr and not (d / "x.tbs.sig").exists()


def test_a_request_without_context_is_refused(tmp_path, keys):
    path = write(tmp_path, "pcr-policy", [("x", "x.tbs", policy_item(1, 1)[2])])
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 1 and "carries no context" in proc.stderr


def test_decoding_any_bytes_and_context_raises_only_pcrtool_errors():
    from hypothesis import given, settings, strategies as st

    contexts = st.sampled_from([verity_item()[3], authenticode_item()[3], policy_item(1, 1)[3], {}, None,
                                {"bank": "sha256", "pcrs": {"11": "00"}, "ref": 5},
                                {"spc_indirect_data": "MAA="}, {"root_hash_algorithm": ["x"]}])
    blobs = st.one_of(st.binary(max_size=200), st.sampled_from([verity_item()[2], authenticode_item()[2],
                                                                 policy_item(1, 1)[2]]).flatmap(
        lambda b: st.integers(0, len(b) - 1).map(lambda i: b[:i] + bytes([b[i] ^ 1]) + b[i + 1:])))

    @settings(deadline=None, max_examples=400)
    @given(st.sampled_from(list(MATCH)), blobs, contexts)
    def check(kind, tbs, context):
        try:
            decode_item(kind, tbs, context, signature_hash=HashAlg.SHA256)
        except PcrtoolError as e:
            assert "\n" not in str(e)

    check()


def test_every_legitimate_kind_round_trips_through_summary(tmp_path, keys):
    for kind, item in [("verity-roothash", verity_item()), ("authenticode", authenticode_item()),
                       ("pcr-policy", policy_item(3, 3))]:
        path = write(tmp_path / kind, kind, [item])
        req, blobs = read_request(path)
        summary = summarize_request(req, blobs, None)
        assert summary.items[0].decoded.kind == kind
        assert summary_digest(path) == summary.digest()


def test_show_on_mutated_requests_never_fails_with_an_internal_error(tmp_path):
    """Any manifest field or context field replaced by any JSON value: `show` either shows it or
    refuses it in one line with a documented exit code."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    docs = {}
    for kind, item in [("verity-roothash", verity_item()), ("authenticode", authenticode_item()),
                       ("pcr-policy", policy_item(1, 1))]:
        path = write(tmp_path / kind, kind, [item])
        docs[kind] = (path, json.loads(path.read_text()))
    values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40)
                          | st.sampled_from(["sha256", "sha512", "ab" * 32, "pcrtool-svn=1", "MAA="]),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=5)

    @settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(sorted(docs)), st.data(), values)
    def check(kind, data, value):
        path, base = docs[kind]
        doc = json.loads(json.dumps(base))
        places = [(doc, k) for k in doc] + [(doc["tbs"][0], k) for k in doc["tbs"][0]] + \
                 [(doc["tbs"][0]["context"], k) for k in doc["tbs"][0]["context"]]
        target, key = data.draw(st.sampled_from(places))
        target[key] = value
        path.write_text(json.dumps(doc))
        proc = run_cli("sign-request", "show", str(path))
        assert proc.returncode in (0, 1, 2, 3), proc.stderr
        assert "internal error" not in proc.stderr and proc.stderr.count("\n") <= 1, proc.stderr

    check()
