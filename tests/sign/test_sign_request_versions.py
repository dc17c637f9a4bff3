"""Signing-request format versions (issue 18: one JSON key style per document family).

Version 2 is written: snake_case keys throughout, ``"format": "pcrtool-sign-request/2"``. Version 1
(kebab-case, ``"pcrtool-sign-request": 1``) is still read on the signing host, decoded as strictly as
before, keeps the summary digest an older pcrtool printed and is answered in version 1. The
version-1 oracle is ``fixtures/request-v1/``: requests, ``show --json`` digests and a JSON response
written by pcrtool before version 2 existed (its signing key was not kept; ``signer.pub.pem`` is
its public half).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from helpers_sign import openssl, run_cli, sign_cli, summary_digest
from pcrtool.errors import FormatError, MismatchError, UsageError
from pcrtool.sign.offline import new_request, parse_request, read_request, summarize_request, write_request
from request_items import authenticode_item, policy_item, verity_item

V1 = Path(__file__).resolve().parent / "fixtures" / "request-v1"
EXPECTED_V1 = json.loads((V1 / "expected-show.json").read_text())
KINDS = {"pcr-policy": "pcr-policy", "verity": "verity-roothash", "authenticode": "authenticode"}
SNAKE = re.compile(r"[a-z0-9]+(_[a-z0-9]+)*")
DATA_KEYED = {"pcrs", "inputs"}           # keys that are data (PCR indices, input names), not fields


def non_snake_keys(doc, where: str = "") -> list[str]:
    bad = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not SNAKE.fullmatch(k):
                bad.append(f"{where}.{k}")
            if k not in DATA_KEYED:
                bad += non_snake_keys(v, f"{where}.{k}")
    elif isinstance(doc, list):
        for v in doc:
            bad += non_snake_keys(v, f"{where}[]")
    return bad


def items_of(kind: str):
    return {"pcr-policy": [policy_item(1, 1), policy_item(2, 2)], "verity-roothash": [verity_item()],
            "authenticode": [authenticode_item()]}[kind]


def write_v2(d: Path, kind: str, *, key=None, extra=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    req, blobs = new_request(kind, items_of(kind), key=key, inputs={"pe": "00" * 32}, extra=extra)
    write_request(d / "r.sign-request.json", req, blobs)
    return d / "r.sign-request.json"


def copy_v1(tmp_path: Path, name: str) -> Path:
    shutil.copytree(V1 / name, tmp_path / name)
    return tmp_path / name / "r.sign-request.json"


def show(path: Path, *args: str) -> dict:
    proc = run_cli("sign-request", "show", str(path), *args, "--json=short")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def openssl_verifies(pub: Path, tbs: Path, signature: bytes, tmp_path: Path) -> bool:
    sig = tmp_path / "sig.bin"
    sig.write_bytes(signature)
    try:
        openssl("dgst", "-sha256", "-verify", str(pub), "-signature", str(sig), str(tbs))
    except AssertionError:
        return False
    return True


# --- version 2: written, one key style, round trip ---------------------------------------------------

@pytest.mark.parametrize("kind", KINDS.values())
def test_v2_round_trip_snake_case_everywhere(tmp_path, keys, kind):
    from pcrtool.sign import load_signer

    path = write_v2(tmp_path, kind, key=load_signer(str(keys.rsa)))
    doc = json.loads(path.read_text())
    assert doc["format"] == "pcrtool-sign-request/2" and "pcrtool-sign-request" not in doc
    assert doc["created_by"].startswith("pcrtool ") and non_snake_keys(doc) == []
    context = {"pcr-policy": {"bank", "pcrs", "ref"}, "verity-roothash": {"root_hash_algorithm"},
               "authenticode": {"spc_indirect_data"}}[kind]
    assert all(set(t["context"]) == context for t in doc["tbs"])
    req, blobs = read_request(path)
    assert req.version == 2 and req.to_json() == doc
    assert blobs == [it[2] for it in items_of(kind)]

    shown = show(path, "--key", str(keys.rsa))
    summary = shown["summary"]
    assert summary["format"] == "pcrtool-sign-summary/2" and non_snake_keys(shown) == []
    assert [it["label_unverified"] for it in summary["items"]] == [it[0] for it in items_of(kind)]
    # the digest --expect pins is SHA-256 over the canonical (sorted, compact, ASCII) summary
    canonical = json.dumps(summary, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    assert shown["digest"] == hashlib.sha256(canonical).hexdigest()
    assert "request format version" not in run_cli("sign-request", "show", str(path)).stdout

    proc = sign_cli(path, str(keys.rsa), "-o", str(tmp_path / "resp.json"), "--json=short")
    assert proc.returncode == 0, proc.stderr
    assert non_snake_keys(json.loads(proc.stdout)) == []
    resp = json.loads((tmp_path / "resp.json").read_text())
    assert resp["format"] == "pcrtool-sign-response/2" and "created_by" in resp and non_snake_keys(resp) == []
    for it, entry in zip(doc["tbs"], resp["signatures"]):
        assert openssl_verifies(keys.pub("rsa"), tmp_path / it["file"], base64.b64decode(entry["signature"]),
                                tmp_path)
    check = run_cli("sign-request", "check", str(path), "--key", str(keys.pub("rsa")),
                    "--response", str(tmp_path / "resp.json"))
    assert check.returncode == 0, check.stderr
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(audit) == len(doc["tbs"]) and all(non_snake_keys(a) == [] for a in audit)
    assert {a["request_version"] for a in audit} == {2} and {a["request_digest"] for a in audit} == {shown["digest"]}


def test_v2_writes_callers_keys_in_snake_case():
    req, _ = new_request("verity-roothash", [("roothash", "r.roothash", b"ab" * 32, {"root-hash-algorithm": "sha256"})],
                         extra={"rootHash": "ab" * 32, "image-digest": "00", "image": "x.raw"})
    doc = req.to_json()
    assert doc["tbs"][0]["context"] == {"root_hash_algorithm": "sha256"}
    assert doc["extra"] == {"root_hash": "ab" * 32, "image_digest": "00", "image": "x.raw"}
    with pytest.raises(UsageError, match="two keys for 'root_hash'"):
        new_request("verity-roothash", [("r", "r.roothash", b"ab" * 32)], extra={"rootHash": "1", "root_hash": "2"})


def test_verity_prepare_writes_v2(tmp_path):
    root = "cd" * 32
    proc = run_cli("verity", "prepare", root, "-o", str(tmp_path / "v.sign-request.json"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "v.sign-request.json").read_text())
    assert doc["format"] == "pcrtool-sign-request/2" and doc["extra"] == {"root_hash": root}
    assert doc["tbs"][0]["context"] == {"root_hash_algorithm": "sha256"} and non_snake_keys(doc) == []


def test_pe_and_policy_prepare_write_v2(tmp_path, keys):
    """The other writers of requests: Authenticode (``pe prepare``) and PCR policies (``policy prepare``)."""
    efi = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
    proc = run_cli("pe", "prepare", str(efi), "--cert", str(keys.crt("rsa")), "--request", str(tmp_path / "pe.json"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "pe.json").read_text())
    assert doc["format"] == "pcrtool-sign-request/2" and non_snake_keys(doc) == []
    assert set(doc["tbs"][0]["context"]) == {"spc_indirect_data"}
    assert set(doc["extra"]) == {"image_digest", "signing_time", "certificate"}
    assert show(tmp_path / "pe.json", "--image", str(efi))["summary"]["items"][0]["decoded"]["image_checked"] is True

    (tmp_path / "m.toml").write_text('name = "x"\nversion = "1"\nsvn = 1\n[values]\n"11" = {sha256 = "' + "ab" * 32 + '"}\n')
    assert run_cli("predict", "release", str(tmp_path / "m.toml"), "-o", str(tmp_path / "p.json")).returncode == 0
    proc = run_cli("policy", "prepare", "-r", str(tmp_path / "p.json"), "-k", str(keys.pub("rsa")),
                   "-o", str(tmp_path / "u.pcrsig"), "--request", str(tmp_path / "pol.json"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "pol.json").read_text())
    assert doc["format"] == "pcrtool-sign-request/2" and non_snake_keys(doc) == []
    assert show(tmp_path / "pol.json")["summary"]["items"][0]["decoded"]["svn"] == 1


# --- version 2: tampering is refused ------------------------------------------------------------------

def test_tampered_v2_requests_are_refused(tmp_path, keys):
    path = write_v2(tmp_path / "a", "pcr-policy")
    digest = summary_digest(path, str(keys.rsa))
    good = path.read_text()

    # the bytes to sign changed: refused before anything is decoded, nothing echoed
    tbs = path.parent / "rel.2.tbs"
    original = tbs.read_bytes()
    tbs.write_bytes(policy_item(1, 1)[2])
    with pytest.raises(MismatchError, match=r"tbs\[1\].*were changed"):
        read_request(path)
    tbs.write_bytes(original)

    # the context no longer describes the bytes (another PCR value): the decoder refuses it
    doc = json.loads(good)
    doc["tbs"][0]["context"]["pcrs"]["11"] = "00" * 32
    path.write_text(json.dumps(doc))
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 3 and "not approvedPolicy || policyRef" in proc.stderr
    assert proc.stderr.count("\n") == 1

    # a label changed after 'show': the approved digest no longer matches, nothing is signed
    doc = json.loads(good)
    doc["tbs"][0]["label"] = "sha256/release-9"
    path.write_text(json.dumps(doc))
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", digest,
                   "--audit-log", str(tmp_path / "audit.jsonl"))
    assert proc.returncode == 3 and "--expect differs" in proc.stderr
    assert not list(path.parent.glob("*.sig")) and not (tmp_path / "audit.jsonl").exists()

    # a field of the other key style, or an unknown one, is refused rather than ignored
    for field in ("created-by", "pcrtool-sign-request-extra", "createdBy"):
        doc = json.loads(good)
        doc[field] = "x"
        with pytest.raises(FormatError, match="is not a field of a version-2 request"):
            parse_request(json.dumps(doc))
    doc = json.loads(good)
    doc["key"] = {"fingerprint": keys.fingerprint("rsa"), "type": "rsa2048", "key-type": "x"}
    with pytest.raises(FormatError, match="'key' has fields other than"):
        parse_request(json.dumps(doc))
    # a kebab-case context key is not version 2's
    vpath = write_v2(tmp_path / "v", "verity-roothash")
    doc = json.loads(vpath.read_text())
    doc["tbs"][0]["context"] = {"root-hash-algorithm": "sha256"}
    vpath.write_text(json.dumps(doc))
    proc = run_cli("sign-request", "show", str(vpath))
    assert proc.returncode == 1 and "lacks root_hash_algorithm" in proc.stderr


def test_relabelling_v2_as_v1_changes_the_digest(tmp_path, keys):
    """The same request in version-1 dress is a different summary: an approved version-2 digest
    cannot be spent on it (the summary names its format version)."""
    path = write_v2(tmp_path, "verity-roothash")
    digest_v2 = summary_digest(path, str(keys.rsa))
    doc = json.loads(path.read_text())
    v1 = {"pcrtool-sign-request": 1} | {k: v for k, v in doc.items() if k not in ("format", "created_by")}
    v1["created-by"] = doc["created_by"]
    v1["tbs"][0]["context"] = {"root-hash-algorithm": "sha256"}
    path.write_text(json.dumps(v1))
    assert read_request(path)[0].version == 1
    assert summary_digest(path, str(keys.rsa)) != digest_v2
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", digest_v2,
                   "--audit-log", str(tmp_path / "audit.jsonl"))
    assert proc.returncode == 3 and not list(tmp_path.glob("*.sig"))


# --- version 1: still read, verified as before ----------------------------------------------------------

@pytest.mark.parametrize("name", KINDS)
def test_v1_fixture_keeps_the_digest_an_older_pcrtool_showed(name):
    path = V1 / name / "r.sign-request.json"
    assert json.loads(path.read_text())["pcrtool-sign-request"] == 1
    req, _ = read_request(path)
    assert req.version == 1 and req.kind.value == KINDS[name]
    shown = show(path)
    assert shown["digest"] == EXPECTED_V1[name]["digest"]
    assert shown["summary"] == EXPECTED_V1[name]["summary"]
    assert show(path, "--key", str(V1 / "signer.pub.pem"))["digest"] == EXPECTED_V1[name]["digest_with_key"]
    text = run_cli("sign-request", "show", str(path)).stdout
    assert "request format version 1 (written by an older pcrtool" in text
    assert text.rstrip().endswith(EXPECTED_V1[name]["digest"])


@pytest.mark.parametrize("name", KINDS)
def test_v1_response_of_an_older_pcrtool_still_checks(tmp_path, keys, name):
    path = V1 / name / "r.sign-request.json"
    proc = run_cli("sign-request", "check", str(path), "--key", str(V1 / "signer.pub.pem"),
                   "--response", str(V1 / name / "response.json"))
    assert proc.returncode == 0, proc.stderr
    # independent oracle: openssl verifies the old response's signatures over the fixture's bytes
    resp = json.loads((V1 / name / "response.json").read_text())
    req = json.loads(path.read_text())
    assert resp["pcrtool-sign-response"] == 1
    for it, entry in zip(req["tbs"], resp["signatures"]):
        assert openssl_verifies(V1 / "signer.pub.pem", V1 / name / it["file"],
                                base64.b64decode(entry["signature"]), tmp_path)
    # and the response does not pass for another key
    proc = run_cli("sign-request", "check", str(path), "--key", str(keys.pub("rsa")),
                   "--response", str(V1 / name / "response.json"))
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1


def test_v1_request_is_signed_and_answered_in_v1(tmp_path, keys):
    path = copy_v1(tmp_path, "verity")           # names no key: any key may sign it
    digest = summary_digest(path, str(keys.rsa))
    proc = sign_cli(path, str(keys.rsa), "-o", str(tmp_path / "resp.json"))
    assert proc.returncode == 0, proc.stderr
    resp = json.loads((tmp_path / "resp.json").read_text())
    assert resp["pcrtool-sign-response"] == 1 and "created-by" in resp and "format" not in resp
    assert openssl_verifies(keys.pub("rsa"), path.parent / "img.roothash",
                            base64.b64decode(resp["signatures"][0]["signature"]), tmp_path)
    check = run_cli("sign-request", "check", str(path), "--key", str(keys.pub("rsa")),
                    "--response", str(tmp_path / "resp.json"))
    assert check.returncode == 0, check.stderr
    audit = [json.loads(line) for line in (path.parent / "audit.jsonl").read_text().splitlines()]
    assert [(a["request_version"], a["request_digest"]) for a in audit] == [(1, digest)]


def test_v1_is_decoded_as_strictly_as_before(tmp_path, keys):
    path = copy_v1(tmp_path, "pcr-policy")
    good = path.read_text()
    # the other key style is not version 1's: a snake_case context key is refused
    doc = json.loads(copy_v1(tmp_path / "v", "verity").read_text())
    doc["tbs"][0]["context"] = {"root_hash_algorithm": "sha256"}
    req = parse_request(json.dumps(doc))
    with pytest.raises(FormatError, match="lacks root-hash-algorithm"):
        summarize_request(req, [b"5c3f0e1d" * 8], None)
    # context that does not describe the bytes
    doc = json.loads(good)
    doc["tbs"][1]["context"]["ref"] = doc["tbs"][0]["context"]["ref"]
    path.write_text(json.dumps(doc))
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1
    # changed bytes to sign
    path.write_text(good)
    (path.parent / "rel.1.tbs").write_bytes(bytes(64))
    with pytest.raises(MismatchError, match="were changed"):
        read_request(path)
    # a relabelled version-1 request does not keep the old digest
    shutil.copy(V1 / "pcr-policy" / "rel.1.tbs", path.parent / "rel.1.tbs")
    doc = json.loads(good)
    doc["tbs"][0]["label"] = "sha256/release-7"
    path.write_text(json.dumps(doc))
    assert show(path)["digest"] != EXPECTED_V1["pcr-policy"]["digest"]


# --- other versions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    {"format": "pcrtool-sign-request/3"}, {"format": "pcrtool-sign-request/1"},
    {"format": "pcrtool-sign-request/02"}, {"format": "pcrtool-sign-request/2 "}, {"format": 2},
    {"pcrtool-sign-request": 2}, {"pcrtool-sign-request": True}, {"pcrtool-sign-request": "1"},
    {"pcrtool-sign-request": 1, "format": "pcrtool-sign-request/2"},
], ids=lambda h: json.dumps(h))
def test_unknown_versions_are_refused_in_one_line(tmp_path, header):
    path = write_v2(tmp_path, "verity-roothash")
    doc = {k: v for k, v in json.loads(path.read_text()).items() if k != "format"}
    path.write_text(json.dumps(header | doc))
    with pytest.raises(FormatError, match=r"unsupported pcrtool signing request version|has both|not a pcrtool signing request \(format 2\)"):
        read_request(path)
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "hint:" in proc.stderr


def test_other_documents_are_not_requests(tmp_path):
    for doc in ({"format": "pcrtool-sign-response/2"}, {"format": "pcrtool-predictions/1"}, {"kind": "pcr-policy"}):
        with pytest.raises(FormatError, match="is not a pcrtool signing request"):
            parse_request(json.dumps(doc))
