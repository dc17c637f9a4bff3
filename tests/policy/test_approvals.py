"""Approvals (.pcrsig): shape, signatures (checked with openssl as oracle), parsing, merging."""

import base64
import hashlib
import json
import subprocess

import pytest
from helpers_policy import need_tool, pkcs1_sha256, pem_private, pem_public, releases_json, rsa_key

from pcrtool.errors import FormatError, SignatureError, UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import approvals as A
from pcrtool.policy import digests as D
from pcrtool.policy import scope as SC
from pcrtool.policy.releases_file import parse_releases

KEY = rsa_key()
OTHER = rsa_key()


def _values(bank=HashAlg.SHA256, pcr=11, fill=b"\x11"):
    v = PcrValues()
    v.set(bank, pcr, fill * bank.digest_size)
    return v


def _entries(svn=3, banks=(HashAlg.SHA256,)):
    values = PcrValues()
    for b in banks:
        values.set(b, 11, b"\x22" * b.digest_size)
    return A.sign_entries(A.build_entries([A.ApprovalTarget(values, svn)], KEY.public_key()),
                          pkcs1_sha256(KEY))


REF3 = "pcrtool-svn=3,bank=sha256,pcrs=11"


def test_scoped_ref_round_trip_and_policy_ref_is_sha256_of_string():
    scope = SC.Scope(HashAlg.SHA256, (7, 11), "acme-os")
    assert scope.ref(7) == "pcrtool-svn=7,product=acme-os,bank=sha256,pcrs=7+11"
    assert A.svn_from_ref(scope.ref(7)) == 7 and SC.parse_ref(scope.ref(7)).scope == scope
    assert A.svn_from_ref("initrd") is None and A.svn_from_ref(None) is None
    assert A.policy_ref_bytes(REF3) == hashlib.sha256(REF3.encode()).digest()
    with pytest.raises(UsageError):
        scope.ref(-1)


@pytest.mark.parametrize("ref", [
    "pcrtool-svn=1", "pcrtool-svn=1\n", REF3 + "\n", " " + REF3, REF3 + " ", "pcrtool-svn=03,bank=sha256,pcrs=11",
    "pcrtool-svn=3,bank=sha256,pcrs=011", "pcrtool-svn=3,bank=sha256,pcrs=11+7", "pcrtool-svn=3,bank=sha256,pcrs=7+7",
    "pcrtool-svn=3,bank=sha256,pcrs=24", "pcrtool-svn=3,bank=SHA256,pcrs=11", "pcrtool-svn=3,pcrs=11,bank=sha256",
    "pcrtool-svn=3,product=,bank=sha256,pcrs=11", "pcrtool-svn=3,product=Acme,bank=sha256,pcrs=11",
    "pcrtool-svn=2147483648,bank=sha256,pcrs=11", "pcrtool-svn=3,bank=sha256,pcrs=11,extra=1",
    "pcrtool-svn=+3,bank=sha256,pcrs=11", "pcrtool-svn=３,bank=sha256,pcrs=11"])
def test_ref_grammar_is_exact(ref):
    """One spelling per value: anything else that claims to be a pcrtool ref is an error, never
    a different svn or "no svn"."""
    with pytest.raises(FormatError):
        SC.parse_ref(ref)


def test_entry_tbs_is_pol_then_sha256_of_ref_and_without_ref_just_pol():
    e = _entries()[0]
    assert e.ref == REF3
    assert e.tbs == e.pol + hashlib.sha256(REF3.encode()).digest()
    plain = A.build_entries([A.ApprovalTarget(_values())], KEY.public_key())[0]
    assert plain.tbs == plain.pol and plain.ref is None


def test_every_bank_is_signed_with_sha256():
    entries = _entries(banks=(HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384))
    assert {e.bank for e in entries} == {HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384}
    for e in entries:
        A.verify_entry(e, KEY.public_key())  # verifies RSASSA-PKCS1-v1_5 over SHA-256 only


def test_signature_equals_openssl_dgst_sha256_sign(tmp_path):
    openssl = need_tool("openssl")
    e = _entries()[0]
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "tbs").write_bytes(e.tbs)
    sig = subprocess.run([openssl, "dgst", "-sha256", "-sign", str(tmp_path / "k.pem"), str(tmp_path / "tbs")],
                         check=True, capture_output=True).stdout
    assert sig == e.sig


def test_pkfp_equals_sha256_of_openssl_rsapublickey_der(tmp_path):
    openssl = need_tool("openssl")
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    der = subprocess.run([openssl, "rsa", "-pubin", "-in", str(tmp_path / "pub.pem"), "-RSAPublicKey_out",
                          "-outform", "DER"], check=True, capture_output=True).stdout
    assert _entries()[0].pkfp == hashlib.sha256(der).digest()


def test_json_has_systemd_key_order_and_round_trips():
    doc = A.Approvals(tuple(_entries()))
    data = json.loads(doc.dumps())
    entry = data["sha256"][0]
    assert list(entry) == ["pcrs", "pkfp", "ref", "pol", "sig"]  # systemd-measure sign --policyref
    assert entry["pcrs"] == [11] and len(bytes.fromhex(entry["pol"])) == 32
    assert base64.b64decode(entry["sig"]) == doc.entries[0].sig
    assert A.Approvals.parse(doc.dumps()) == doc


def test_plain_entries_have_exactly_systemd_keys():
    e = A.sign_entries(A.build_entries([A.ApprovalTarget(_values())], KEY.public_key()), pkcs1_sha256(KEY))
    assert list(A.Approvals(tuple(e)).to_json()["sha256"][0]) == ["pcrs", "pkfp", "pol", "sig"]


def test_verify_rejects_other_key_and_edited_entries():
    e = _entries()[0]
    with pytest.raises(SignatureError):
        A.verify_entry(e, OTHER.public_key())
    forged = A.ApprovalEntry(e.bank, e.pcrs, e.pkfp, e.pol, e.sig, SC.Scope(e.bank, e.pcrs).ref(99))
    with pytest.raises(SignatureError):
        A.verify_entry(forged, KEY.public_key())  # svn raised without re-signing


def test_parse_rejects_tbs_that_does_not_match():
    data = A.Approvals(tuple(_entries())).to_json()
    data["sha256"][0]["tbs"] = "00" * 64
    with pytest.raises(FormatError, match="tbs"):
        A.Approvals.parse(json.dumps(data))


@pytest.mark.parametrize("text", ["", "[]", '{"sha256": {}}', '{"md5": []}', '{"sha256": [{"pcrs": [11]}]}',
                                  '{"sha256": [{"pcrs": [11], "pkfp": "00", "pol": "zz"}]}',
                                  '{"sha256": [{"pcrs": [30], "pkfp": "00", "pol": "' + "00" * 32 + '"}]}'])
def test_parse_errors_are_format_errors(text):
    with pytest.raises(FormatError):
        A.Approvals.parse(text)


def test_find_orders_by_svn_descending_and_filters_key():
    v = _values()
    entries = [A.sign_entries(A.build_entries([A.ApprovalTarget(v, s)], KEY.public_key()), pkcs1_sha256(KEY))[0]
               for s in (1, 5, 3)]
    doc = A.Approvals(tuple(entries))
    pol = D.policy_pcr(v)
    assert [e.svn for e in doc.find(HashAlg.SHA256, (11,), entries[0].pkfp, pol)] == [5, 3, 1]
    assert doc.find(HashAlg.SHA256, (11,), b"\x00" * 32, pol) == []


def test_merge_replaces_twins_and_keeps_others():
    a = A.Approvals(tuple(_entries(svn=1)))
    b = _entries(svn=2)
    merged = a.merged(b)
    assert [e.svn for e in merged.entries] == [1, 2]
    again = merged.merged(_entries(svn=2))
    assert len(again.entries) == 2


def test_attach_checks_each_signature():
    unsigned = A.Approvals(tuple(A.build_entries([A.ApprovalTarget(_values(), 4)], KEY.public_key())))
    e = unsigned.entries[0]
    good = {e.tbs: pkcs1_sha256(KEY)(e.tbs)}
    assert A.attach_signatures(unsigned, good, KEY.public_key()).entries[0].sig == good[e.tbs]
    with pytest.raises(SignatureError):
        A.attach_signatures(unsigned, {e.tbs: pkcs1_sha256(OTHER)(e.tbs)}, KEY.public_key())
    with pytest.raises(SignatureError, match="lack"):
        A.attach_signatures(unsigned, {}, KEY.public_key())


def test_releases_file_predicted_is_replay_of_measurements():
    releases, _ = parse_releases(releases_json(svns=(1,)))
    r = releases[0]
    want = bytes(32)
    for m in r.measurements:
        want = hashlib.sha256(want + m.digests[HashAlg.SHA256]).digest()
    assert r.predicted.get(HashAlg.SHA256, 11) == want


@pytest.mark.parametrize("doc", ['{"releases": []}', '{"releases": [{"svn": 1}]}',
                                 '{"releases": [{"svn": -1, "measurements": [{"pcr": 1, "sha256": "' + "00" * 32 + '"}]}]}',
                                 '{"releases": [{"measurements": [{"pcr": 1, "sha256": "00"}]}]}',
                                 'not json'])
def test_bad_releases_files_are_format_errors(doc):
    with pytest.raises(FormatError):
        parse_releases(doc)
