"""PCR 9 load options of the Linux EFI stub in release manifests: an explicit `[cmdline] kernel`
replaces the UKI-derived event (never adds one), and with Secure Boot off the kernel gets the stub
command line (the boot entry's LoadOptions) instead of `.cmdline` (eventlogs/ovmf-loadopts).

Expected values are plain hashlib arithmetic: digest = SHA-256(UTF-16LE text + NUL) for the
load options, SHA-256(initrd) for the initrd, PCR = extend from zero in event order.
"""

from __future__ import annotations

import hashlib
import subprocess

import pytest

from pcrtool.model import HashAlg
from pcrtool.predict.manifest import ManifestError, parse_manifest, predict_release

SHA = HashAlg.SHA256
FILES = {"vmlinuz": b"K", "cmdline": b"quiet rw\n", "initrd.img": b"I", "other-initrd": b"J"}
HEAD = 'name = "a"\nversion = "1"\nsvn = 1\npcrs = [9]\nphases = [":"]\n'
UKI = ('[uki]\nlinux_stub = true\n[uki.sections]\nlinux = "vmlinuz"\ncmdline = "cmdline"\n'
       'initrd = "initrd.img"\n')


def opts(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-16-le") + b"\0\0").digest()


def pcr(*digests: bytes) -> bytes:
    v = bytes(32)
    for d in digests:
        v = hashlib.sha256(v + d).digest()
    return v


def predict(text: str, files=FILES):
    r = predict_release(parse_manifest(text), files.__getitem__)
    return r, r.values().get(SHA, 9)


INITRD = hashlib.sha256(b"I").digest()


def test_uki_alone_derives_pcr9_from_cmdline():
    assert predict(HEAD + UKI)[1] == pcr(opts("quiet rw"), INITRD)


def test_explicit_kernel_replaces_the_uki_derived_load_options():
    _r, v = predict(HEAD + UKI + '[cmdline]\nkernel = "root=/dev/sda1"\n')
    assert v == pcr(opts("root=/dev/sda1"), INITRD)  # one load-options event, not two
    assert v != pcr(opts("root=/dev/sda1"), opts("quiet rw"), INITRD)


def test_explicit_initrd_replaces_the_uki_derived_initrd():
    _r, v = predict(HEAD + UKI + '[cmdline]\ninitrd = "other-initrd"\n')
    assert v == pcr(opts("quiet rw"), hashlib.sha256(b"J").digest())


@pytest.mark.parametrize("sb", ["SecureBoot = 0\n", None])
def test_stub_load_options_reach_the_kernel_with_secure_boot_off(sb):
    text = HEAD.replace("[9]", "[9, 12]") + UKI + ("[secureboot]\n" + sb if sb else "") + \
        '[cmdline]\nstub = "console=ttyS0 x=1"\n'
    r, v = predict(text)
    assert v == pcr(opts("console=ttyS0 x=1"), INITRD)
    assert r.values().get(SHA, 12) == pcr(opts("console=ttyS0 x=1"))
    assert any("Secure Boot state unknown" in n for n in r.notes) is (sb is None)


def test_secure_boot_on_keeps_cmdline_for_the_kernel():
    r, v = predict(HEAD + UKI + '[secureboot]\nSecureBoot = 1\n[cmdline]\nstub = "console=ttyS0 x=1"\n')
    assert v == pcr(opts("quiet rw"), INITRD)
    assert any("ignores load options" in n for n in r.notes)


def test_explicit_kernel_wins_over_the_stub_command_line():
    _r, v = predict(HEAD + UKI + '[secureboot]\nSecureBoot = 0\n[cmdline]\nstub = "a=1"\nkernel = "b=2"\n')
    assert v == pcr(opts("b=2"), INITRD)


def test_reference_log_kernel_events_are_replaced_not_duplicated():
    """With a reference log (an emulated boot whose kernel measured PCR 9), [cmdline] kernel and the
    UKI-derived events share the family: one load-options event, one initrd event."""
    from pcrtool.predict.cmdline import linux_initrd_measurement, linux_load_options_measurement
    from pcrtool.predict.emulate import event_log_bytes

    log = event_log_bytes([linux_load_options_measurement("old", [SHA]), linux_initrd_measurement(b"old", [SHA])],
                          [SHA], locality=0)
    files = FILES | {"ref.bin": log}
    base = HEAD + 'reference_log = "ref.bin"\n' + UKI.replace("linux_stub = true\n", "")
    assert predict(base, files)[1] == pcr(opts("quiet rw"), INITRD)
    assert predict(base + '[cmdline]\nkernel = "new"\n', files)[1] == pcr(opts("new"), INITRD)
    assert predict(base + '[cmdline]\nkernel = "new"\ninitrd = "other-initrd"\n', files)[1] == \
        pcr(opts("new"), hashlib.sha256(b"J").digest())


def test_section_digests_instead_of_files():
    digest = {"sha256": INITRD.hex()}
    text = (HEAD + '[uki]\nlinux_stub = true\n[uki.sections]\nlinux = "vmlinuz"\n'
            f'initrd = {{sha256 = "{digest["sha256"]}"}}\n'
            f'cmdline = {{sha256 = "{hashlib.sha256(b"quiet rw").hexdigest()}"}}\n'
            '[cmdline]\nkernel = "quiet rw"\n')
    assert predict(text)[1] == pcr(opts("quiet rw"), INITRD)
    # .cmdline as a digest gives no text: without [cmdline] kernel/stub only the initrd, with a note
    r, v = predict(text.replace('[cmdline]\nkernel = "quiet rw"\n', ""))
    assert v == pcr(INITRD) and any("as digests" in n for n in r.notes)
    with pytest.raises(ManifestError, match="has no sha384 digest"):
        predict(text.replace('svn = 1\n', 'svn = 1\nbanks = ["sha256", "sha384"]\n'))
    with pytest.raises(ManifestError, match="sha256"):
        predict(text.replace(INITRD.hex(), "00"))


def _pcrtool(*args):
    from tests.support.cli import run_pcrtool
    return run_pcrtool(*args, timeout=60)


def test_predict_pe_warns_about_unaligned_unsigned_images(tmp_path):
    """Signing pads to 8 bytes and hashes the padding: an unsigned file of another length has an
    Authenticode digest the signed file will not have."""
    from pcrtool.pe import authenticode_digest

    stub = open("/usr/lib/systemd/boot/efi/systemd-bootx64.efi", "rb").read()
    aligned = stub + b"\0" * (-len(stub) % 8)
    (tmp_path / "aligned.efi").write_bytes(aligned)
    (tmp_path / "odd.efi").write_bytes(aligned + b"\x01")
    p = _pcrtool("predict", "pe", tmp_path / "aligned.efi")
    assert p.returncode == 0 and "multiple of 8" not in p.stderr, p.stderr
    p = _pcrtool("predict", "pe", tmp_path / "odd.efi")
    assert p.returncode == 0, p.stderr
    assert "odd.efi" in p.stderr and "not a multiple of 8" in p.stderr
    # a signed image: its length is what firmware hashes; no warning. Its digest covers the
    # signing padding: = the unsigned file padded to 8, ≠ the odd-length unsigned file's
    from tests.support import need_tool

    sbsign, openssl = need_tool("sbsign"), need_tool("openssl")
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t", "-days", "1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    subprocess.run([sbsign, "--key", key, "--cert", crt, "--output", tmp_path / "signed.efi",
                    tmp_path / "odd.efi"], check=True, capture_output=True)
    signed = (tmp_path / "signed.efi").read_bytes()
    p = _pcrtool("predict", "pe", tmp_path / "signed.efi")
    assert p.returncode == 0 and "multiple of 8" not in p.stderr, p.stderr
    odd = aligned + b"\x01"
    assert authenticode_digest(signed, SHA) == authenticode_digest(odd + b"\0" * 7, SHA)
    assert authenticode_digest(signed, SHA) != authenticode_digest(odd, SHA)


def test_from_log_kernel_cmdline_replaces_and_stub_cmdline_is_followed(tmp_path):
    """`pcrtool predict from-log --uki`: the same rules as manifests (one load-options event)."""
    from helpers_uki import build_uki
    from pcrtool.predict.cmdline import linux_initrd_measurement, linux_load_options_measurement
    from pcrtool.predict.emulate import event_log_bytes

    build_uki(tmp_path, [(".linux", b"K"), (".cmdline", b"quiet rw"), (".initrd", b"I")])
    log = tmp_path / "ref.bin"
    log.write_bytes(event_log_bytes([linux_load_options_measurement("old", [SHA]),
                                     linux_initrd_measurement(b"old", [SHA])], [SHA], locality=0))

    def pcr9(*args):
        p = _pcrtool("--json=short", "predict", "from-log", log, "--uki", tmp_path / "uki.efi", *args)
        assert p.returncode == 0, p.stderr
        import json
        return bytes.fromhex(json.loads(p.stdout)["pcrs"]["sha256"]["9"]), p.stderr

    assert pcr9()[0] == pcr(opts("quiet rw"), INITRD)
    assert pcr9("--kernel-cmdline", "new")[0] == pcr(opts("new"), INITRD)
    value, err = pcr9("--stub-cmdline", "lo=1")
    assert value == pcr(opts("lo=1"), INITRD) and "Secure Boot state unknown" in err
