"""What an initramfs needs to run the clevis pin's decrypt, for initramfs-tools and dracut.

Debian's ``clevis-initramfs`` (and clevis' dracut modules) copy a fixed list of pins; pcrtool's
hook (``pcrtool clevis install --initramfs`` / ``--dracut``) calls ``python -m
pcrtool.clevis.initramfs files``, which prints one ``KIND<TAB>SOURCE<TAB>TARGET`` line per file
(``exec``: an ELF file, copied with its shared libraries; ``file``: anything else) and writes the
pin executable. Files keep their paths (shared objects' ``$ORIGIN`` run paths keep working):

- the base interpreter (a venv's ``bin/python`` is only a link to it) and the stdlib modules the
  pin really loads: a probe runs the interpreter as the pin does (``-I -S``, the same
  ``sys.path``) and imports the pin's decrypt path plus every stdlib module pcrtool's non-CLI code
  names, then reports ``sys.modules`` and the shared objects it mapped;
- pcrtool without ``cli/`` and ``data/``; the third-party packages the probe loaded (tpm2-pytss,
  cryptography, cffi's backend, …), each whole; never typer, click or rich;
- libtss2's TCTI modules, which libtss2-tctildr opens by name (``device``; ``swtpm`` for tests);
- the approvals files the pin reads at unlock time, when present.

The initramfs-tools hook strips debug sections from the ELF files it copied (dracut strips by
itself): an unstripped libpython is 23 MB.

The pin executable runs ``python -I -S`` (no site, no environment, no user site): nothing from the
host's ``PYTHONPATH`` or venv configuration is needed or read.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

PIN_TARGET = "/usr/bin/clevis-decrypt-pcrtool"
DEFAULT_TCTIS = ("device",)
# The pin's imports: what decrypt() and unseal() load (lazily) besides the pin module itself.
PIN_MODULES = ("pcrtool.clevis.pin", "pcrtool.errors", "pcrtool.fileio", "pcrtool.policy.approvals",
               "pcrtool.tpm", "pcrtool.tpm.enroll", "pcrtool.tpm.enrollment_file", "tpm2_pytss",
               "tpm2_pytss.ESAPI",
               "cryptography.exceptions", "cryptography.hazmat.primitives.ciphers.aead")
# Codecs Python may look up at run time (by name, so no import statement names them).
CODECS = ("encodings.aliases", "encodings.ascii", "encodings.latin_1", "encodings.utf_8", "encodings.utf_8_sig")
NEVER = ("typer", "click", "rich", "pygments", "markdown_it", "shellingham", "pkcs11", "pytest", "_pytest")
_PCRTOOL_SKIP = ("cli", "data", "__pycache__")


class PlanError(Exception):
    pass


def interpreter() -> Path:
    """The real interpreter behind this (venv) Python."""
    return Path(os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable))


def _package_root(name: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise PlanError(f"{name} is not importable by {sys.executable} (pip install 'pcrtool[tpm]')")
    origin = Path(spec.origin).resolve()
    return origin.parent.parent if spec.submodule_search_locations else origin.parent


def search_roots() -> list[str]:
    """The directories that hold pcrtool and the third-party packages the pin imports."""
    roots = []
    for name in ("pcrtool", "tpm2_pytss", "cryptography", "_cffi_backend"):
        root = str(_package_root(name))
        if root not in roots:
            roots.append(root)
    return roots


def stdlib_names_in_pcrtool(package: Path) -> list[str]:
    """Top-level stdlib modules that pcrtool's non-CLI code imports anywhere (also in functions)."""
    names = set()
    for path in package.rglob("*.py"):
        if _PCRTOOL_SKIP[0] in path.relative_to(package).parts[:1] or "__pycache__" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return sorted(n for n in names if n in sys.stdlib_module_names)


_PROBE = r"""
import json, sys
sys.path += ROOTS
import importlib
for name in MODULES:
    try:
        importlib.import_module(name)
    except ImportError as e:
        print(json.dumps({"missing": name, "error": str(e)}))
        raise SystemExit(3)
files = {n: getattr(m, "__file__", None) for n, m in list(sys.modules.items())}
libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if ".so" in line.rsplit("/", 1)[-1]})
print(json.dumps({"modules": files, "libs": libs, "path": sys.path}))
"""


def probe(python: Path, roots: list[str], modules: list[str]) -> dict:
    """Import ``modules`` in ``python -I -S`` with ``roots`` on the path (how the pin runs)."""
    code = _PROBE.replace("ROOTS", repr(roots)).replace("MODULES", repr(modules))
    p = subprocess.run([str(python), "-I", "-S", "-c", code], capture_output=True, text=True,
                       env={**os.environ, "TSS2_LOG": "all+none"})
    try:
        out = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise PlanError(f"the import probe failed (exit {p.returncode}): {p.stderr.strip()[-400:]}") from None
    if "missing" in out:
        raise PlanError(f"the pin cannot import {out['missing']}: {out['error']}")
    return out


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def _with_pyc(path: Path) -> list[Path]:
    """A module and its fresh byte-code (so the initramfs does not compile at every boot)."""
    import importlib.util

    out = [path]
    if path.suffix == ".py":
        pyc = Path(importlib.util.cache_from_source(str(path)))
        if pyc.is_file() and pyc.stat().st_mtime >= path.stat().st_mtime:
            out.append(pyc)
    return out


def _tree(top: Path) -> list[Path]:
    tag = sys.implementation.cache_tag
    files = []
    for p in sorted(top.rglob("*")):
        if not p.is_file() or p.suffix in (".pyi", ".c", ".h", ".typed"):
            continue
        if "__pycache__" in p.parts and tag not in p.name:
            continue
        files.append(p)
    return files


def plan(tctis: tuple[str, ...] = DEFAULT_TCTIS, approvals: tuple[str, ...] = ()) -> tuple[list, list[str], list[str]]:
    """(items, warnings, sys.path roots): items are (kind, source, target) for every file."""
    import pcrtool

    python = interpreter()
    roots = search_roots()
    package = Path(pcrtool.__file__).resolve().parent
    modules = [*PIN_MODULES, *CODECS, *stdlib_names_in_pcrtool(package)]
    found = probe(python, roots, modules)
    loaded = found["modules"]
    leaked = sorted(n for n in loaded if n.split(".")[0] in NEVER)
    if leaked:
        raise PlanError(f"the pin's import path reaches {leaked[0]} (it must not need the CLI's libraries)")
    stdlib = [Path(sysconfig.get_paths()["stdlib"]).resolve(), Path(sysconfig.get_paths()["platstdlib"]).resolve()]
    items, files, warnings = [("exec", str(python), str(python))], set(), []
    tops = set()
    bases = [(s, None) for s in stdlib] + [(Path(r), Path(r)) for r in roots]
    for name, file in loaded.items():
        if not file:
            continue  # built in or frozen without a file
        f = Path(file).resolve()
        if f.is_relative_to(package):
            continue  # pcrtool is added below (all of it but the CLI)
        matches = [(len(b.parts), b, root) for b, root in bases if f.is_relative_to(b)]
        if not matches:
            raise PlanError(f"{name} ({f}) is outside the stdlib and the pin's search path {roots}")
        _, base, root = max(matches, key=lambda m: m[0])
        if root is None:
            files.update(_with_pyc(f))
        else:
            tops.add(root / f.relative_to(root).parts[0])
    # Python finds its prefix by this landmark (os is frozen, its file is still looked for).
    files.update(_with_pyc(stdlib[0] / "os.py"))
    for top in sorted(tops):
        files.update(_tree(top) if top.is_dir() else [top])
        libs = top.parent / f"{top.name}.libs"  # wheels' vendored shared objects ($ORIGIN/../X.libs)
        if libs.is_dir():
            files.update(_tree(libs))
    for p in _tree(package):
        if p.relative_to(package).parts[0] not in _PCRTOOL_SKIP[:2]:
            files.add(p)
    base = Path(sys.base_prefix).resolve()
    for lib in found["libs"]:  # the interpreter's own libraries (libpython of a pyenv/custom build)
        if Path(lib).resolve().is_relative_to(base):
            files.add(Path(lib))
    tctildr = [lib for lib in found["libs"] if "libtss2-tctildr.so" in lib]
    if not tctildr:
        raise PlanError("tpm2-pytss did not load libtss2-tctildr (apt-get install libtss2-dev)")
    libdir = Path(tctildr[0]).parent
    for name in tctis:
        lib = libdir / f"libtss2-tcti-{name}.so.0"
        if not lib.exists():
            raise PlanError(f"TCTI {name!r}: {lib} does not exist")
        items.append(("exec", str(lib), str(lib)))
    for path in approvals:
        if Path(path).is_file():
            files.add(Path(path))
        else:
            warnings.append(f"no approvals at {path}: the pin cannot unlock there until a rebuild includes them")
    for f in sorted(files):
        items.append(("exec" if f.suffix == ".so" or ".so." in f.name or _is_elf(f) else "file", str(f), str(f)))
    return items, warnings, roots


def pin_script(python: Path, roots: list[str]) -> str:
    """The initramfs' clevis-decrypt-pcrtool: isolated (-I -S), its search path spelled out."""
    return (f"#!{python} -IS\n"
            "# clevis-decrypt-pcrtool, written by pcrtool's initramfs hook (pcrtool/clevis/initramfs.py)\n"
            "import sys\n"
            f"sys.path += {roots!r}\n"
            "from pcrtool.clevis.pin import console_decrypt\n"
            "console_decrypt()\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pcrtool.clevis.initramfs",
                                 description="List what the clevis pin needs in an initramfs.")
    ap.add_argument("command", choices=["files"])
    ap.add_argument("--pin-script", required=True, help="Write the pin executable here (copy it to "
                    f"{PIN_TARGET}, as the last line printed says).")
    ap.add_argument("--tcti", action="append", help="libtss2 TCTI module to add (default: device; "
                    "repeat for more, e.g. swtpm)")
    ap.add_argument("--approvals", action="append", default=[], help="Approvals file to add (when present).")
    args = ap.parse_args(argv)
    try:
        items, warnings, roots = plan(tuple(args.tcti or DEFAULT_TCTIS), tuple(args.approvals))
    except PlanError as e:
        print(f"pcrtool-clevis: {e}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"W: pcrtool-clevis: {w}", file=sys.stderr)
    fd = os.open(args.pin_script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o755)
    with os.fdopen(fd, "w") as f:
        f.write(pin_script(interpreter(), roots))
    os.chmod(args.pin_script, 0o755)
    for kind, src, dst in [*items, ("exec", args.pin_script, PIN_TARGET)]:
        if "\t" in src + dst or "\n" in src + dst:
            print(f"pcrtool-clevis: a path with a tab or newline cannot be listed: {src!r}", file=sys.stderr)
            return 1
        print(f"{kind}\t{src}\t{dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
