"""Offline requests: round trips, tampering, foreign keys and bytes, openssl/pkcs11-tool oracles."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from helpers_sign import PIN, need_tool, openssl, run_cli, sign_cli
from pcrtool.errors import FormatError, KeyReferenceError, MismatchError, SignatureError, UnsupportedError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign import load_signer
from pcrtool.sign.offline import (RequestKind, check_signature, check_signatures, new_request, parse_response,
                                  read_request, read_signatures, sign_request, write_raw_signatures,
                                  write_request, write_response)

from request_items import authenticode_item, policy_item

# pol || policyRef for PCR policies; sbsign's tbs is a DER SET; verity the lowercase hex.
ITEM_A = policy_item(1, 1, name="rel.pol-1", label="sha256/release-1")
ITEM_B = policy_item(2, 2, name="rel.pol-2", label="sha256/release-2")
POL_A, POL_B = ITEM_A[2], ITEM_B[2]
SATTRS = authenticode_item()[2]
ROOTHASH = b"5c3f0e1d" * 8                      # 64 lowercase hex characters, no newline


def subdir(base, name):
    (base / name).mkdir()
    return base / name


def make(tmp_path, keys, kind="pcr-policy", items=None, key="rsa", **kw):
    items = items or [ITEM_A, ITEM_B]
    signer = load_signer(str(keys.dir / f"{key}.pem")) if key else None
    req, blobs = new_request(kind, items, key=signer, inputs={"uki": "00" * 32}, **kw)
    path = tmp_path / "rel.sign-request.json"
    write_request(path, req, blobs)
    return path


def test_request_round_trip_and_manifest_shape(tmp_path, keys):
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    assert blobs == [POL_A, POL_B]
    data = json.loads(path.read_text())
    assert data["format"] == "pcrtool-sign-request/2" and data["kind"] == "pcr-policy"
    assert data["hash"] == "sha256" and data["padding"] == "pkcs1v15"
    assert data["key"] == {"fingerprint": keys.fingerprint("rsa"), "type": "rsa2048"}
    assert data["tbs"][0] == {"file": "rel.pol-1", "sha256": hashlib.sha256(POL_A).hexdigest(),
                              "label": "sha256/release-1", "size": 64, "context": ITEM_A[3]}
    assert (tmp_path / "rel.pol-2").read_bytes() == POL_B


@pytest.mark.parametrize("kind,tbs", [("pcr-policy", POL_A), ("authenticode", SATTRS),
                                      ("verity-roothash", ROOTHASH)], ids=["pcr-policy", "authenticode", "verity"])
def test_openssl_dgst_signature_over_the_tbs_file_is_accepted(tmp_path, keys, kind, tbs):
    path = make(tmp_path, keys, kind, [("only", "x.tbs", tbs)])
    openssl("dgst", "-sha256", "-sign", str(keys.rsa), "-out", str(tmp_path / "x.tbs.sig"),
            str(tmp_path / "x.tbs"))
    req, blobs = read_request(path)
    sigs = read_signatures(path, req)
    check_signatures(req, sigs, load_signer(str(keys.rsa)).public_key(), blobs)
    check_signature(req, sigs[0], load_signer(str(keys.rsa)).public_key())
    proc = run_cli("sign-request", "check", str(path), "--key", str(keys.pub("rsa")))
    assert proc.returncode == 0, proc.stderr


def test_pkcs11_tool_signature_is_accepted(tmp_path, keys, hsm):
    path = make(tmp_path, keys)
    for f in ("rel.pol-1", "rel.pol-2"):
        subprocess.run([need_tool("pkcs11-tool"), "--module", hsm.module, "--token-label", hsm.label,
                        "--login", "--pin", PIN, "--sign", "-m", "SHA256-RSA-PKCS", "--id", "01",
                        "-i", str(tmp_path / f), "-o", str(tmp_path / f"{f}.sig")],
                       check=True, capture_output=True, env={**hsm.env})
    req, blobs = read_request(path)
    check_signatures(req, read_signatures(path, req), load_signer(str(keys.rsa)).public_key())
    proc = run_cli("sign-request", "check", str(path), "--key", str(keys.crt("rsa")))
    assert proc.returncode == 0, proc.stderr


def test_offline_signatures_are_byte_identical_to_online_file_and_token(tmp_path, keys, hsm):
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    online = [load_signer(str(keys.rsa)).sign(b, HashAlg.SHA256) for b in (POL_A, POL_B)]
    with load_signer(hsm.uri("rsa")) as token:
        resp = sign_request(req, blobs, token)
    assert [s for _, s in resp.signatures] == online
    write_response(tmp_path / "resp.json", resp)
    assert read_signatures(path, req, tmp_path / "resp.json") == online
    write_raw_signatures(path, resp)
    assert (tmp_path / "rel.pol-1.sig").read_bytes() == online[0]
    data = json.loads((tmp_path / "resp.json").read_text())
    cert = load_signer(str(keys.rsa), certificate=str(keys.crt("rsa"))).certificate()
    assert base64.b64decode(data["certificate"]) == cert.public_bytes(Encoding.DER)  # read from the token


def test_cli_sign_on_air_gapped_side_with_file_key_and_token(tmp_path, keys, hsm):
    path = make(tmp_path, keys)
    proc = sign_cli(path, str(keys.rsa), "-o", str(tmp_path / "r1.json"))
    assert proc.returncode == 0, proc.stderr
    proc = sign_cli(path, hsm.uri("rsa"), env=hsm.env)
    assert proc.returncode == 0, proc.stderr
    req, _ = read_request(path)
    assert read_signatures(path, req) == read_signatures(path, req, tmp_path / "r1.json")
    proc = run_cli("sign-request", "show", str(path), "--json=short")
    assert proc.returncode == 0 and json.loads(proc.stdout)["valid"] is True


def test_tampered_tbs_file_and_manifest_are_refused(tmp_path, keys):
    path = make(tmp_path, keys)
    (tmp_path / "rel.pol-2").write_bytes(POL_A)
    with pytest.raises(MismatchError, match=r"tbs\[1\].*were changed"):
        read_request(path)
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "-o", str(tmp_path / "o.json"),
                   "--expect", "00" * 32)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o.json").exists()
    (tmp_path / "rel.pol-2").write_bytes(POL_B)
    data = json.loads(path.read_text())
    for field, value, err in [("kind", "kernel-module", FormatError), ("hash", "md5", FormatError),
                              ("padding", "raw", FormatError), ("tbs", [], FormatError),
                              ("format", "pcrtool-sign-request/3", FormatError)]:
        path.write_text(json.dumps(data | {field: value}))
        with pytest.raises(err, match=field if field != "format" else "version 'pcrtool-sign-request/3'"):
            read_request(path)
    for item_field, value in [("file", "../etc/passwd"), ("file", "/etc/passwd"), ("sha256", "AB" * 32),
                              ("sha256", "00" * 31), ("size", -1)]:
        bad = json.loads(json.dumps(data))
        bad["tbs"][0][item_field] = value
        path.write_text(json.dumps(bad))
        with pytest.raises(FormatError):
            read_request(path)
    bad = json.loads(json.dumps(data))
    bad["tbs"][0]["sha256"] = bad["tbs"][1]["sha256"]  # manifest edited to point at other bytes
    path.write_text(json.dumps(bad))
    with pytest.raises(MismatchError):
        read_request(path)
    path.write_text("{not json")
    with pytest.raises(FormatError, match="bad JSON"):
        read_request(path)


def test_signature_from_another_key_or_over_other_bytes_is_refused(tmp_path, keys):
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    pub = load_signer(str(keys.rsa)).public_key()
    other_key = openssl("dgst", "-sha256", "-sign", str(keys.rsa_b), str(tmp_path / "rel.pol-1"))
    with pytest.raises(SignatureError, match="another key"):
        check_signature(req, other_key, pub, item=0)
    with pytest.raises(SignatureError, match="over other bytes"):
        check_signature(req, load_signer(str(keys.rsa)).sign(POL_B), pub, item=0)
    with pytest.raises(SignatureError, match="not the request's bytes"):
        check_signature(req, load_signer(str(keys.rsa)).sign(POL_B), pub, item=0, tbs=POL_B)
    with pytest.raises(SignatureError, match="prepared for key"):
        check_signature(req, other_key, load_signer(str(keys.rsa_b)).public_key(), item=0)
    # swapped signatures between items: each one covers the other item's bytes
    sigs = [load_signer(str(keys.rsa)).sign(b) for b in (POL_B, POL_A)]
    with pytest.raises(SignatureError, match=r"tbs\[0\]"):
        check_signatures(req, sigs, pub, blobs)
    (tmp_path / "rel.pol-1.sig").write_bytes(other_key)
    (tmp_path / "rel.pol-2.sig").write_bytes(other_key)
    proc = run_cli("sign-request", "check", str(path), "--key", str(keys.pub("rsa")))
    assert proc.returncode == 3 and "another key" in proc.stderr and proc.stderr.count("\n") == 1


def test_signing_side_refuses_wrong_key_and_keys_the_consumer_cannot_verify(tmp_path, keys):
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    with pytest.raises(KeyReferenceError, match="asks for key"):
        sign_request(req, blobs, load_signer(str(keys.rsa_b)))
    path2 = make(subdir(tmp_path, "x"), keys, key=None)
    req2, blobs2 = read_request(path2)
    with pytest.raises(UnsupportedError, match="systemd signed PCR policy"):
        sign_request(req2, blobs2, load_signer(str(keys.ec256)))
    proc = run_cli("sign-request", "sign", str(path2), "--key", str(keys.ec256))
    assert proc.returncode == 1 and "accepts only RSA" in proc.stderr
    assert not (path2.parent / "rel.pol-1.sig").exists()
    # verity root hashes may be ECDSA-signed: the kernel's PKCS#7 verifier takes ECDSA
    path3 = make(subdir(tmp_path, "v"), keys,
                 "verity-roothash", [("roothash", "img.roothash", ROOTHASH)], key="ec256")
    req3, blobs3 = read_request(path3)
    resp = sign_request(req3, blobs3, load_signer(str(keys.ec256)))
    check_signature(req3, resp.signatures[0][1], load_signer(str(keys.ec256)).public_key(), tbs=ROOTHASH)
    with pytest.raises(UsageError, match="offline"):
        sign_request(req3, blobs3, load_signer("offline", certificate=str(keys.crt("ec256"))))


def test_responses_must_match_the_request(tmp_path, keys):
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    resp = sign_request(req, blobs, load_signer(str(keys.rsa)))
    write_response(tmp_path / "resp.json", resp)
    data = json.loads((tmp_path / "resp.json").read_text())
    (tmp_path / "bad.json").write_text(json.dumps(data | {"kind": "authenticode"}))
    with pytest.raises(MismatchError, match="answers a 'authenticode' request"):
        read_signatures(path, req, tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps(data | {"signatures": data["signatures"][:1]}))
    with pytest.raises(MismatchError, match=r"no signature for tbs\[1\]"):
        read_signatures(path, req, tmp_path / "bad.json")
    (tmp_path / "raw.sig").write_bytes(resp.signatures[0][1])
    with pytest.raises(UsageError, match="raw signature but the request has 2 items"):
        read_signatures(path, req, tmp_path / "raw.sig")
    with pytest.raises(Exception, match="does not exist"):
        read_signatures(path, req)  # no <tbs>.sig files yet


def test_raw_signature_starting_with_a_brace_is_not_taken_for_json(tmp_path, keys):
    """One RSA signature in 256 starts with 0x7B ('{'): it is still a raw signature."""
    path = make(tmp_path, keys)
    req, _ = read_request(path)
    raw = b"{" + bytes(range(255))
    (tmp_path / "brace.sig").write_bytes(raw)
    with pytest.raises(UsageError, match="raw signature but the request has 2 items"):
        read_signatures(path, req, tmp_path / "brace.sig")


def _valid_manifest() -> dict:
    req, _ = new_request("authenticode", [("signed-attributes", "u.sattrs.der", SATTRS)])
    return req.to_json()


def test_mutated_manifests_fail_only_with_format_errors():
    """Any field replaced by any JSON value: parsed, or refused with one FormatError naming it."""
    from hypothesis import given, settings, strategies as st

    from pcrtool.sign.offline import parse_request

    values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
    base = _valid_manifest()
    paths = [(k,) for k in base] + [("tbs", 0, k) for k in base["tbs"][0]]

    @settings(deadline=None, max_examples=300)
    @given(st.sampled_from(paths), values)
    def check(path, value):
        doc = json.loads(json.dumps(base))
        target = doc
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        try:
            parse_request(json.dumps(doc))
        except FormatError as e:
            assert "\n" not in str(e)

    check()


def test_pss_requests_are_refused_for_every_kind(tmp_path, keys):
    from pcrtool.sign import Padding
    for kind in RequestKind:
        req, blobs = new_request(kind, [("x", "x.tbs", ROOTHASH)], padding=Padding.PSS)
        with pytest.raises(UnsupportedError, match="cannot verify RSA pss"):
            sign_request(req, blobs, load_signer(str(keys.rsa)))


def test_hostile_json_responses_are_one_line_format_errors(tmp_path, keys):
    """A response is read with the request's bounded loader: no recursion error, no repeated key."""
    path = make(tmp_path, keys)
    req, blobs = read_request(path)
    resp = sign_request(req, blobs, load_signer(str(keys.rsa)))
    write_response(tmp_path / "resp.json", resp)
    text = (tmp_path / "resp.json").read_text()
    # A repeated key could show one value and use another: refused, not "last one wins".
    repeated = text.rstrip().rstrip("}") + ', "signatures": []}'
    (tmp_path / "dup.json").write_text(repeated)
    with pytest.raises(FormatError, match="repeats the key"):
        parse_response(repeated, req)
    # 100,000 nested arrays: a format error from the depth check, never RecursionError.
    deep = '{"format": "x", "signatures": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(FormatError, match="nesting deeper"):
        parse_response(deep, req)
    # Not UTF-8 and not a signature of this request: the two-item request refuses it as raw.
    (tmp_path / "bin.json").write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(UsageError, match="raw signature but the request has 2 items"):
        read_signatures(path, req, tmp_path / "bin.json")
    (tmp_path / "deep.json").write_text(deep)
    with pytest.raises(UsageError, match="raw signature but the request has 2 items"):
        read_signatures(path, req, tmp_path / "deep.json")
    # Larger than any response: refused by size before parsing.
    with pytest.raises(FormatError, match="larger than"):
        parse_response("{" + " " * (4 << 20) + "}", req)
