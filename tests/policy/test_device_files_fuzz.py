"""Device-side files under fuzzing: whatever an enrollment or approvals file contains, the CLI
answers with a one-line format error (exit 1) or works; never "internal error", never a traceback,
with bounded memory (tracemalloc peak per run) and size limits checked before parsing.

The starting points are real files: an enrollment of each mode and an approvals file made by the
CLI on swtpm once per module. Each example mutates one of them (a field replaced by any JSON
value, a field removed, an unknown key, a truncation, arbitrary bytes) and runs, in process,
``pcrtool tpm unlock`` against a TCTI that does not exist (a file that parses ends in exit 5, TPM
unavailable) and ``pcrtool policy show`` for approvals (exit 0 when it parses).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from helpers_policy import need_module, need_tool, pem_private, pem_public, releases_json, rsa_key
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.cli import run_pcrtool

NO_TPM = "swtpm:path=/nonexistent/pcrtool-fuzz/tpm.sock"
MEMORY_BOUND = 64 << 20   # bytes allocated at peak by one CLI run on a file of at most a few KiB


def _cli(*args) -> tuple[int, str, str, int]:
    """``pcrtool ARGS`` in this process: (exit code, stdout, stderr, tracemalloc peak)."""
    from pcrtool.cli import main

    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return code, out.getvalue(), err.getvalue(), peak


@pytest.fixture(scope="module")
def real_files():
    """An approvals file and a signed and an allowlist enrollment, as the CLI writes them."""
    need_module("tpm2_pytss")
    need_tool("swtpm")
    from pcrtool.swtpm import Swtpm

    d = Path(tempfile.mkdtemp(prefix="pcrtool-fuzz-"))
    key = rsa_key()
    (d / "k.pem").write_bytes(pem_private(key))
    (d / "pub.pem").write_bytes(pem_public(key))
    (d / "rel.json").write_text(releases_json(svns=(1, 2)))

    def run(*args):
        run_pcrtool(*args, check=True)

    run("policy", "approve", "-r", d / "rel.json", "-k", d / "k.pem", "-o", d / "a.pcrsig")
    with Swtpm.start() as sw:
        run("tpm", "enroll", "--tcti", sw.tcti, "-k", d / "pub.pem", "--floor", 1, "-o", d / "signed.json")
        run("tpm", "enroll", "--tcti", sw.tcti, "--allowlist", d / "rel.json", "-o", d / "allow.json")
    files = {name: (d / name).read_text() for name in ("a.pcrsig", "signed.json", "allow.json")}
    yield d, files
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def _check(code: int, out: str, err: str, peak: int, ok_codes: tuple[int, ...]) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert peak < MEMORY_BOUND, f"{peak} bytes at peak"
    if code == 1:
        lines = [x for x in err.strip().splitlines() if not x.startswith("pcrtool: warning:")]
        assert len(lines) == 1 and lines[0].startswith("pcrtool: error:"), err
        assert out == ""
    else:
        assert code in ok_codes, (code, err)


def _run_enrollment(d: Path, text: str | bytes) -> None:
    path = d / "fuzzed-enrollment.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    os.chmod(path, 0o600)
    # 4: refused before the TPM is touched (an emptied srk_name: the pin is mandatory); 2: a PIN
    # salt appeared, so --pin-file is needed
    _check(*_cli("tpm", "unlock", "--tcti", NO_TPM, "-e", path, "-a", d / "a.pcrsig"), ok_codes=(2, 4, 5))


def _run_approvals(d: Path, text: str | bytes) -> None:
    path = d / "fuzzed.pcrsig"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    _check(*_cli("policy", "show", path), ok_codes=(0,))
    # 4: refused before the TPM is touched (approvals of another key: "signed by key X, the device
    # trusts key Y")
    _check(*_cli("tpm", "unlock", "--tcti", NO_TPM, "-e", d / "signed.json", "-a", path), ok_codes=(4, 5))


# --- strategies ----------------------------------------------------------------------------------

BIG = 10 ** 30
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-BIG, max_value=BIG) | st.sampled_from(
        [0, 1, -1, 23, 24, 99, 2 ** 31, 2 ** 32, 2 ** 32 + 0x01805C00, 2 ** 64, 4096, 4097, 2_000_000])
    | st.floats(allow_nan=False) | st.text(max_size=24)
    | st.sampled_from(["", "zz", "00", "!!!", "pcrtool-svn=1\n", "pcrtool-svn=01", "sha1", "sha256", "SHA256",
                       "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "000b" + "00" * 32]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16)


@st.composite
def mutated(draw, text: str) -> str | bytes:
    """One mutation of a JSON document's text."""
    doc = json.loads(text)
    kind = draw(st.sampled_from(["replace", "replace-nested", "delete", "unknown-key", "whole", "truncate",
                                 "bytes", "deep"]))
    if kind == "whole":
        return json.dumps(draw(json_values))
    if kind == "truncate":
        return text[:draw(st.integers(0, max(0, len(text) - 1)))]
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    if kind == "deep":
        n = draw(st.sampled_from([50, 1000, 100_000]))
        return "[" * n + "]" * n
    # a path to a JSON object inside the document
    node = doc
    if kind == "replace-nested":
        for _ in range(3):
            if isinstance(node, dict) and node:
                child = node[draw(st.sampled_from(sorted(node)))]
            elif isinstance(node, list) and node:
                child = node[draw(st.integers(0, len(node) - 1))]
            else:
                break
            if not isinstance(child, (dict, list)) or not child:
                break
            node = child
    if isinstance(node, list):
        node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
        return json.dumps(doc)
    keys = sorted(node)
    if kind == "unknown-key" or not keys:
        node[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    elif kind == "delete":
        del node[draw(st.sampled_from(keys))]
    else:
        node[draw(st.sampled_from(keys))] = draw(json_values)
    return json.dumps(doc)


SETTINGS = settings(deadline=None, max_examples=60, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(data=st.data(), which=st.sampled_from(["signed.json", "allow.json"]))
def test_enrollment_files_only_give_format_errors(real_files, data, which):
    d, files = real_files
    _run_enrollment(d, data.draw(mutated(files[which])))


@SETTINGS
@given(data=st.data())
def test_approvals_files_only_give_format_errors(real_files, data):
    d, files = real_files
    _run_approvals(d, data.draw(mutated(files["a.pcrsig"])))


@pytest.mark.parametrize("which", ["signed.json", "allow.json"])
@example(huge=True)
@given(huge=st.booleans())
@settings(deadline=None, max_examples=2, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_enrollment_with_a_5000_digit_integer(real_files, which, huge):
    d, files = real_files
    doc = json.loads(files[which])
    field = next(k for k, v in doc.items() if isinstance(v, int) and not isinstance(v, bool))
    doc[field] = "@HUGE@"
    _run_enrollment(d, json.dumps(doc).replace('"@HUGE@"', ("9" if huge else "1") * 5000))


def test_a_73_mb_approvals_file_is_refused_by_its_size(real_files, tmp_path):
    """Size is checked before the file is read: the child's peak RSS stays far below the file's
    size (pcrtool itself needs about 25 MB)."""
    d, files = real_files
    entry = json.loads(files["a.pcrsig"])["sha256"][0]
    line = json.dumps(entry)
    count = (73 << 20) // (len(line) + 1) + 1
    path = tmp_path / "huge.pcrsig"
    with open(path, "w") as f:
        f.write('{"sha256": [' + line)
        for _ in range(count - 1):   # streamed: the child inherits this process's peak RSS at fork
            f.write("," + line)
        f.write("]}")
    def peak(p: Path):
        proc = subprocess.Popen([sys.executable, "-m", "pcrtool", "policy", "show", str(p)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read()
        err = proc.stderr.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)   # this child's own peak RSS
        proc.stdout.close()
        proc.stderr.close()
        return os.waitstatus_to_exitcode(status), err, usage.ru_maxrss

    # a child's peak RSS starts at this (pytest) process's RSS at fork: compare with a small file
    _, _, baseline = peak(d / "a.pcrsig")
    code, err, big = peak(path)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "internal error" not in err, err
    assert big - baseline < 32 * 1024, f"peak RSS {big} KiB ({baseline} KiB for a small file) for a " \
                                       f"{path.stat().st_size} byte file"
