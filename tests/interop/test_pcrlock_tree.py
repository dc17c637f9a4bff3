"""The files of a pcrtool pcrlock.d tree written from a full release manifest (boot chain with
systemd-boot and the UKI, Secure Boot variables, kernel command line and initrd) are, component by
component, the bytes `systemd-pcrlock lock-*` (newest systemd) writes for the same inputs — and
where pcrtool deliberately differs (an unsigned, unaligned image in PCR 4), it carries the digest
firmware measures."""

from __future__ import annotations

import uuid
from pathlib import Path

from helpers_interop import efivars_dir, make_keypair, run_pcrtool, with_efivars
from tests.support import need_tool

ROOT = Path(__file__).resolve().parents[2]
BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")


def _systemd(sid, tmp, verb, *args, wrap=None):
    out = tmp / f"{verb}.sd.pcrlock"
    out.unlink(missing_ok=True)
    argv = ["systemd-pcrlock", verb, *map(str, args), f"--pcrlock={out}"]
    sid.run(*(wrap(*argv) if wrap else argv))
    return out.read_bytes()


def test_tree_components_equal_systemd_lock_verbs(sid_systemd, tmp_path):
    if not BOOT.is_file():
        need_tool(str(BOOT))
    from tests.predict.helpers_uki import build_uki

    d = tmp_path / "rel"
    d.mkdir()
    key, crt = make_keypair(tmp_path, "tree")
    # systemd-boot signed (8-aligned: systemd's lock-pe and firmware agree), the UKI unsigned but
    # padded to 8 bytes (ditto), its kernel (the stub LoadImage()s it) as built
    (d / "boot-unsigned.efi").write_bytes(BOOT.read_bytes())
    run_pcrtool("pe", "sign", d / "boot-unsigned.efi", "--key", key, "--cert", crt, "-o", d / "systemd-bootx64.efi",
                check=True)
    uki = build_uki(d, [(".linux", BOOT.read_bytes()), (".osrel", b"ID=x\nVERSION_ID=1\n"), (".cmdline", b"rw"),
                        (".initrd", b"initrd" * 100)], drop=())
    (d / "uki.efi").write_bytes(uki + bytes(-len(uki) % 8))
    owner = uuid.UUID("a9b1e2f0-5c2d-4e6b-8f3a-70637274c001")
    from pcrtool.predict.secureboot import certificate_der, x509_signature_list
    esl = x509_signature_list(certificate_der((ROOT / "eventlogs" / "ovmf-sb-own" / "db.crt").read_bytes()), owner)
    (d / "db.esl").write_bytes(esl)
    (d / "initrd.img").write_bytes(b"\x1f\x8b" + bytes(range(256)) * 40)
    (d / "release.toml").write_text('''name = "fooos"
version = "2.1"
svn = 3
[uki]
path = "uki.efi"
stub = 262
[boot]
chain = ["systemd-bootx64.efi", "uki", "uki.linux"]
[secureboot]
SecureBoot = 1
PK = "db.esl"
KEK = "db.esl"
db = "db.esl"
[cmdline]
kernel = "console=ttyS0 root=/dev/vda2 rw"
initrd = "initrd.img"
''')
    tree = tmp_path / "pcrlock.d"
    run_pcrtool("pcrlock", "tree", d / "release.toml", "-o", tree, check=True)
    comps = sorted(p.name for p in tree.iterdir())
    assert comps == ["240-secureboot-policy.pcrlock.d", "630-boot-0.pcrlock.d", "640-uki.pcrlock.d",
                     "650-uki-linux.pcrlock.d", "710-kernel-cmdline.pcrlock.d", "720-kernel-initrd.pcrlock.d"]

    def ours(cid):
        return (tree / f"{cid}.pcrlock.d" / "fooos-2.1.pcrlock").read_bytes()

    assert ours("630-boot-0") == _systemd(sid_systemd, tmp_path, "lock-pe", d / "systemd-bootx64.efi")
    # lock-uki assumes its own (262) stub's section list; the tree follows the stub the UKI carries
    # (its .sdmagic, here Debian 12's 252) unless the manifest names one: stub = 262 above
    assert ours("640-uki") == _systemd(sid_systemd, tmp_path, "lock-uki", d / "uki.efi")
    (tmp_path / "cmdline").write_text("console=ttyS0 root=/dev/vda2 rw")
    assert ours("710-kernel-cmdline") == _systemd(sid_systemd, tmp_path, "lock-kernel-cmdline", tmp_path / "cmdline")
    assert ours("720-kernel-initrd") == _systemd(sid_systemd, tmp_path, "lock-kernel-initrd", d / "initrd.img")
    ev = efivars_dir(tmp_path / "efivars", {"SecureBoot": b"\x01", "PK": esl, "KEK": esl, "db": esl})
    assert ours("240-secureboot-policy") == _systemd(sid_systemd, tmp_path, "lock-secureboot-policy",
                                                     wrap=lambda *a: with_efivars(ev, *a))
    # the UKI's kernel: an unsigned image whose length is not a multiple of 8 — systemd's lock-pe
    # pads it virtually, firmware (EDK2) hashes it as loaded; the tree carries what firmware measures
    from pcrtool.pcrlock import PcrlockFile
    from pcrtool.predict.uki import uki_sections
    linux = next(s.loaded for s in uki_sections((d / "uki.efi").read_bytes()) if s.name == ".linux")
    assert len(linux) % 8
    (tmp_path / "linux.efi").write_bytes(linux)
    theirs = PcrlockFile.parse(_systemd(sid_systemd, tmp_path, "lock-pe", tmp_path / "linux.efi"))
    mine = PcrlockFile.parse(ours("650-uki-linux"))
    assert mine != theirs
    padded = tmp_path / "linux-padded.efi"
    padded.write_bytes(linux + bytes(-len(linux) % 8))
    from pcrtool.model import HashAlg
    assert theirs.records[0].digest(HashAlg.SHA256) == PcrlockFile.parse(
        _systemd(sid_systemd, tmp_path, "lock-pe", padded)).records[0].digest(HashAlg.SHA256)
    import json
    edk2 = json.loads(run_pcrtool("--json=short", "pe", "hash", tmp_path / "linux.efi", check=True).stdout)
    assert mine.records[0].digest(HashAlg.SHA256).hex() == edk2["as_loaded"] != edk2["for_signing"]
    assert theirs.records[0].digest(HashAlg.SHA256).hex() == edk2["for_signing"]


def test_tree_firmware_components_from_a_reference_log(tmp_path):
    """--reference-log adds the log's firmware and authority components, the same bytes as the
    lock-* commands (each proven equal to systemd's in test_pcrlock_lock.py)."""
    log = ROOT / "eventlogs" / "ovmf-sb-own" / "eventlog.bin"
    d = tmp_path / "rel"
    d.mkdir()
    (d / "linux").write_bytes(b"kernel")
    (d / "release.toml").write_text('name = "fooos"\nversion = "1"\nsvn = 1\n[uki.sections]\nlinux = "linux"\n')
    tree = tmp_path / "pcrlock.d"
    run_pcrtool("pcrlock", "tree", d / "release.toml", "--reference-log", log, "-o", tree, check=True)
    run_pcrtool("pcrlock", "lock-firmware-code", log, "--early", tmp_path / "ce", "--late", tmp_path / "cl", check=True)
    run_pcrtool("pcrlock", "lock-firmware-config", log, "--early", tmp_path / "fe", "--late", tmp_path / "fl", check=True)
    run_pcrtool("pcrlock", "lock-secureboot-authority", log, "-o", tmp_path / "au", check=True)
    want = {"250-firmware-code-early": "ce", "250-firmware-config-early": "fe", "620-secureboot-authority": "au"}
    for late, f in (("550-firmware-code-late", "cl"), ("550-firmware-config-late", "fl")):
        if b'"pcr"' in (tmp_path / f).read_bytes():
            want[late] = f
    for cid, f in want.items():
        assert (tree / f"{cid}.pcrlock.d" / "fooos-1.pcrlock").read_bytes() == (tmp_path / f).read_bytes(), cid
    assert {p.name[:-len(".pcrlock.d")] for p in tree.iterdir()} == set(want) | {"650-uki"}
