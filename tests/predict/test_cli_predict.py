"""`pcrtool predict …` end to end (real subprocesses, exit codes, files)."""

from __future__ import annotations

import json

import pytest

from helpers_uki import build_uki
from pcrtool.model import HashAlg
from pcrtool.predict.manifest import load_predictions
from tests.support.cli import run_pcrtool

V_COLON = "37b48bd0b222394dbe3cceff2fca4660c4b0a90ae9369ec90b42f14489989c13"
V_FOO = "21c49c1242042649e09c156546fd7d425ccc3c67359f840507b30be4e0f6f699"


def pcrtool(*args, cwd=None):
    return run_pcrtool(*args, cwd=cwd, timeout=60)


@pytest.fixture
def vector_files(tmp_path):
    (tmp_path / "vmlinuz").write_bytes(b"HALLO\n")
    (tmp_path / "initrd.img").write_bytes(b"foobar\n")
    return tmp_path


def test_uki_text_and_systemd_measure_json(vector_files):
    p = pcrtool("predict", "uki", "--linux", vector_files / "vmlinuz", "--initrd", vector_files / "initrd.img",
                "--bank", "sha256", "--phase", ":", "--phase", "foo")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"11:sha256={V_COLON}\n11:sha256={V_FOO}\n"
    p = pcrtool("predict", "uki", "--linux", vector_files / "vmlinuz", "--initrd", vector_files / "initrd.img",
                "--bank", "sha256", "--phase", "foo", "--json=short")
    assert json.loads(p.stdout) == {"sha256": [{"phase": "foo", "pcr": 11, "hash": V_FOO}]}


def test_uki_file(tmp_path):
    uki = build_uki(tmp_path, [(".linux", b"HALLO\n"), (".initrd", b"foobar\n")])
    p = pcrtool("predict", "uki", tmp_path / "uki.efi", "--bank", "sha256", "--phase", ":")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"11:sha256={V_COLON}\n"
    assert uki


@pytest.mark.parametrize("args,code,needle", [
    (["predict", "uki"], 2, "give either a UKI file or section files"),
    (["predict", "uki", "--initrd", "x"], 2, "--linux is required"),
    (["predict", "uki", "--linux", "x"], 1, "does not exist"),
    (["predict", "uki", "--linux", "/etc/hostname", "--bank", "md5"], 2, "unknown hash algorithm"),
    (["predict", "cmdline", "quiet", "--pcr", "3"], 2, "--pcr must be 12 or 9"),
    (["predict", "pe", "/etc/hostname"], 1, "error"),
    (["predict", "secureboot", "--owner", "nope"], 2, "--owner is not a GUID"),
    (["predict", "release", "/nonexistent.toml"], 1, "does not exist"),
])
def test_errors_are_one_line_with_exit_codes(args, code, needle):
    p = pcrtool(*args)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_release_writes_predictions_with_allowlist(vector_files):
    (vector_files / "a.toml").write_text('name = "fooos"\nversion = "2.1"\nsvn = 3\nphases = ["foo"]\n'
                                         '[uki.sections]\nlinux = "vmlinuz"\ninitrd = "initrd.img"\n')
    (vector_files / "b.toml").write_text('name = "fooos"\nversion = "2.10"\nsvn = 4\nphases = [":"]\n'
                                         '[uki.sections]\nlinux = "vmlinuz"\ninitrd = "initrd.img"\n')
    (vector_files / "allow.toml").write_text('[[allow]]\nname = "fooos"\nversion = "2.10"\n')
    out = vector_files / "predictions.json"
    p = pcrtool("predict", "release", "b.toml", "a.toml", "--allowlist", "allow.toml", "-o", out, cwd=vector_files)
    assert p.returncode == 0, p.stderr
    a, b = load_predictions(out.read_text())
    assert (a.version, a.allowed, b.version, b.allowed) == ("2.1", False, "2.10", True)  # UAPI order
    assert a.values("foo").get(HashAlg.SHA256, 11).hex() == V_FOO
    assert b.values(":").get(HashAlg.SHA256, 11).hex() == V_COLON


def test_release_bad_manifest_leaves_no_output(vector_files):
    (vector_files / "bad.toml").write_text('name = "x"\nversion = "1"\n')
    out = vector_files / "predictions.json"
    p = pcrtool("predict", "release", "bad.toml", "-o", out, cwd=vector_files)
    assert p.returncode == 1 and "missing required field 'svn'" in p.stderr
    assert not out.exists()


def test_from_log_substitutes_a_new_uki(tmp_path):
    from pcrtool.predict.emulate import event_log_bytes
    from tests.support.firmware import demo_firmware_measurements
    from pcrtool.predict.events import replay_measurements
    from pcrtool.predict.uki import section_measurements

    banks = [HashAlg.SHA256]
    before, at_boot = demo_firmware_measurements(banks)
    old = before + at_boot + section_measurements({".linux": b"old"}, banks)
    (tmp_path / "ref.log").write_bytes(event_log_bytes(old, banks))
    build_uki(tmp_path / "u", [(".linux", b"new"), (".osrel", b"ID=x\n")])
    p = pcrtool("predict", "from-log", tmp_path / "ref.log", "--uki", tmp_path / "u" / "uki.efi", "--pcr", "11",
                "--pcr", "7", "--json=short")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    new = before + at_boot + section_measurements({".linux": b"new", ".osrel": b"ID=x\n"}, banks)
    expected = replay_measurements(new, banks)
    assert doc["pcrs"] == {"sha256": {"7": expected.get(HashAlg.SHA256, 7).hex(),
                                      "11": expected.get(HashAlg.SHA256, 11).hex()}}
    assert len(doc["replaced"]) == 2 and "EV_POST_CODE" in p.stderr


def test_secureboot_and_pe_and_gpt_commands(tmp_path):
    p = pcrtool("predict", "secureboot", "--secureboot", "0", "--bank", "sha256", "--json=short")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [e["description"] for e in doc["events"]] == ["SecureBoot", "PK", "KEK", "db", "dbx", "separator 00000000"]
    p = pcrtool("predict", "pe", "/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "--json=short")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["events"][-1]["type"] == "EV_EFI_BOOT_SERVICES_APPLICATION"
    (tmp_path / "disk.img").write_bytes(bytes(8192))
    p = pcrtool("predict", "gpt", tmp_path / "disk.img")
    assert p.returncode == 1 and "no GPT header" in p.stderr
