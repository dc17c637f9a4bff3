"""svn approvals from `pcrtool policy approve` against the newest `systemd-measure sign
--policyref=pcrtool-svn=N` (sid chroot): equal as JSON, keys in the same order, every bank."""

from __future__ import annotations

import json

from helpers_interop import run_pcrtool
from pcrtool.policy.approvals import Approvals

BANKS = ("sha1", "sha256", "sha384", "sha512")


def _keys(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    (tmp_path / "pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _systemd(sid, tmp_path, verb, *extra):
    (tmp_path / "linux").write_bytes(b"a kernel image")
    (tmp_path / "osrel").write_bytes(b"ID=demo\nVERSION_ID=1\n")
    proc = sid.run("systemd-measure", verb, f"--linux={tmp_path / 'linux'}", f"--osrel={tmp_path / 'osrel'}",
                   "--phase=enter-initrd", *[f"--bank={b}" for b in BANKS], "--json=short", *extra)
    return json.loads(proc.stdout)


def _approve(tmp_path, predicted: dict, svn: int | None, *extra) -> dict:
    rel = {"releases": [{"name": "demo", "version": "1", "svn": svn if svn is not None else 0,
                         "measurements": [], "predicted": predicted}]}
    (tmp_path / "rel.json").write_text(json.dumps(rel))
    out = tmp_path / f"ours-{svn}.pcrsig"
    out.unlink(missing_ok=True)
    run_pcrtool("policy", "approve", "-r", tmp_path / "rel.json", "-k", tmp_path / "k.pem", "--pcrs", "11",
                "--banks", ",".join(BANKS), "-o", out, *extra, check=True)
    return json.loads(out.read_text())


def _per_bank(sid, tmp_path, keys, ref_of) -> dict:
    """systemd-measure sign once per bank with that bank's policyRef (pcrtool's ref names the bank
    and the PCRs, so one --policyref cannot serve all banks), merged into one document."""
    out = {}
    for bank in BANKS:
        doc = _systemd_bank(sid, tmp_path, bank, *keys, f"--policyref={ref_of(bank)}")
        out[bank] = doc[bank]
    return out


def _systemd_bank(sid, tmp_path, bank, *extra):
    (tmp_path / "linux").write_bytes(b"a kernel image")
    (tmp_path / "osrel").write_bytes(b"ID=demo\nVERSION_ID=1\n")
    proc = sid.run("systemd-measure", "sign", f"--linux={tmp_path / 'linux'}", f"--osrel={tmp_path / 'osrel'}",
                   "--phase=enter-initrd", f"--bank={bank}", "--json=short", *extra)
    return json.loads(proc.stdout)


def test_svn_approvals_equal_systemd_measure_sign_policyref(sid_systemd, tmp_path):
    _keys(tmp_path)
    calc = _systemd(sid_systemd, tmp_path, "calculate")
    predicted = {bank: {"11": calc[bank][0]["hash"]} for bank in BANKS}
    keys = (f"--private-key={tmp_path / 'k.pem'}", f"--public-key={tmp_path / 'pub.pem'}")
    for svn in (0, 1, 4096):
        # the ref grammar (pcrtool.policy.scope): pcrtool-svn=<n>,bank=<bank>,pcrs=<a+b>
        theirs = _per_bank(sid_systemd, tmp_path, keys, lambda bank: f"pcrtool-svn={svn},bank={bank},pcrs=11")
        ours = _approve(tmp_path, predicted, svn)
        assert ours == theirs, f"systemd {sid_systemd.version}, svn {svn}"
        assert [list(e) for b in BANKS for e in ours[b]] == [list(e) for b in BANKS for e in theirs[b]]
        assert list(theirs["sha256"][0]) == ["pcrs", "pkfp", "ref", "pol", "sig"]
        assert Approvals.parse(json.dumps(theirs)).entries[0].svn == svn
    # the deny side: another svn is another signature
    other = _per_bank(sid_systemd, tmp_path, keys, lambda bank: f"pcrtool-svn=2,bank={bank},pcrs=11")
    assert _approve(tmp_path, predicted, 1)["sha256"] != other["sha256"]
    # and --no-svn equals systemd without --policyref
    assert _approve(tmp_path, predicted, None, "--no-svn") == _systemd(sid_systemd, tmp_path, "sign", *keys)
