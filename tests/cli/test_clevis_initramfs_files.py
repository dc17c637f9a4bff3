"""What pcrtool's initramfs hook copies for the clevis pin (issue 18): `python -m
pcrtool.clevis.initramfs files` and the hook/dracut module `pcrtool clevis install` writes. The
image itself is built, entered and unlocked in swtpm-tests/test_clevis_initramfs.py."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from pcrtool.clevis import initramfs

ROOT = Path(__file__).resolve().parents[2]


def files(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pcrtool.clevis.initramfs", "files", "--pin-script",
                           tmp_path / "pin", *args], capture_output=True, text=True, timeout=120)


def test_the_list_holds_the_pin_and_what_it_loads_and_nothing_of_the_cli(tmp_path):
    p = files(tmp_path, "--tcti", "device", "--tcti", "swtpm")
    assert p.returncode == 0, p.stderr
    rows = [line.split("\t") for line in p.stdout.splitlines()]
    assert all(len(r) == 3 and r[0] in ("exec", "file") for r in rows)
    python = os.path.realpath(sys._base_executable)
    assert rows[0] == ["exec", python, python]
    assert rows[-1] == ["exec", str(tmp_path / "pin"), "/usr/bin/clevis-decrypt-pcrtool"]
    paths = [r[1] for r in rows]
    pkg = ROOT / "pcrtool"
    for f in ("clevis/pin.py", "tpm/enroll.py", "policy/approvals.py", "errors.py"):
        assert str(pkg / f) in paths
    assert not [x for x in paths if x.startswith(str(pkg / "cli"))]
    parts = {part for x in paths for part in Path(x).parts}
    assert {"tpm2_pytss", "cryptography"} <= parts
    assert not {"typer", "rich", "click", "pygments", "pkcs11", "pytest"} & parts
    assert any(x.endswith("/libtss2-tcti-device.so.0") for x in paths)
    assert any(x.endswith("/libtss2-tcti-swtpm.so.0") for x in paths)
    # the stdlib is pruned to what the pin loads
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    py = [x for x in paths if x.endswith(".py") and Path(x).is_relative_to(stdlib)]
    assert str(stdlib / "os.py") in py and str(stdlib / "json" / "decoder.py") in py
    assert not [x for x in py if "/unittest/" in x or "/asyncio/" in x or "/tkinter/" in x or "/xml/" in x]
    assert len(py) < len(list(stdlib.rglob("*.py"))) / 10
    # ELF files go through copy_exec (their libraries come along), the rest through copy_file
    for kind, src, _ in rows[:-1]:
        with open(src, "rb") as f:
            assert (f.read(4) == b"\x7fELF") == (kind == "exec"), src


def test_the_pin_script_is_isolated_and_runs(tmp_path):
    p = files(tmp_path)
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "pin").read_text()
    assert text.startswith(f"#!{os.path.realpath(sys._base_executable)} -IS\n")
    assert os.access(tmp_path / "pin", os.X_OK)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent"}  # ignored (-I)
    q = subprocess.run([tmp_path / "pin"], input=b"not a jwe", capture_output=True, env=env, timeout=60)
    assert q.returncode == 1 and q.stderr == b"clevis-pcrtool: not a compact JWE (1 parts, expected 5)\n"
    # its decrypt path (the pin module, the unlock, tpm2-pytss, AES-GCM) loads no CLI library
    found = initramfs.probe(Path(os.path.realpath(sys._base_executable)), initramfs.search_roots(),
                            list(initramfs.PIN_MODULES))
    loaded = {name.split(".")[0] for name in found["modules"]}
    assert {"pcrtool", "tpm2_pytss", "cryptography"} <= loaded
    assert not {"typer", "click", "rich", "pygments"} & loaded
    assert "pcrtool.cli" not in found["modules"] and "pcrtool.render" not in found["modules"]


def test_a_missing_tcti_fails_and_missing_approvals_warn(tmp_path):
    p = files(tmp_path, "--tcti", "nosuch")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("pcrtool-clevis: TCTI 'nosuch': ") and "libtss2-tcti-nosuch.so.0 does not exist" in p.stderr
    p = files(tmp_path, "--approvals", str(tmp_path / "none.pcrsig"))
    assert p.returncode == 0
    assert f"W: pcrtool-clevis: no approvals at {tmp_path / 'none.pcrsig'}" in p.stderr
    assert str(tmp_path / "none.pcrsig") not in p.stdout


def test_install_writes_the_hook_and_the_dracut_module(tmp_path):
    cmd = [sys.executable, "-m", "pcrtool", "clevis", "install", "--dir", tmp_path / "bin", "--initramfs",
           "--hooks-dir", tmp_path / "hooks", "--dracut", "--dracut-dir", tmp_path / "dracut",
           "--tcti-module", "swtpm", "-a", "/etc/x y.pcrsig"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    hook = tmp_path / "hooks" / "pcrtool-clevis"
    module = tmp_path / "dracut" / "60clevis-pin-pcrtool" / "module-setup.sh"
    assert p.stdout.split() == [str(tmp_path / "bin" / "clevis-encrypt-pcrtool"),
                                str(tmp_path / "bin" / "clevis-decrypt-pcrtool"), str(hook), str(module)]
    for path, shell in ((hook, "sh"), (module, "bash")):
        text = path.read_text()
        assert "@" not in text.replace("$@", "")  # every placeholder filled
        assert f"{sys.executable} -m pcrtool.clevis.initramfs files" in text
        assert "--tcti swtpm --approvals '/etc/x y.pcrsig'" in text
        assert os.access(path, os.X_OK)
        assert subprocess.run([shell, "-n", path]).returncode == 0
    assert 'PREREQ="clevis"' in hook.read_text() and "echo clevis" in module.read_text()
    q = subprocess.run([hook, "prereqs"], capture_output=True, text=True)
    assert q.returncode == 0 and q.stdout == "clevis\n"
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "exists already" in p.stderr  # never replaced without --force


def test_the_hook_fails_the_build_when_the_list_fails(tmp_path):
    """A hook that cannot list the pin's files stops mkinitramfs (exit 1, one line) instead of
    leaving an image whose unlock fails at boot."""
    from tests.support import need_tool

    need_tool("mkinitramfs")  # the hook sources initramfs-tools' hook-functions
    p = subprocess.run([sys.executable, "-m", "pcrtool", "clevis", "install", "--dir", tmp_path / "bin",
                        "--initramfs", "--hooks-dir", tmp_path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    hook = tmp_path / "pcrtool-clevis"
    text = hook.read_text()
    generator = f"{sys.executable} -m pcrtool.clevis.initramfs"
    assert generator in text
    hook.write_text(text.replace(generator, f"{sys.executable} -c 'import sys; sys.exit(1)'"))
    (tmp_path / "dest").mkdir()
    q = subprocess.run(["sh", hook], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "DESTDIR": str(tmp_path / "dest"), "verbose": "n"})
    assert q.returncode == 1 and q.stderr == "E: pcrtool-clevis: cannot list the pin's files (see above)\n"
    assert list((tmp_path / "dest").iterdir()) == []
