"""Import contracts: the pure core never imports an adapter or the CLI, adapters never import the
CLI, and only ``pcrtool.tpm`` imports tpm2-pytss (ARCHITECTURE.md "Layout").

The check reads every module of ``pcrtool/`` with ``ast`` (no import runs), so it also sees imports
inside functions: a lazy import upward breaks the layering just as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pcrtool"

# Layers, lowest first. A module belongs to the most specific prefix that names it.
CORE = "core"
ADAPTER = "adapter"
CLI = "cli"
LAYERS = {
    "pcrtool.__init__": CORE,          # version only
    "pcrtool.errors": CORE,
    "pcrtool.model": CORE,
    "pcrtool.tcg": CORE,
    "pcrtool.eventlog": CORE,
    "pcrtool.eventlog.parallel": ADAPTER,   # forks workers, maps files
    "pcrtool.predict": CORE,
    "pcrtool.pcrlock": CORE,
    "pcrtool.policy": CORE,
    "pcrtool.pe": CORE,
    "pcrtool.pe.files": ADAPTER,        # reads/maps PE files, forks the checksum child, writes outputs
    "pcrtool.verity": CORE,
    "pcrtool.gpt": CORE,
    "pcrtool.ddi": CORE,
    "pcrtool.ddi.files": ADAPTER,       # maps images, reads verity.d, runs fsck.erofs/unsquashfs
    "pcrtool.ddi.build": ADAPTER,       # stages a tree, runs mkfs.erofs
    "pcrtool.verity.io": ADAPTER,       # files, worker processes
    "pcrtool.sign": ADAPTER,            # load_signer(): picks a key backend
    "pcrtool.sign.api": CORE,
    "pcrtool.sign.authenticode_pkcs7": CORE,
    "pcrtool.sign.pkcs7": CORE,
    "pcrtool.sign.x509_der": CORE,
    "pcrtool.sign.keygen": CORE,
    "pcrtool.sign.request": CORE,       # decode / summary / limits / host_policy of signing requests
    "pcrtool.sign.keyfile": ADAPTER,
    "pcrtool.sign.pkcs11": ADAPTER,
    "pcrtool.sign.offline": ADAPTER,
    "pcrtool.tpm": ADAPTER,
    "pcrtool.fileio": ADAPTER,
    "pcrtool.system": ADAPTER,
    "pcrtool.tools": ADAPTER,
    "pcrtool.swtpm": ADAPTER,
    "pcrtool.render": ADAPTER,
    "pcrtool.clevis": ADAPTER,          # the clevis pin (no CLI imports) and its initramfs file list          # stdout/stderr, rich on a TTY
    "pcrtool.validate_systemd": ADAPTER,  # drives systemd's tools against swtpm
    "pcrtool.cli": CLI,
    "pcrtool.__main__": CLI,
}
RANK = {CORE: 0, ADAPTER: 1, CLI: 2}

# Outside-world modules the pure core must not import (bytes in, typed values out).
IMPURE = ("subprocess", "typer", "click", "rich", "tpm2_pytss", "pkcs11", "multiprocessing")
# Where the outside world may still be reached from a core module, with the reason.
IMPURE_ALLOWED = {
    ("pcrtool.eventlog.parse", "mmap"),   # maps a log file the caller opened (no path handling)
    ("pcrtool.pe.image", "mmap"),         # the same for PE images
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of a module; a new top-level module or package must be given one above."""
    if module == "pcrtool":
        module = "pcrtool.__init__"
    best = None
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return LAYERS[best] if best else None


def imports_of(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module) for every import statement, relative ones resolved."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pcrtool.sign import api` imports the submodule pcrtool.sign.api (and runs the
            # package's __init__, which is checked as a module of its own).
            subs = [f"{target}.{a.name}" for a in node.names if is_module(f"{target}.{a.name}")]
            if len(subs) < len(node.names):
                out.append((node.lineno, target))
            out.extend((node.lineno, sub) for sub in subs)
    return out


def is_module(name: str) -> bool:
    if not name.startswith("pcrtool."):
        return False
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def all_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def upward_imports(sources: dict[Path, str | None] | None = None) -> list[str]:
    """One line per import that breaks the layering: ``file:line: what``."""
    bad = []
    for path, text in (sources or dict.fromkeys(all_modules())).items():
        src = module_name(path)
        src_layer = layer_of(src)
        for line, target in imports_of(path, text):
            rel = f"{path.relative_to(PACKAGE.parent)}:{line}"
            if target.split(".")[0] == "tpm2_pytss" and not (src == "pcrtool.tpm" or src.startswith("pcrtool.tpm.")):
                bad.append(f"{rel}: {src} imports tpm2_pytss (only pcrtool.tpm may)")
            if src_layer == CORE and target.split(".")[0] in IMPURE + ("mmap",) \
                    and (src, target.split(".")[0]) not in IMPURE_ALLOWED:
                bad.append(f"{rel}: core module {src} imports {target}")
            if not target.startswith("pcrtool"):
                continue
            dst_layer = layer_of(target)
            if dst_layer and RANK[dst_layer] > RANK[src_layer]:
                bad.append(f"{rel}: {src_layer} module {src} imports {dst_layer} module {target}")
    return sorted(set(bad))


def test_every_module_has_a_layer():
    assert [module_name(p) for p in all_modules() if layer_of(module_name(p)) is None] == []


def test_imports_only_go_down():
    assert upward_imports() == []


def test_contract_sees_an_upward_import():
    """The check itself can fail: a core module importing the CLI lazily, or tpm2-pytss, is
    reported with file and line."""
    probe = PACKAGE / "eventlog" / "_contract_probe.py"   # never written: the text is passed in
    text = "def f():\n    from pcrtool.cli import common\n    import tpm2_pytss\n"
    assert upward_imports({probe: text}) == [
        "pcrtool/eventlog/_contract_probe.py:2: core module pcrtool.eventlog._contract_probe "
        "imports cli module pcrtool.cli.common",
        "pcrtool/eventlog/_contract_probe.py:3: core module pcrtool.eventlog._contract_probe imports tpm2_pytss",
        "pcrtool/eventlog/_contract_probe.py:3: pcrtool.eventlog._contract_probe imports tpm2_pytss "
        "(only pcrtool.tpm may)",
    ]


@pytest.mark.parametrize("module", ["pcrtool.eventlog", "pcrtool.policy", "pcrtool.predict",
                                    "pcrtool.verity", "pcrtool.pe", "pcrtool.tcg"])
def test_core_package_imports_nothing_impure_at_run_time(module):
    """The same rule, checked on the live import graph (catches imports built by name)."""
    import subprocess
    import sys
    core = [module_name(p) for p in all_modules()
            if layer_of(module_name(p)) == CORE and module_name(p).startswith(module)]
    code = (f"import sys, importlib\nfor name in {core!r}:\n"
            "    importlib.import_module(name)\n"
            f"print(','.join(sorted(x for x in {IMPURE!r} if x in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
