"""`ddi verify`: the allow side, the negative matrix (each refused with its reason, exit 3) and
certificate rotation. Images are a signed pcrtool sysext and copies of it with one thing broken."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from helpers_ddi import SYSEXT_POLICY, cli, make_tree, run

from pcrtool.gpt import GptEntry, build_gpt, read_gpt
from pcrtool.verity.sig_partition import VeritySig, build_sig_partition, parse_sig_partition
from tests.support import need_tool


def verify(image, *args, certs=None, host_file=None, policy=SYSEXT_POLICY):
    argv = ["--json=short", "ddi", "verify", image, "--image-policy", policy, "--arch", "x86-64"]
    argv += ["--certs", certs] if certs else []
    argv += ["--host-os-release", host_file] if host_file else []
    code, out, err = cli(*argv, *args)
    return code, (json.loads(out) if out else None), err


@pytest.fixture
def env(good, certdirs, host):
    return {"certs": certdirs["new"], "host_file": host["debian"]}


def mutate(good, tmp_path, change, name="good.raw"):
    data = bytearray(good.read_bytes())
    change(data)
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def part(data, index):
    e = read_gpt(bytes(data)).entries[index]
    return e.first_lba * 512, e.lba_count * 512


def set_sig(data, sig: VeritySig):
    off, size = part(data, 2)
    data[off:off + size] = build_sig_partition(sig, size)


def old_sig(data) -> VeritySig:
    off, size = part(data, 2)
    return parse_sig_partition(bytes(data[off:off + size]))


def regpt(data, entries):
    g = read_gpt(bytes(data))
    img = build_gpt(entries, disk_guid=g.header.disk_guid, total_sectors=len(data) // 512, first_usable_lba=34)
    data[:len(img.head)] = img.head
    data[-len(img.tail):] = img.tail


def test_good_image_is_accepted(good, env):
    code, result, err = verify(good, **env)
    assert code == 0, err
    assert result["ok"] and result["mode"] == "signed" and result["reason"] is None
    assert "CN=new" in result["signer"]


@pytest.mark.parametrize("case,reason", [
    ("garbage-signature", "not a valid PKCS#7"),
    ("other-key", "none of the 1 trusted certificates is that signer"),
    ("flipped-data-block", "data block 3 of root"),
    ("flipped-hash-block", "hash partition block 1 is corrupt"),
    ("signed-root-differs", "is not the image's root hash"),
    ("swapped-types", "has no dm-verity superblock"),
    ("swapped-uuids", "is not the root hash's first half"),
    ("missing-sig", "the policy requires signed"),
    ("missing-verity", "root is unprotected"),
    ("corrupt-gpt", "GPT header CRC mismatch"),
])
def test_broken_image_is_refused_with_its_reason(case, reason, good, keys, env, tmp_path):
    openssl = need_tool("openssl")

    def change(data):
        if case == "garbage-signature":
            s = old_sig(data)
            set_sig(data, VeritySig(s.root_hash, s.certificate_fingerprint, b"\x30\x03garbage"))
        elif case == "other-key":
            s = old_sig(data)
            (tmp_path / "tbs").write_bytes(s.root_hash.hex().encode())
            key, cert = keys["other"]
            run(openssl, "smime", "-sign", "-nocerts", "-noattr", "-binary", "-in", tmp_path / "tbs",
                "-inkey", key, "-signer", cert, "-outform", "der", "-out", tmp_path / "sig")
            set_sig(data, VeritySig(s.root_hash, s.certificate_fingerprint, (tmp_path / "sig").read_bytes()))
        elif case == "flipped-data-block":
            off, _ = part(data, 0)
            data[off + 3 * 4096 + 17] ^= 1
        elif case == "flipped-hash-block":
            off, _ = part(data, 1)
            data[off + 4096 + 5] ^= 1
        elif case == "signed-root-differs":
            s = old_sig(data)
            other = bytes(32 - 1) + b"\x01"
            (tmp_path / "tbs").write_bytes(other.hex().encode())
            key, cert = keys["new"]
            run(openssl, "smime", "-sign", "-noattr", "-binary", "-in", tmp_path / "tbs", "-inkey", key,
                "-signer", cert, "-outform", "der", "-out", tmp_path / "sig")
            set_sig(data, VeritySig(other, s.certificate_fingerprint, (tmp_path / "sig").read_bytes()))
        elif case == "swapped-types":
            es = list(read_gpt(bytes(data)).entries)
            es[0], es[1] = (GptEntry(0, es[1].type_guid, es[0].unique_guid, es[0].first_lba, es[0].last_lba,
                                     es[0].attributes, es[0].name),
                            GptEntry(1, es[0].type_guid, es[1].unique_guid, es[1].first_lba, es[1].last_lba,
                                     es[1].attributes, es[1].name))
            regpt(data, es)
        elif case == "swapped-uuids":
            es = list(read_gpt(bytes(data)).entries)
            a, b = es[0], es[1]
            es[0] = GptEntry(0, a.type_guid, b.unique_guid, a.first_lba, a.last_lba, a.attributes, a.name)
            es[1] = GptEntry(1, b.type_guid, a.unique_guid, b.first_lba, b.last_lba, b.attributes, b.name)
            regpt(data, es)
        elif case == "missing-sig":
            regpt(data, list(read_gpt(bytes(data)).entries[:2]))
        elif case == "missing-verity":
            es = read_gpt(bytes(data)).entries
            regpt(data, [es[0]])
        elif case == "corrupt-gpt":
            data[512 + 40] ^= 1

    image = mutate(good, tmp_path, change)
    policy = "root=signed+absent:usr=absent" if case == "missing-sig" else SYSEXT_POLICY
    code, result, err = verify(image, policy=policy, **env)
    assert code == 3, (case, result)
    assert reason in err, (case, err)
    if result is not None:
        assert not result["ok"] and reason in result["reason"]


def test_unsigned_image_from_prepare_is_refused(good, tmp_path, env):
    # the verity-sig partition is there but empty (NULs): not signed
    image = mutate(good, tmp_path, lambda d: set_zero_sig(d))
    code, _, err = verify(image, **env)
    assert code == 3 and "verity-sig" in err


def set_zero_sig(data):
    off, size = part(data, 2)
    data[off:off + size] = bytes(size)


@pytest.mark.parametrize("policy,reason", [
    ("root=verity+signed+absent:root-verity-sig=absent", "the policy requires it to be absent"),
    ("root=absent", "has a root partition"),
    ("usr=verity+signed", "has no usr partition"),
    ("root=encrypted", "root is verity+signed; the policy requires encrypted"),
    ("root=signed+read-only-off", "root is read-only-on"),
    ("root=signed+squashfs", "holds erofs; the policy allows squashfs"),
])
def test_policy_violations_are_refused(policy, reason, good, env):
    code, result, err = verify(good, policy=policy, **env)
    assert code == 3 and reason in result["reason"], result


@pytest.mark.parametrize("policy,mode", [
    ("root=verity+signed+absent:usr=verity+signed+absent", "signed"),
    ("root=verity", "verity"),               # the sig partition is unused: plain verity
    ("*", "signed"),
    ("root=open:=unused+absent", "signed"),
])
def test_policies_that_allow_the_image(policy, mode, good, env):
    code, result, err = verify(good, policy=policy, **env)
    assert code == 0, err
    assert result["mode"] == mode


@pytest.mark.parametrize("release,host_name,name,reason", [
    ("ID=fedora\nVERSION_ID=42\n", "debian", "ext", "ID=fedora, the host is ID=debian"),
    ("ID=debian\nSYSEXT_LEVEL=2.0\n", "debian", "ext", "SYSEXT_LEVEL=2.0, the host has SYSEXT_LEVEL=1.0"),
    ("ID=debian\nVERSION_ID=12\n", "fedora", "ext", "ID=debian, the host is ID=fedora"),
    ("ID=fedora\nVERSION_ID=41\n", "fedora", "ext", "VERSION_ID=41, the host has VERSION_ID=42"),
    ("ID=_any\nARCHITECTURE=arm64\n", "debian", "ext", "no root or usr partition for x86-64; the image is for arm64"),
    ("ID=_any\nSYSEXT_SCOPE=initrd\n", "debian", "ext", "SYSEXT_SCOPE=initrd does not include 'system'"),
    ("ID=debian\n", "fedora", "ext", "ID=debian, the host is ID=fedora"),
    ("ID=_any\n", "debian", "renamed", "is named 'renamed' but carries extension-release.ext"),
])
def test_extension_release_mismatch_is_refused(release, host_name, name, reason, keys, certdirs, host, tmp_path):
    image = _build(tmp_path, keys, release, "ext", arch="arm64" if "arm64" in release else "x86-64")
    if name != "ext":
        image = image.rename(image.with_name(f"{name}.raw"))
    code, result, err = verify(image, certs=certdirs["new"], host_file=host[host_name])
    assert code == 3, result
    assert reason in result["reason"]


@pytest.mark.parametrize("release,host_name", [
    ("ID=_any\n", "fedora"),
    ("ID=debian\nSYSEXT_LEVEL=1.0\n", "debian"),
    ("ID=fedora\nVERSION_ID=42\nARCHITECTURE=x86-64\nSYSEXT_SCOPE=system portable\n", "fedora"),
    ("ID=coreos\nSYSEXT_LEVEL=1.0\n", "flatcar"),        # ID_LIKE
])
def test_extension_release_match_is_accepted(release, host_name, keys, certdirs, host, tmp_path):
    image = _build(tmp_path, keys, release, "ext")
    code, _, err = verify(image, certs=certdirs["new"], host_file=host[host_name])
    assert code == 0, err


def _build(tmp_path, keys, release, name, who="new", cert=None, arch="x86-64"):
    src = make_tree(tmp_path / f"src-{who}", name, release, files=3)
    out = tmp_path / f"{name}.raw"
    key, c = keys[who]
    code, _, err = cli("ddi", "build", src, "-o", out, "-k", f"file:{key}", "-c", cert or c, "--arch", arch)
    assert code == 0, err
    return out


def test_rotation(keys, certdirs, host, tmp_path):
    (tmp_path / "n").mkdir()
    (tmp_path / "o").mkdir()
    new = _build(tmp_path / "n", keys, "ID=_any\n", "ext", "new")
    old = _build(tmp_path / "o", keys, "ID=_any\n", "ext", "old")
    h = host["debian"]
    assert verify(new, certs=certdirs["both"], host_file=h)[0] == 0
    assert verify(new, certs=certdirs["new"], host_file=h)[0] == 0
    assert verify(old, certs=certdirs["both"], host_file=h)[0] == 0
    code, result, _ = verify(old, certs=certdirs["new"], host_file=h)
    assert code == 3 and "none of the 1 trusted certificates" in result["reason"] and "Common Name: old" in result["reason"]
    code, result, _ = verify(new, certs=certdirs["old"], host_file=h)
    assert code == 3 and "none of the 1 trusted certificates" in result["reason"]


def test_expired_certificate_is_accepted_like_systemd_unless_strict(keys, certdirs, host, tmp_path):
    """systemd checks the PKCS#7 with PKCS7_NOVERIFY (and the kernel ignores validity dates):
    an expired certificate still verifies. --strict-validity refuses it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(keys["new"][0].read_bytes(), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    past = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(past).not_valid_after(past + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    d = tmp_path / "verity.d"
    d.mkdir()
    (d / "expired.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    image = _build(tmp_path, keys, "ID=_any\n", "ext", cert=d / "expired.crt")
    code, result, err = verify(image, certs=d, host_file=host["debian"])
    assert code == 0, err
    assert any("validity" in w for w in result["warnings"])
    code, result, _ = verify(image, "--strict-validity", certs=d, host_file=host["debian"])
    assert code == 3 and "validity period" in result["reason"]


def test_no_trusted_certificates_refuses_a_signed_image(good, host, tmp_path):
    empty = tmp_path / "empty.d"
    empty.mkdir()
    code, result, _ = verify(good, certs=empty, host_file=host["debian"])
    assert code == 3 and "no trusted certificates" in result["reason"]


def test_der_certificate_is_ignored_as_systemd_does(good, keys, host, tmp_path):
    d = tmp_path / "der.d"
    d.mkdir()
    run(need_tool("openssl"), "x509", "-in", keys["new"][1], "-outform", "der", "-out", d / "new.crt")
    code, result, _ = verify(good, certs=d, host_file=host["debian"])
    assert code == 3 and "no trusted certificates" in result["reason"]


def test_usage_errors_are_one_line(good, env, tmp_path):
    code, _, err = verify(good, policy="root=bogus", **env)
    assert code == 2 and "unknown flag 'bogus'" in err and "Traceback" not in err
    code, _, err = verify(tmp_path / "missing.raw", **env)
    assert code == 1 and "cannot open" in err
    junk = tmp_path / "junk.raw"
    junk.write_bytes(bytes(8192))
    code, _, err = verify(junk, **env)
    assert code == 3 and "no GPT header" in err


@pytest.mark.parametrize("policy", [
    "root=verity+signed+absent:root-verity-sig=absent", "root=absent", "usr=verity+signed", "root=encrypted",
    "root=signed+read-only-off", "root=verity", "*", "root=open:=unused+absent", "root=unprotected",
    "root=signed+absent:usr=absent", "root=verity+signed+absent:usr=verity+signed+absent", "~", "-",
])
def test_policy_verdicts_agree_with_systemd_dissect_validate(policy, good, env, sid_systemd):
    """systemd-dissect --validate checks the partition arrangement against the policy (not the
    signature, not the file-system type: that is checked when mounting)."""
    theirs = sid_systemd.run("systemd-dissect", "--validate", f"--image-policy={policy}", good, check=False)
    code, result, err = verify(good, policy=policy, **env)
    assert (theirs.returncode == 0) == (code == 0), (policy, theirs.stderr, err)
