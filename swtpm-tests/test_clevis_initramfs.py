"""The clevis pin inside a real initramfs (issue 18), built twice: Debian's `mkinitramfs` with
`clevis-initramfs` and pcrtool's hook (`pcrtool clevis install --initramfs`), and `dracut` with
clevis' dracut modules (from the clevis-dracut package, which cannot be installed beside
initramfs-tools: `apt-get download`) and pcrtool's module (`--dracut`). Each image is unpacked and
entered with chroot; clevis' own unlock code from the image (initramfs-tools: `luks2_decrypt` of
scripts/local-top/clevis; dracut: `clevis_luks_unlock_device`, what clevis-luks-askpass runs) opens
a LUKS2 image file with the approved release booted into swtpm, and the pin refuses a revoked
release after `advance-floor` and a tampered PCR 11. Only swtpm's socket directory
and the disk image's directory are bound into the chroot: the interpreter, the stdlib, pcrtool,
tpm2-pytss, cryptography, libtss2 and the approvals come from the image.

mkinitramfs needs /boot/config-VERSION (it checks the kernel's decompressors): a private mount
namespace puts a two-line config on /boot for the made-up version, so nothing on the host changes;
no kernel modules are needed (a missing modules directory is only a warning)."""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tests.support import in_ci, need_tool
from tests.support.releases import two_uki_releases

from clevis_setup import pcrtool, prepare_host, run  # noqa: E402

VERSION = "0.0.0-pcrtool-clevis"
# clevis' initramfs-tools unlock of one LUKS2 device, taken from the image itself, with a file for
# the askpass FIFO; then cryptsetup (also from the image) checks the passphrase against keyslot 1.
# luks2_decrypt returns 1 even after writing the passphrase (its `return 0` runs in the subshell
# of a pipeline; clevis' loop does not depend on it): what it wrote is the verdict.
UNLOCK = {"initramfs-tools": """set -u
PATH=/sbin:/usr/sbin:/bin:/usr/bin
eval "$(sed -n '/^luks2_decrypt()/,/^}/p' /scripts/local-top/clevis)"
: > /run/pass
luks2_decrypt "$1" /run/pass || true  # its `return 0` leaves only the pipeline's subshell
[ -s /run/pass ] || { echo "luks2_decrypt wrote no passphrase" >&2; exit 7; }
cryptsetup open --test-passphrase -S 1 --key-file /run/pass "$1" || exit 8
""",
          # dracut (systemd): clevis-luks-askpass answers a password request with this function
          "dracut": """set -u
PATH=/sbin:/usr/sbin:/bin:/usr/bin
. /usr/bin/clevis-luks-common-functions
pt=$(clevis_luks_unlock_device "$1") && [ -n "$pt" ] || { echo "clevis_luks_unlock_device failed" >&2; exit 7; }
printf '%s' "$pt" > /run/pass
cryptsetup open --test-passphrase -S 1 --key-file /run/pass "$1" || exit 8
"""}
# The pin alone on keyslot 1's JWE, stderr visible (the unlock loops discard it).
DECRYPT = """set -u
PATH=/sbin:/usr/sbin:/bin:/usr/bin
. /usr/bin/clevis-luks-common-functions
clevis_luks_read_slot "$1" 1 | clevis decrypt > /run/out
"""

def need_root():
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("building and entering an initramfs needs root (mount namespaces, chroot)")
        pytest.skip("needs root")


def build_with_initramfs_tools(d, approvals, *, tcti_modules=("device", "swtpm"), extra=None, unpack=True):
    """mkinitramfs with Debian's hooks (cryptroot, clevis, busybox, …) plus pcrtool's, written by
    the CLI into a copy of /etc/initramfs-tools (``extra(conf)`` may add more); returns the
    unpacked tree (or the image when not ``unpack``)."""
    for tool in ("mkinitramfs", "unmkinitramfs"):
        need_tool(tool)
    for hook, package in (("clevis", "clevis-initramfs"), ("cryptroot", "cryptsetup-initramfs")):
        if not os.path.exists(f"/usr/share/initramfs-tools/hooks/{hook}"):
            (pytest.fail if in_ci() else pytest.skip)(f"{package} is not installed (run .ci/install-system-deps)")
    conf = d / "conf"
    shutil.copytree("/etc/initramfs-tools", conf)
    text = (conf / "initramfs.conf").read_text()
    (conf / "initramfs.conf").write_text(text.replace("MODULES=most", "MODULES=list") + "\nCOMPRESS=zstd\nCOMPRESSLEVEL=1\n")
    p = pcrtool("clevis", "install", "--dir", d / "bin2", "--initramfs", "--hooks-dir", conf / "hooks",
                *[a for m in tcti_modules for a in ("--tcti-module", m)], "-a", approvals)
    assert str(conf / "hooks" / "pcrtool-clevis") in p.stdout.decode()
    if extra:
        extra(conf)
    boot = d / "boot"
    boot.mkdir()
    (boot / f"config-{VERSION}").write_text("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n")
    script = f'mount --bind "$1" /boot && exec mkinitramfs -d "$2" -o "$3" {VERSION}'
    run("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", boot, conf, d / "initrd.img",
        env={**os.environ, "TMPDIR": str(d)})
    print(f"\ninitramfs-tools image with pcrtool's hook: {(d / 'initrd.img').stat().st_size} bytes (zstd -1)")
    if not unpack:
        return d / "initrd.img"
    root = d / "root"
    run("unmkinitramfs", d / "initrd.img", root)
    return root / "main" if (root / "main").is_dir() else root


def build_with_dracut(d, approvals):
    """dracut (no kernel) with its own modules, clevis' (from the clevis-dracut package) and
    pcrtool's module, written by the CLI, in a copy of dracut's module directory."""
    for tool in ("dracut", "apt-get", "dpkg-deb", "cpio"):
        need_tool(tool)
    if not os.path.exists("/usr/libexec/clevis-luks-askpass"):
        (pytest.fail if in_ci() else pytest.skip)("clevis-systemd is not installed (run .ci/install-system-deps)")
    base = d / "dracut"
    shutil.copytree("/usr/lib/dracut", base, symlinks=True)
    run("apt-get", "download", "clevis-dracut", cwd=d)
    deb = next(d.glob("clevis-dracut_*.deb"))
    run("dpkg-deb", "-x", deb, d / "deb")
    for mod in (d / "deb" / "usr/lib/dracut/modules.d").iterdir():
        shutil.copytree(mod, base / "modules.d" / mod.name)
    p = pcrtool("clevis", "install", "--dir", d / "bin2", "--dracut", "--dracut-dir", base / "modules.d",
                "--tcti-module", "device", "--tcti-module", "swtpm", "-a", approvals)
    assert str(base / "modules.d" / "60clevis-pin-pcrtool" / "module-setup.sh") in p.stdout.decode()
    out = d / "initrd.img"
    p = run("dracut", "--no-hostonly", "--no-kernel", "--no-compress", "-m", "bash clevis-pin-pcrtool", "--force",
            "--tmpdir", d, out, VERSION, env={**os.environ, "dracutbasedir": str(base)})
    assert b"Including module: clevis-pin-pcrtool" in p.stderr and b"Including module: clevis " in p.stderr
    print(f"\ndracut image with pcrtool's module: {out.stat().st_size} bytes (uncompressed)")
    root = d / "root"
    root.mkdir()
    with open(out, "rb") as f:
        run("cpio", "-idm", "--quiet", stdin=f, cwd=root)
    return root


def in_chroot(root, binds, script, *args):
    """Run ``script`` with bash inside ``root`` (/dev, /proc, a /run tmpfs and ``binds`` mounted at
    their own paths) in a private mount namespace: every mount goes away with the process."""
    mounts = ["set -e", f'mkdir -p "{root}/dev" "{root}/proc" "{root}/run"', f'mount --bind /dev "{root}/dev"', f'mount -t proc proc "{root}/proc"',
              f'mount -t tmpfs tmpfs "{root}/run"']
    for b in binds:
        (root / str(b).lstrip("/")).mkdir(parents=True, exist_ok=True)
        mounts.append(f'mount --bind "{b}" "{root}{b}"')
    mounts.append(f'exec chroot "{root}" /bin/bash -c "$0" bash "$@"')
    return run("unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(mounts), script, *args,
               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["initramfs-tools", "dracut"])
def test_clevis_unlock_inside_a_real_initramfs_allows_the_approved_release_and_denies_a_revoked_one(
        tmp_path, swtpm, builder):
    need_root()
    for tool in ("clevis", "clevis-luks-bind", "cryptsetup", "unshare", "chroot"):
        need_tool(tool)
    d, t = tmp_path, ("--tcti", swtpm.tcti)
    (d / "etc").mkdir()
    (d / "disk").mkdir()
    two_uki_releases(d)
    approvals, disk = d / "etc" / "approvals.pcrsig", d / "disk" / "disk.img"
    env, password = prepare_host(d, approvals, disk)

    def boot(version):
        swtpm.reboot()
        pcrtool("tpm", "boot-release", d / "p.json", f"fooos-{version}", *t)

    boot(2)
    cfg = {"public_key": (d / "pub.pem").read_text(), "floor": 1, "window": 4, "pcrs": [11],
           "approvals": str(approvals), "tcti": swtpm.tcti, "enrollment": str(d / "e.json"), "product": "fooos"}
    run("clevis", "luks", "bind", "-y", "-d", disk, "-k", password, "-s", "1", "pcrtool", json.dumps(cfg), env=env)
    root = (build_with_initramfs_tools if builder == "initramfs-tools" else build_with_dracut)(d, approvals)
    unlock = UNLOCK[builder]

    # What the hook put there, and what it did not.
    py = root / os.path.realpath(sys._base_executable).lstrip("/")
    assert (root / "usr/bin/clevis-decrypt-pcrtool").is_file() and py.is_file()
    assert (root / str(approvals).lstrip("/")).read_bytes() == approvals.read_bytes()
    for lib in ("libtss2-esys.so.0", "libtss2-mu.so.0", "libtss2-rc.so.0", "libtss2-tctildr.so.0",
                "libtss2-tcti-device.so.0", "libtss2-tcti-swtpm.so.0"):
        assert list(root.glob(f"usr/lib/*/{lib}")) or list(root.glob(f"usr/lib/{lib}")), lib
    names = {p.name for p in root.rglob("*")}
    assert {"pin.py", "enroll.py", "ESAPI.py", "aead.py"} <= names
    assert not {"typer", "rich", "click", "pkcs11"} & names
    assert not (root / str(d).lstrip("/") / "bin").exists()  # the host pin was not copied
    swtpm_dir = swtpm.socket_path.parent
    assert not (root / str(swtpm_dir).lstrip("/")).exists()
    binds = [swtpm_dir, disk.parent]

    # Allow: clevis' unlock of the approved release (svn 2) inside the image.
    start = time.monotonic()
    p = in_chroot(root, binds, unlock, disk)
    took = time.monotonic() - start
    if p.returncode != 0:  # show the pin's own message (the unlock loops discard it)
        q = in_chroot(root, binds, DECRYPT, disk)
        pytest.fail(f"{p.stderr.decode(errors='replace')}; clevis decrypt: exit {q.returncode}: "
                    f"{q.stderr.decode(errors='replace')[-3000:]}")
    print(f"unlock in the chroot: {took:.2f} s (clevis' unlock + cryptsetup --test-passphrase)")

    # Deny: after advance-floor to 2, svn 1 is revoked; the pin in the image says why, exit 4.
    pcrtool("tpm", "advance-floor", "-e", d / "e.json", "--to", "2", "-a", approvals, *t)
    boot(1)
    p = in_chroot(root, binds, unlock, disk)
    assert p.returncode == 7, p.stderr.decode(errors="replace")
    p = in_chroot(root, binds, DECRYPT, disk)
    assert p.returncode == 4, p.stderr.decode(errors="replace")
    assert b"release svn 1 is below the device floor 2" in p.stderr
    assert b"Traceback" not in p.stderr and b"internal error" not in p.stderr
    boot(2)  # the approved release still unlocks after the floor moved
    p = in_chroot(root, binds, unlock, disk)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    swtpm.reboot()  # a release nobody approved (tampered kernel): no key either
    pcrtool("tpm", "extend", "11", "--data", "rogue", *t)
    assert in_chroot(root, binds, unlock, disk).returncode == 7
    p = in_chroot(root, binds, DECRYPT, disk)
    assert p.returncode == 4 and b"Traceback" not in p.stderr, p.stderr.decode(errors="replace")


# --- the same image booted: Debian's kernel under qemu, swtpm as the guest's TPM ----------------

# Runs in the booted initramfs before anything mounts a root: clevis' luks2_decrypt on the LUKS2
# image the test put into the initramfs, the pin on /dev/tpmrm0 (the kernel's TPM driver; the JWE
# names no TCTI), then power off.
VM_SCRIPT = """#!/bin/sh
case "$1" in prereqs) exit 0 ;; esac
PATH=/sbin:/usr/sbin:/bin:/usr/bin
echo "@@PCRTOOL-VM tpm: $(ls /dev/tpmrm0)"
eval "$(sed -n '/^luks2_decrypt()/,/^}/p' /scripts/local-top/clevis)"
: > /run/pass
t0=$(cut -d' ' -f1 /proc/uptime)
luks2_decrypt /pcrtool-vm/disk.img /run/pass || true
echo "@@PCRTOOL-VM luks2_decrypt from $t0 to $(cut -d' ' -f1 /proc/uptime) s of uptime"
if [ -s /run/pass ]; then
    echo "@@PCRTOOL-VM unlocked $(sha256sum < /run/pass | cut -d' ' -f1)"
else
    bash -c '. /usr/bin/clevis-luks-common-functions
             clevis_luks_read_slot /pcrtool-vm/disk.img 1 | clevis decrypt > /dev/null'
    echo "@@PCRTOOL-VM denied, pin exit $?"
fi
poweroff -f
"""
VM_HOOK = """#!/bin/sh
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
mkdir -p "$DESTDIR/pcrtool-vm"
cp DISK "$DESTDIR/pcrtool-vm/disk.img"
"""


def boot_vm(d, vmlinuz, initrd, state, name):
    """Boot vmlinuz + initrd (SeaBIOS, no firmware measurements into PCR 11) with a swtpm on
    ``state``; the serial console's text."""
    run_dir = d / name
    run_dir.mkdir()
    sock, serial = run_dir / "swtpm.sock", run_dir / "serial.log"
    swtpm = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}",
                              "--ctrl", f"type=unixio,path={sock}"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        p = subprocess.run(["nice", "-n", "10", "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "1024",
                            "-smp", "1", "-nic", "none", "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
                            "-kernel", vmlinuz, "-initrd", initrd,
                            "-append", "console=ttyS0 panic=-1 loglevel=4",
                            "-chardev", f"socket,id=chrtpm,path={sock}",
                            "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-tis,tpmdev=tpm0"],
                           capture_output=True, timeout=600)
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    finally:
        if swtpm.poll() is None:
            swtpm.terminate()
        swtpm.wait(10)
    return serial.read_text(errors="replace")


@pytest.mark.e2e
@pytest.mark.slow
def test_clevis_unlock_in_a_booted_initramfs_on_the_kernels_tpm_device(tmp_path):
    """Stretch of the chroot proof: the image boots (Debian's kernel, qemu TCG) and clevis' unlock
    in it reaches the TPM through the kernel (device:/dev/tpmrm0); the release of PCR 11 as the
    boot leaves it (nothing extends PCR 11 here) is approved with svn 1: it unlocks, and after
    `advance-floor --to 2` it is refused."""
    need_root()
    for tool in ("clevis", "cryptsetup", "swtpm", "qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb"):
        need_tool(tool)
    from pcrtool.swtpm import Swtpm

    d = tmp_path
    (d / "etc").mkdir()
    state = d / "tpmstate"
    releases = {"releases": [{"name": "vm", "version": str(svn), "svn": svn, "allowed": True, "pcrs": [11],
                              "banks": ["sha256"], "phases": [{"phase": "enter-initrd",
                                                              "values": {"sha256": {"11": value}}}]}
                             for svn, value in ((1, "00" * 32), (2, "11" * 32))],
                "format": "pcrtool-predictions/1"}
    (d / "p.json").write_text(json.dumps(releases))
    approvals, disk = d / "etc" / "approvals.pcrsig", d / "disk.img"
    env0, password = prepare_host(d, approvals, disk, product=None)
    with Swtpm.start(state) as sw:  # PCR 11 after reset: the svn-1 release
        env = {**env0, "PCRTOOL_TCTI": sw.tcti}
        cfg = {"public_key": str(d / "pub.pem"), "floor": 1, "window": 4, "pcrs": [11], "approvals": str(approvals),
               "enrollment": str(d / "e.json")}
        run("clevis", "luks", "bind", "-y", "-d", disk, "-k", password, "-s", "1", "pcrtool", json.dumps(cfg),
            env=env)
        expected = hashlib.sha256(run("clevis", "luks", "pass", "-d", disk, "-s", "1", env=env).stdout).hexdigest()

    def extra(conf):
        (conf / "scripts" / "init-premount").mkdir(parents=True, exist_ok=True)
        (conf / "scripts" / "init-premount" / "pcrtool-vm").write_text(VM_SCRIPT)
        (conf / "scripts" / "init-premount" / "pcrtool-vm").chmod(0o755)
        (conf / "hooks" / "pcrtool-vm").write_text(VM_HOOK.replace("DISK", shlex.quote(str(disk))))
        (conf / "hooks" / "pcrtool-vm").chmod(0o755)

    initrd = build_with_initramfs_tools(d, approvals, tcti_modules=("device",), extra=extra, unpack=False)
    kpkg = run("apt-cache", "depends", "linux-image-amd64").stdout.decode()
    kpkg = next(line.split()[-1] for line in kpkg.splitlines() if "Depends: linux-image-" in line)
    run("apt-get", "download", kpkg, cwd=d)
    run("dpkg-deb", "-x", next(d.glob(f"{kpkg}_*.deb")), d / "kroot")
    vmlinuz = next((d / "kroot" / "boot").glob("vmlinuz-*"))

    start = time.monotonic()
    text = boot_vm(d, vmlinuz, initrd, state, "allow")
    print(f"allow boot: {time.monotonic() - start:.1f} s;", *[x for x in text.splitlines() if "@@" in x], sep="\n")
    assert "@@PCRTOOL-VM tpm: /dev/tpmrm0" in text, text[-3000:]
    assert f"@@PCRTOOL-VM unlocked {expected}" in text, text[-3000:]
    with Swtpm.start(state) as sw:  # svn 1 is the booted one: --force
        pcrtool("tpm", "advance-floor", "-e", d / "e.json", "--to", "2", "--force", "--tcti", sw.tcti)
    text = boot_vm(d, vmlinuz, initrd, state, "deny")
    assert "@@PCRTOOL-VM denied, pin exit 4" in text, text[-3000:]
    assert "release svn 1 is below the device floor 2" in text
    assert "Traceback" not in text
