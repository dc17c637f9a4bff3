"""Release manifests, allowlists and the predictions file."""

from __future__ import annotations

import hashlib
import json

import pytest

from pcrtool.model import HashAlg
from pcrtool.predict.manifest import (
    FORMAT, ManifestError, dump_predictions, load_predictions, parse_allowlist, parse_manifest,
    predict_release,
)
from tests.predict.helpers_manifest import FILES, MANIFEST, MANIFEST_JSON, V_COLON, V_FOO


def reader(path: str) -> bytes:
    return FILES[path]


def test_manifest_predicts_systemd_vectors_per_phase():
    r = predict_release(parse_manifest(MANIFEST), reader)
    assert (r.name, r.version, r.svn, r.pcrs, r.banks) == ("fooos", "2.1", 3, (11,), (HashAlg.SHA256,))
    assert r.values(":").get(HashAlg.SHA256, 11).hex() == V_COLON
    assert r.values("foo").get(HashAlg.SHA256, 11).hex() == V_FOO


def test_json_manifest_is_equivalent():
    r = predict_release(parse_manifest(json.dumps(MANIFEST_JSON)), reader)
    assert r.values().get(HashAlg.SHA256, 11).hex() == V_FOO


def test_predictions_file_round_trip():
    r = predict_release(parse_manifest(MANIFEST), reader)
    text = json.dumps(dump_predictions([r]))
    doc = json.loads(text)
    assert doc["format"] == FORMAT
    phase0 = doc["releases"][0]["phases"][0]
    assert (phase0["phase"], phase0["values"]) == ("", {"sha256": {"11": V_COLON}})
    # the events whose replay from reset gives the prediction (validation emulates the boot with them)
    assert [(e["pcr"], e["type"], e["description"]) for e in phase0["measurements"]] == [
        (11, "EV_IPL", ".linux"), (11, "EV_IPL", ".linux"), (11, "EV_IPL", ".initrd"), (11, "EV_IPL", ".initrd")]
    assert phase0["measurements"][1]["sha256"] == hashlib.sha256(b"HALLO\n").hexdigest()
    assert [e["type"] for e in doc["releases"][0]["phases"][1]["measurements"]][-1] == "userspace"
    (back,) = load_predictions(text)
    assert back == r


@pytest.mark.parametrize("bad,needle", [
    ('version = "1"\nsvn = 1\n[values]\n"0" = {sha256 = "00"}', "missing required field 'name'"),
    ('name = "a b"\nversion = "1"\nsvn = 1', "field 'name' has invalid characters"),
    ('name = "a"\nversion = 1\nsvn = 1', "field 'version' must be a non-empty string"),
    ('name = "a"\nversion = "1"\nsvn = -1', "field 'svn' must be an integer"),
    ('name = "a"\nversion = "1"\nsvn = true', "field 'svn' must be an integer"),
    ('name = "a"\nversion = "1"\nsvn = 1\nbanks = ["md5"]', "unknown bank 'md5'"),
    ('name = "a"\nversion = "1"\nsvn = 1\npcrs = [24]', "field 'pcrs' must be an integer 0…23"),
    ('name = "a"\nversion = "1"\nsvn = 1\ncolour = "red"', "unknown field 'colour'"),
    ('name = "a"\nversion = "1"\nsvn = 1\nphases = []', "field 'phases' must be a non-empty list"),
    ('name = "a"\nversion = "1"\nsvn = 1\nphases = ["a\\nb"]', "invalid boot phase word"),
    ('name = "a"\nversion = "1"\nsvn = [', "bad TOML"),
    ('{"name": "a", ', "bad JSON"),
])
def test_manifest_field_errors(bad, needle):
    with pytest.raises(ManifestError) as e:
        parse_manifest(bad, source="m.toml")
    assert needle in e.value.message
    assert e.value.message.startswith("m.toml")


@pytest.mark.parametrize("extra,needle", [
    ('[uki]\npath = "x"\n[uki.sections]\nlinux = "vmlinuz"', "exactly one of 'path' or 'sections'"),
    ('[uki.sections]\nkernel = "vmlinuz"', "unknown UKI section 'kernel'"),
    ('[values]\n"11" = {sha256 = "00"}', "must be 32-byte hex"),
    ('[values]\nx = {sha256 = "00"}', "key 'x' is not a PCR index"),
    ('pcrs = [0]\n[cmdline]\nstub = "quiet"', "PCR 0 is selected but nothing predicts it"),
])
def test_manifest_content_errors(extra, needle):
    with pytest.raises(ManifestError) as e:
        predict_release(parse_manifest('name = "a"\nversion = "1"\nsvn = 1\n' + extra), reader)
    assert needle in e.value.message


def test_precomputed_values_apply_to_all_phases_and_per_phase():
    m = parse_manifest('name = "a"\nversion = "1"\nsvn = 1\nphases = ["x", "y"]\n'
                       f'[values]\n"7" = {{sha256 = "{"11" * 32}"}}\n'
                       f'[values.phase.y]\n"11" = {{sha256 = "{"22" * 32}"}}\n'
                       f'[values.phase.x]\n"11" = {{sha256 = "{"33" * 32}"}}\n')
    r = predict_release(m, reader)
    assert r.pcrs == (7, 11) and not r.measurements and any("cannot emulate" in n for n in r.notes)
    assert r.values("x").get(HashAlg.SHA256, 7) == bytes([0x11]) * 32
    assert r.values("y").get(HashAlg.SHA256, 11) == bytes([0x22]) * 32


def test_allowlist_exact_uapi_equal_any_and_svn():
    al = parse_allowlist('[[allow]]\nname = "fooos"\nversion = "2.01"\n'
                         '[[allow]]\nname = "baros"\nversion = "*"\nsvn = 4\n')
    assert al.allows("fooos", "2.1", 9)      # 2.01 == 2.1 in UAPI order
    assert not al.allows("fooos", "2.2", 9)
    assert al.allows("baros", "7", 4) and not al.allows("baros", "7", 5)
    with pytest.raises(ManifestError, match="allow\\[0\\]: unknown field 'sv'"):
        parse_allowlist('[[allow]]\nname = "x"\nversion = "1"\nsv = 1')
    with pytest.raises(ManifestError, match="missing required field 'version'"):
        parse_allowlist('{"allow": [{"name": "x"}]}')


def test_load_predictions_rejects_missing_values():
    doc = {"format": FORMAT, "releases": [{"name": "a", "version": "1", "svn": 1, "allowed": True,
                                           "pcrs": [7, 11], "banks": ["sha256"],
                                           "phases": [{"phase": "", "values": {"sha256": {"11": "00" * 32}}}]}]}
    with pytest.raises(ManifestError, match="no sha256 value for PCR 7"):
        load_predictions(json.dumps(doc))
    with pytest.raises(ManifestError, match="not a pcrtool-predictions/1 file"):
        load_predictions("{}")


def test_duplicate_release_rejected():
    r = predict_release(parse_manifest(MANIFEST), reader)
    with pytest.raises(ManifestError, match="given twice"):
        dump_predictions([r, r])


def test_stub_version_limits_section_files_and_profile_tag_goes_to_pcr12():
    files = {"vmlinuz": b"HALLO\n", "initrd.img": b"foobar\n", "uname": b"6.1"}
    m = parse_manifest(MANIFEST.replace('initrd = "initrd.img"', 'initrd = "initrd.img"\nuname = "uname"')
                       .replace("[uki.sections]", "[uki]\nstub = 252\n[uki.sections]"))
    r = predict_release(m, files.__getitem__)
    assert r.values(":").get(HashAlg.SHA256, 11).hex() == V_COLON  # .uname unknown to a 252 stub


def test_profile_tag_measurement():
    from pcrtool.predict.cmdline import STUB_PROFILE_TAG, stub_profile_measurement

    m = stub_profile_measurement(2, [HashAlg.SHA256])
    assert m.pcr == 12 and m.digests[HashAlg.SHA256] == hashlib.sha256("2\0".encode("utf-16-le")).digest()
    assert int.from_bytes(m.data[:4], "little") == STUB_PROFILE_TAG


def test_boot_chain_with_the_kernel_the_stub_loads(tmp_path):
    from helpers_uki import build_uki
    from pcrtool.pe import authenticode_digest
    from pcrtool.predict.pe import CALLING_EFI_APPLICATION

    kernel = open("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "rb").read()  # any PE image
    uki = build_uki(tmp_path, [(".linux", kernel)])
    files = {"u.efi": uki}
    m = parse_manifest('name = "a"\nversion = "1"\nsvn = 1\npcrs = [4]\n[uki]\npath = "u.efi"\n'
                       '[boot]\nchain = ["uki", "uki.linux"]\n')
    r = predict_release(m, files.__getitem__)
    sha = HashAlg.SHA256
    expected = bytes(32)
    for d in (sha.digest(CALLING_EFI_APPLICATION), sha.digest(bytes(4)), authenticode_digest(uki, sha),
              authenticode_digest(kernel, sha)):
        expected = sha.digest(expected + d)
    assert r.values().get(sha, 4) == expected


def test_linux_stub_pcr9_from_uki_sections():
    from pcrtool.predict.cmdline import linux_initrd_measurement, linux_load_options_measurement
    from pcrtool.predict.events import replay_measurements

    files = {"vmlinuz": b"K", "cmdline": b"quiet rw\n", "initrd.img": b"I"}
    m = parse_manifest('name = "a"\nversion = "1"\nsvn = 1\npcrs = [9]\n[uki]\nlinux_stub = true\n'
                       '[uki.sections]\nlinux = "vmlinuz"\ncmdline = "cmdline"\ninitrd = "initrd.img"\n')
    r = predict_release(m, files.__getitem__)
    sha = [HashAlg.SHA256]
    expected = replay_measurements([linux_load_options_measurement("quiet rw", sha),  # newline mangled away
                                    linux_initrd_measurement(b"I", sha)], sha)
    assert r.values().get(HashAlg.SHA256, 9) == expected.get(HashAlg.SHA256, 9)
    with pytest.raises(ManifestError, match="'linux_stub' must be true or false"):
        predict_release(parse_manifest('name = "a"\nversion = "1"\nsvn = 1\n[uki]\nlinux_stub = 1\n'
                                       '[uki.sections]\nlinux = "vmlinuz"\n'), files.__getitem__)
