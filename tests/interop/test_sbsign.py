"""PE signing against systemd-sbsign (newest systemd, sid chroot): byte-identical output for
direct signing (8-aligned and unaligned inputs, a second signature) and the offline flow in both
directions without a shared SOURCE_DATE_EPOCH."""

from __future__ import annotations

import struct
from pathlib import Path


from helpers_interop import run_pcrtool
from tests.support import need_tool

BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
EPOCH = "1700000000"


def _inputs(d: Path) -> dict[str, Path]:
    for p in (BOOT, STUB):
        if not p.is_file():
            need_tool(str(p))  # skips, or fails under CI=true
    out = {}
    for name, data in (("boot", BOOT.read_bytes()), ("stub", STUB.read_bytes())):
        out[f"{name}-unaligned{len(data) % 8}"] = data
        out[f"{name}-aligned"] = data + bytes(-len(data) % 8)
    assert any(len(v) % 8 for v in out.values()) and any(len(v) % 8 == 0 for v in out.values())
    paths = {}
    for name, data in out.items():
        paths[name] = d / f"{name}.efi"
        paths[name].write_bytes(data)
    return paths


def _sbsign(sid, *args, env=None):
    return sid.run("systemd-sbsign", "sign", *args, env=env)


def _dwlength(path: Path, index: int = -1) -> tuple[int, int]:
    """(dwLength of the last WIN_CERTIFICATE, data-directory 4 size), read with struct."""
    data = path.read_bytes()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    opt = pe + 24
    dd = opt + (112 if struct.unpack_from("<H", data, opt)[0] == 0x20B else 96)
    off, size = struct.unpack_from("<II", data, dd + 32)
    entries = []
    while off < len(data):
        length = struct.unpack_from("<I", data, off)[0]
        entries.append(length)
        off += (length + 7) & ~7
    return entries[index], size


def test_direct_signing_is_byte_identical_to_systemd_sbsign(sid_systemd, tmp_path, keypair, keypair2):
    key, crt = keypair
    key2, crt2 = keypair2
    for name, src in _inputs(tmp_path).items():
        theirs, ours = tmp_path / f"{name}.sd.efi", tmp_path / f"{name}.pt.efi"
        _sbsign(sid_systemd, f"--certificate={crt}", f"--private-key={key}", f"--output={theirs}", src,
                env={"SOURCE_DATE_EPOCH": EPOCH})
        run_pcrtool("pe", "sign", src, "--key", key, "--cert", crt, "-o", ours, env={"SOURCE_DATE_EPOCH": EPOCH},
                    check=True)
        assert ours.read_bytes() == theirs.read_bytes(), f"{name}: differs from systemd-sbsign {sid_systemd.version}"
        # a second signature, by another key, on top of each tool's own output
        theirs2, ours2 = tmp_path / f"{name}.sd2.efi", tmp_path / f"{name}.pt2.efi"
        _sbsign(sid_systemd, f"--certificate={crt2}", f"--private-key={key2}", f"--output={theirs2}", theirs,
                env={"SOURCE_DATE_EPOCH": "1700000001"})
        run_pcrtool("pe", "sign", ours, "--key", key2, "--cert", crt2, "-o", ours2,
                    env={"SOURCE_DATE_EPOCH": "1700000001"}, check=True)
        assert ours2.read_bytes() == theirs2.read_bytes(), f"{name}: second signature differs"
        verify = run_pcrtool("pe", "verify", ours2, "--cert", crt, "--cert", crt2)
        assert verify.returncode == 0, verify.stderr


def test_dwlength_is_the_unpadded_pkcs7_length(tmp_path, keypair, keypair2):
    """dwLength = 8 + the DER length of the PKCS#7 (not rounded up, as systemd < 262 did); the
    entry itself and the data-directory size stay 8-aligned."""
    src = _inputs(tmp_path)["stub-unaligned1"]
    for i, (key, crt) in enumerate((keypair, keypair2)):
        out = tmp_path / f"o{i}.efi"
        run_pcrtool("pe", "sign", src, "--key", key, "--cert", crt, "-o", out, check=True)
        data = out.read_bytes()
        length, table = _dwlength(out)
        start = len(data) - table
        assert data[start + 8:start + 10] == b"\x30\x82"
        der_len = 4 + struct.unpack_from(">H", data, start + 10)[0]
        assert length == 8 + der_len and table == (length + 7) & ~7


def test_systemd_prepares_pcrtool_attaches(sid_systemd, tmp_path, keypair):
    """systemd-sbsign --prepare-offline-signing (signing time = now, no SOURCE_DATE_EPOCH) →
    openssl → pcrtool pe attach --signed-data: the same bytes as systemd's own attach."""
    key, crt = keypair
    for name, src in _inputs(tmp_path).items():
        blob, sig = tmp_path / f"{name}.sattrs", tmp_path / f"{name}.sattrs.sig"
        _sbsign(sid_systemd, f"--certificate={crt}", "--prepare-offline-signing", f"--output={blob}", src)
        need_tool("openssl")
        import subprocess
        subprocess.run(["openssl", "dgst", "-sha256", "-sign", key, "-out", sig, blob], check=True)
        theirs, ours = tmp_path / f"{name}.sd.efi", tmp_path / f"{name}.pt.efi"
        _sbsign(sid_systemd, f"--certificate={crt}", f"--signed-data={blob}", f"--signed-data-signature={sig}",
                f"--output={theirs}", src)
        run_pcrtool("pe", "attach", src, "--signed-data", blob, "--signed-data-signature", sig, "--cert", crt,
                    "-o", ours, env={"SOURCE_DATE_EPOCH": "86400"}, check=True)
        assert ours.read_bytes() == theirs.read_bytes(), name


def test_pcrtool_prepares_systemd_attaches(sid_systemd, tmp_path, keypair):
    key, crt = keypair
    import subprocess
    for name, src in _inputs(tmp_path).items():
        req = tmp_path / f"{name}.sign-request.json"
        run_pcrtool("pe", "prepare", src, "--cert", crt, "--request", req, env={"SOURCE_DATE_EPOCH": EPOCH},
                    check=True)
        blob, sig = tmp_path / f"{name}.sattrs.der", tmp_path / f"{name}.sattrs.der.sig"
        subprocess.run([need_tool("openssl"), "dgst", "-sha256", "-sign", key, "-out", sig, blob], check=True)
        theirs, ours = tmp_path / f"{name}.sd.efi", tmp_path / f"{name}.pt.efi"
        _sbsign(sid_systemd, f"--certificate={crt}", f"--signed-data={blob}", f"--signed-data-signature={sig}",
                f"--output={theirs}", src)  # no SOURCE_DATE_EPOCH in the chroot
        run_pcrtool("pe", "attach", src, "--request", req, "-o", ours, check=True)
        assert ours.read_bytes() == theirs.read_bytes(), name


def test_attach_refuses_systemds_blob_for_another_image_or_key(sid_systemd, tmp_path, keypair, keypair2):
    key, crt = keypair
    inputs = _inputs(tmp_path)
    blob, sig = tmp_path / "b.sattrs", tmp_path / "b.sig"
    _sbsign(sid_systemd, f"--certificate={crt}", "--prepare-offline-signing", f"--output={blob}",
            inputs["stub-aligned"])
    import subprocess
    subprocess.run([need_tool("openssl"), "dgst", "-sha256", "-sign", key, "-out", sig, blob], check=True)
    out = tmp_path / "never.efi"
    r = run_pcrtool("pe", "attach", inputs["boot-aligned"], "--signed-data", blob, "--signature", sig, "--cert", crt,
                    "-o", out)
    assert r.returncode == 3 and b"messageDigest" in r.stderr and not out.exists()
    r = run_pcrtool("pe", "attach", inputs["stub-aligned"], "--signed-data", blob, "--signature", sig,
                    "--cert", keypair2[1], "-o", out)
    assert r.returncode == 3 and not out.exists(), r.stderr
    r = run_pcrtool("pe", "attach", inputs["stub-aligned"], "--signed-data", blob, "-o", out)
    assert r.returncode == 2 and not out.exists()
    # the unaligned stub and its aligned twin have the same Authenticode digest: the blob fits both
    r = run_pcrtool("pe", "attach", inputs["stub-unaligned1"], "--signed-data", blob, "--signature", sig,
                    "--cert", crt, "-o", out)
    assert r.returncode == 0, r.stderr
