"""Attack 4 of issue 19 and the audit log: `sign` signs exactly what `show` displayed (the summary
digest pins it), says which key signs, needs --expect without a terminal, and appends one audit
line per signature; the optional signing-host policy limits keys to kinds, products and svns."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from helpers_sign import run_cli, sign_cli, summary_digest
from pcrtool.errors import FormatError, PolicyRefused
from pcrtool.sign.offline import new_request, read_request, summarize_request, write_request
from pcrtool.sign.request.host_policy import parse_host_policy
from request_items import policy_item, verity_item


def make(d: Path, items=None, kind="pcr-policy", key=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    req, blobs = new_request(kind, items or [policy_item(1, 1), policy_item(2, 2)], key=key)
    write_request(d / "r.sign-request.json", req, blobs)
    return d / "r.sign-request.json"


def audit(d: Path) -> list[dict]:
    p = d / "audit.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


def env(d: Path) -> dict:
    return {"PCRTOOL_AUDIT_LOG": str(d / "audit.jsonl")}


def test_sign_needs_expect_without_a_terminal_and_refuses_another_digest(tmp_path, keys):
    path = make(tmp_path)
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), env=env(tmp_path))
    assert proc.returncode == 2 and "needs --expect" in proc.stderr
    other = make(tmp_path / "other", [policy_item(3, 3)])
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa),
                   "--expect", summary_digest(other, str(keys.rsa)), env=env(tmp_path))
    assert proc.returncode == 3 and "not the one approved" in proc.stderr
    assert not list(tmp_path.glob("*.sig")) and audit(tmp_path) == []


def test_a_request_rewritten_between_show_and_sign_is_refused(tmp_path, keys):
    path = make(tmp_path)
    digest = summary_digest(path, str(keys.rsa))
    # The build host's media answers differently the second time: a consistent, different request.
    req, blobs = new_request("pcr-policy", [policy_item(1, 1), policy_item(2, 7, name="rel.2.tbs",
                                                                       label="sha256/release-2")])
    write_request(path, req, blobs)
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", digest,
                   env=env(tmp_path))
    assert proc.returncode == 3 and not list(tmp_path.glob("*.sig")) and audit(tmp_path) == []


def test_the_digest_covers_the_signing_key(tmp_path, keys):
    path = make(tmp_path)     # names no key: show without --key says so and its digest cannot sign
    text = run_cli("sign-request", "show", str(path)).stdout
    assert "ANY KEY" in text
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa), "--expect", summary_digest(path),
                   env=env(tmp_path))
    assert proc.returncode == 3
    proc = run_cli("sign-request", "sign", str(path), "--key", str(keys.rsa_b),
                   "--expect", summary_digest(path, str(keys.pub("rsa"))), env=env(tmp_path))
    assert proc.returncode == 3
    proc = sign_cli(path, str(keys.rsa), expect_key=str(keys.pub("rsa")))
    assert proc.returncode == 0, proc.stderr
    fp = keys.fingerprint("rsa")
    assert proc.stderr.count(fp) >= 2 and fp in proc.stdout     # top and bottom of the summary, and the result


def test_audit_log_has_one_entry_per_signature(tmp_path, keys, hsm):
    path = make(tmp_path)
    assert sign_cli(path, str(keys.rsa)).returncode == 0
    assert sign_cli(path, hsm.uri("rsa"), "-o", str(tmp_path / "resp.json"), env=hsm.env).returncode == 0
    log = tmp_path / "audit.jsonl"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    entries = audit(tmp_path)
    req, blobs = read_request(path)
    summary = summarize_request(req, blobs, keys.fingerprint("rsa"))
    assert len(entries) == 4
    for n, e in enumerate(entries):
        assert set(e) >= {"time", "kind", "decoded", "key", "request_digest", "tbs_sha256"}
        assert e["kind"] == "pcr-policy" and e["key"] == keys.fingerprint("rsa")
        assert e["request_digest"] == summary.digest()
        assert e["decoded"] == dict(summary.items[n % 2].decoded.values)
        assert e["decoded"]["svn"] == n % 2 + 1
    # a symlinked or world-readable audit log is refused and nothing is signed
    log.chmod(0o644)
    (tmp_path / "rel.1.tbs.sig").unlink()
    proc = sign_cli(path, str(keys.rsa))
    assert proc.returncode == 1 and "audit log" in proc.stderr and not (tmp_path / "rel.1.tbs.sig").exists()
    log.chmod(0o600)
    (tmp_path / "audit2").symlink_to(log)
    proc = sign_cli(path, str(keys.rsa), env={"PCRTOOL_AUDIT_LOG": str(tmp_path / "audit2")})
    assert proc.returncode == 1 and "symbolic link" in proc.stderr and len(audit(tmp_path)) == 4


def _policy(tmp_path: Path, rules: list) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "host-policy.json"
    p.write_text(json.dumps({"format": "pcrtool-signing-host-policy/2", "keys": rules}))
    return p


def test_signing_host_policy_limits_kinds_and_svns(tmp_path, keys):
    fp = keys.fingerprint("rsa")
    pol = _policy(tmp_path, [{"fingerprint": fp, "name": "release", "kinds": ["pcr-policy"],
                              "svn": {"min": 1, "max": 5}}])
    ok = make(tmp_path / "ok", [policy_item(1, 1), policy_item(2, 5)])
    proc = sign_cli(ok, str(keys.rsa), "--policy", str(pol))
    assert proc.returncode == 0, proc.stderr
    high = make(tmp_path / "high", [policy_item(1, 2 ** 31 - 1, label="svn 1")])
    proc = sign_cli(high, str(keys.rsa), "--policy", str(pol))
    assert proc.returncode == 4 and "svn 2147483647" in proc.stderr and not list((tmp_path / "high").glob("*.sig"))
    nosvn = make(tmp_path / "nosvn", [policy_item(1, None)])
    assert sign_cli(nosvn, str(keys.rsa), "--policy", str(pol)).returncode == 4
    verity = make(tmp_path / "v", [verity_item()], kind="verity-roothash")
    proc = sign_cli(verity, str(keys.rsa), "--policy", str(pol))
    assert proc.returncode == 4 and "may not sign verity-roothash" in proc.stderr
    proc = sign_cli(ok, str(keys.rsa_b), "--policy", str(pol))
    assert proc.returncode == 4 and "may sign nothing" in proc.stderr
    proc = run_cli("sign-request", "sign", str(ok), "--key", str(keys.rsa_b), "--expect", "00" * 32,
                   env={"PCRTOOL_SIGNING_HOST_POLICY": str(pol), **env(tmp_path)})
    assert proc.returncode == 4 and "may sign nothing" in proc.stderr
    # products: the bytes must carry the product (today's policyRef carries only the svn)
    prod = _policy(tmp_path / "ok", [{"fingerprint": fp, "kinds": ["pcr-policy"], "products": ["fooOS"]}])
    assert sign_cli(ok, str(keys.rsa), "--policy", str(prod)).returncode == 4
    # a key allowed several kinds is warned about, and so is a key the audit log saw sign another kind
    multi = _policy(tmp_path / "v", [{"fingerprint": fp, "kinds": ["pcr-policy", "verity-roothash"]}])
    proc = sign_cli(verity, str(keys.rsa), "--policy", str(multi),
                    env={"PCRTOOL_AUDIT_LOG": str(tmp_path / "ok" / "audit.jsonl")})
    assert proc.returncode == 0, proc.stderr
    assert "may sign 2 kinds" in proc.stderr and "signed pcr-policy requests before" in proc.stderr
    # once policyRefs carry a product (pcrtool.policy.scope), the product the bytes carry is enforced
    try:
        import pcrtool.policy.scope  # noqa: F401
    except ImportError:
        return
    prod = _policy(tmp_path / "p", [{"fingerprint": fp, "kinds": ["pcr-policy"], "products": ["fooos"]}])
    good = make(tmp_path / "p1", [policy_item(1, 1, product="fooos")])
    bad = make(tmp_path / "p2", [policy_item(1, 1, product="baros")])
    assert sign_cli(good, str(keys.rsa), "--policy", str(prod)).returncode == 0
    proc = sign_cli(bad, str(keys.rsa), "--policy", str(prod))
    assert proc.returncode == 4 and "product 'baros'" in proc.stderr


def test_host_policy_format_is_strict():
    keys_ = [{"fingerprint": "ab" * 32, "kinds": ["authenticode"]}]
    good = {"format": "pcrtool-signing-host-policy/2", "keys": keys_}
    assert parse_host_policy(json.dumps(good)).rules[0].kinds == ("authenticode",)
    # version 1 of the file (kebab-case marker) is still read
    assert parse_host_policy(json.dumps({"pcrtool-signing-host-policy": 1, "keys": keys_})).rules[0].kinds == \
        ("authenticode",)
    for bad in [{}, dict(good, extra=1), {"format": "pcrtool-signing-host-policy/3", "keys": keys_},
                {"pcrtool-signing-host-policy": 2, "keys": keys_}, {"format": "pcrtool-sign-request/2", "keys": keys_},
                dict(good, **{"pcrtool-signing-host-policy": 1}), dict(good, keys=[{"fingerprint": "AB" * 32, "kinds": ["authenticode"]}]),
                dict(good, keys=[{"fingerprint": "ab" * 32, "kinds": ["kernel-module"]}]),
                dict(good, keys=[{"fingerprint": "ab" * 32, "kinds": ["pcr-policy"], "svn": {"min": 5, "max": 1}}]),
                dict(good, keys=good["keys"] * 2)]:
        with pytest.raises(FormatError):
            parse_host_policy(json.dumps(bad))
    with pytest.raises(PolicyRefused):
        parse_host_policy(json.dumps(good)).check(
            summarize_request(*_req(), "ab" * 32))


def _req():
    req, blobs = new_request("pcr-policy", [policy_item(1, 1)])
    return req, blobs
