"""Attack 5 of issue 19: files and bounds on the signing host. Symlinks, FIFOs and devices are
refused as inputs and outputs, nothing outside the request directory is read, outputs cannot
collide and are written all or nothing, every bound holds, and errors leak no content hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from helpers_sign import run_cli, sign_cli
from pcrtool.errors import FormatError, InputFileError
from pcrtool.sign.offline import new_request, parse_request, read_request, write_request
from pcrtool.sign.request import limits
from request_items import policy_item, verity_item


def make(d: Path, items=None, kind="pcr-policy") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    req, blobs = new_request(kind, items or [policy_item(1, 1), policy_item(2, 2)])
    write_request(d / "r.sign-request.json", req, blobs)
    return d / "r.sign-request.json"


def sign(path: Path, key, *args: str):
    return run_cli("sign-request", "sign", str(path), "--key", str(key), "--expect", "00" * 32, *args,
                   env={"PCRTOOL_AUDIT_LOG": str(path.parent / "audit.jsonl")})


def no_outputs(d: Path) -> bool:
    return not list(d.glob("*.sig")) and not list(d.glob(".*.tmp")) and not (d / "audit.jsonl").exists()


def test_symlinked_tbs_file_is_refused_and_its_target_digest_never_shown(tmp_path, keys):
    secret = tmp_path / "pin.txt"
    secret.write_bytes(b"468135\n")
    d = tmp_path / "req"
    path = make(d)
    (d / "rel.1.tbs").unlink()
    (d / "rel.1.tbs").symlink_to(secret)
    for args in (["show"], ["sign", "--key", str(keys.rsa), "--expect", "00" * 32]):
        proc = run_cli("sign-request", args[0], str(path), *args[1:])
        assert proc.returncode == 1 and "symbolic link" in proc.stderr, proc.stderr
        digest = hashlib.sha256(secret.read_bytes()).hexdigest()
        assert not any(digest[i:i + 6] in proc.stderr for i in range(0, 58))
    assert no_outputs(d)
    # a changed regular file: refused without its digest either
    (d / "rel.1.tbs").unlink()
    (d / "rel.1.tbs").write_bytes(b"468135\n")
    proc = run_cli("sign-request", "show", str(path))
    assert proc.returncode == 3 and "were changed" in proc.stderr
    assert hashlib.sha256(b"468135\n").hexdigest()[:6] not in proc.stderr


def test_names_outside_the_directory_are_refused(tmp_path):
    base = new_request("pcr-policy", [policy_item(1, 1)])[0].to_json()
    for name in ("../x", "/etc/passwd", "sub/x", ".hidden", "a\nb", "a\x1b[2Jb", "x" * 201, ""):
        doc = json.loads(json.dumps(base))
        doc["tbs"][0]["file"] = name
        with pytest.raises(FormatError, match="plain file name"):
            parse_request(json.dumps(doc))


def test_fifo_and_device_inputs_are_refused_without_reading(tmp_path, keys):
    d = tmp_path / "fifo"
    path = make(d)
    (d / "rel.2.tbs").unlink()
    os.mkfifo(d / "rel.2.tbs")          # a reader would block forever: lstat refuses it first
    proc = sign(path, keys.rsa)
    assert proc.returncode == 1 and "FIFO" in proc.stderr and no_outputs(d)
    proc = run_cli("sign-request", "show", "/dev/zero")  # a device as the manifest
    assert proc.returncode == 1 and "a device" in proc.stderr
    (d / "rel.2.tbs").unlink()
    (d / "rel.2.tbs").symlink_to("/dev/zero")
    proc = sign(path, keys.rsa)
    assert proc.returncode == 1 and "symbolic link" in proc.stderr and no_outputs(d)
    d2 = tmp_path / "link"
    path2 = make(d2)
    (tmp_path / "elsewhere.json").write_bytes(path2.read_bytes())
    path2.unlink()
    path2.symlink_to(tmp_path / "elsewhere.json")   # the manifest itself as a symlink
    assert run_cli("sign-request", "show", str(path2)).returncode == 1


@pytest.mark.parametrize("target", ["symlink", "fifo", "device", "directory"])
def test_outputs_through_symlinks_fifos_devices_are_refused_all_or_nothing(tmp_path, keys, target):
    d = tmp_path / "req"
    path = make(d)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    bad = d / "rel.2.tbs.sig"              # the SECOND item's output: the first must not appear either
    if target == "symlink":
        bad.symlink_to(victim)
    elif target == "fifo":
        os.mkfifo(bad)
    elif target == "device":
        bad.symlink_to("/dev/null")
        bad = None
    else:
        bad.mkdir()
    proc = sign_cli(path, str(keys.rsa))
    assert proc.returncode == 1 and "refusing to write through it" in proc.stderr, proc.stderr
    assert not (d / "rel.1.tbs.sig").exists() and not list(d.glob(".*.tmp"))
    assert victim.read_bytes() == b"keep" and not (d / "audit.jsonl").exists()
    # -o to a device, a FIFO or a symlink is refused as well
    out = {"symlink": d / "resp-link", "fifo": d / "resp-fifo", "device": Path("/dev/null"),
           "directory": d / "resp-dir"}[target]
    if target == "symlink":
        out.symlink_to(victim)
    elif target == "fifo":
        os.mkfifo(out)
    elif target == "directory":
        out.mkdir()
    for p in d.glob("rel.2.tbs.sig"):
        p.unlink() if not p.is_dir() or p.is_symlink() else p.rmdir()
    proc = sign_cli(path, str(keys.rsa), "-o", str(out))
    assert proc.returncode == 1 and ("refusing to write through it" in proc.stderr), proc.stderr
    assert victim.read_bytes() == b"keep"


def test_output_names_cannot_collide(tmp_path, keys):
    a = policy_item(1, 1, name="a")
    b = policy_item(2, 2, name="a.sig")     # item a's signature would clobber item a.sig
    with pytest.raises(FormatError, match="would overwrite another file"):
        new_request("pcr-policy", [a, b])
    doc = new_request("pcr-policy", [a, policy_item(2, 2, name="b")])[0].to_json()
    doc["tbs"][1]["file"] = "a.sig"
    with pytest.raises(FormatError, match="would overwrite another file"):
        parse_request(json.dumps(doc))
    # nor the manifest: item "r.sign-request.json" is refused, and so is "<manifest minus .sig>"
    d = tmp_path / "m"
    d.mkdir()
    req, blobs = new_request("pcr-policy", [policy_item(1, 1, name="x.json")])
    write_request(d / "x.json.sig", req, blobs)
    with pytest.raises(FormatError, match="would overwrite another file"):
        read_request(d / "x.json.sig")
    # nor can -o name the manifest, an item or an item's signature
    path = make(tmp_path / "o")
    for name in ("r.sign-request.json", "rel.1.tbs", "rel.2.tbs.sig"):
        proc = sign_cli(path, str(keys.rsa), "-o", str(path.parent / name))
        assert proc.returncode == 2 and "would overwrite a file of the request" in proc.stderr
    assert read_request(path)[1][0] == policy_item(1, 1)[2]


def test_limits_items_sizes_labels_depth_integers(tmp_path, keys):
    base = new_request("pcr-policy", [policy_item(1, 1)])[0].to_json()
    item = base["tbs"][0]
    many = dict(base, tbs=[dict(item, file=f"f{i}", label=f"l{i}") for i in range(limits.MAX_ITEMS + 1)])
    with pytest.raises(FormatError, match=f"at most {limits.MAX_ITEMS}"):
        parse_request(json.dumps(many))
    with pytest.raises(FormatError, match="label"):
        parse_request(json.dumps(dict(base, tbs=[dict(item, label="x" * (limits.MAX_LABEL_CHARS + 1))])))
    with pytest.raises(FormatError, match="nesting deeper"):
        parse_request('{"pcrtool-sign-request": 1, "extra": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(FormatError, match="more than 16 digits"):
        parse_request(json.dumps(base).replace('"size": 64', '"size": ' + "9" * 5000))
    with pytest.raises(FormatError, match="repeats the key"):
        parse_request(json.dumps(base)[:-1] + ', "kind": "verity-roothash"}')
    with pytest.raises(FormatError, match="larger than"):
        parse_request(json.dumps(dict(base, extra={"x": "y" * limits.MAX_MANIFEST_BYTES})))
    # per-kind size: a 65-byte pcr-policy file or a 129-byte root hash is refused before it is read
    for kind, items, name, size in [("pcr-policy", [policy_item(1, 1)], "rel.1.tbs", 65),
                                    ("verity-roothash", [verity_item()], "img.roothash", 129)]:
        d = tmp_path / kind
        path = make(d, items, kind)
        (d / name).write_bytes(b"0" * size)
        proc = run_cli("sign-request", "show", str(path))
        assert proc.returncode == 1 and "more than the" in proc.stderr and "internal error" not in proc.stderr


def test_read_regular_checks_the_opened_file(tmp_path):
    from pcrtool.sign.host_files import read_regular
    (tmp_path / "f").write_bytes(b"x" * 10)
    assert read_regular("f", 10, what="t", dir_fd=os.open(tmp_path, os.O_RDONLY)) == b"x" * 10
    with pytest.raises(InputFileError, match="more than"):
        read_regular(str(tmp_path / "f"), 9, what="t")
