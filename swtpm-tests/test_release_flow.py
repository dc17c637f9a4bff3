"""The release-time flow across areas, as a user runs it: manifests → `predict release` →
`policy approve` → `validate` on swtpm; then the device commands on the same artefacts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pcrtool.model import HashAlg
from pcrtool.predict.uki import predict_pcr11  # noqa: F401 - imported to fail early if absent
from tests.support import need_tool

from tests.support.cli import run_pcrtool


def cli(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_pcrtool(*args, cwd=cwd, check=check, timeout=300)


@pytest.fixture(scope="module")
def release_dir(tmp_path_factory) -> Path:
    need_tool("swtpm")
    d = tmp_path_factory.mktemp("release")
    for v in (1, 2, 3):
        (d / f"linux-{v}").write_bytes(f"kernel-{v}\n".encode())
        (d / f"initrd-{v}").write_bytes(f"initrd-{v}\n".encode())
        (d / f"m{v}.toml").write_text(
            f'name = "fooos"\nversion = "1.{v}"\nsvn = {v}\nbanks = ["sha256"]\nphases = ["enter-initrd"]\n'
            f'[uki.sections]\nlinux = "linux-{v}"\ninitrd = "initrd-{v}"\n')
    (d / "allow.toml").write_text('[[allow]]\nname = "fooos"\nversion = "1.2"\n'
                                  '[[allow]]\nname = "fooos"\nversion = "1.3"\n')
    cli("predict", "release", "m1.toml", "m2.toml", "m3.toml", "--allowlist", "allow.toml",
        "-o", "pred.json", cwd=d)
    cli("key", "generate", "k.pem", "--type", "rsa2048", cwd=d)
    cli("policy", "approve", "-r", "pred.json", "-k", "file:k.pem", "-o", "a.pcrsig", cwd=d)
    return d


def test_prediction_equals_systemd_measure_algorithm(release_dir):
    """PCR 11 of release 1.2 in enter-initrd, recomputed here from the systemd-stub rules
    (H(name\\0), H(content) for .linux then .initrd, then H("enter-initrd"))."""
    h = HashAlg.SHA256
    pcr = h.zero
    for name, data in ((b".linux", b"kernel-2\n"), (b".initrd", b"initrd-2\n")):
        pcr = h.digest(pcr + h.digest(name + b"\0"))
        pcr = h.digest(pcr + h.digest(data))
    pcr = h.digest(pcr + h.digest(b"enter-initrd"))
    pred = json.loads((release_dir / "pred.json").read_text())
    rel = next(r for r in pred["releases"] if r["version"] == "1.2")
    assert rel["allowed"] is True
    assert rel["phases"][0]["values"]["sha256"]["11"] == pcr.hex()


def test_approvals_cover_only_allowlisted_releases(release_dir):
    approvals = json.loads((release_dir / "a.pcrsig").read_text())
    entries = approvals["sha256"]
    pred = json.loads((release_dir / "pred.json").read_text())
    pcr11 = {r["version"]: r["phases"][0]["values"]["sha256"]["11"] for r in pred["releases"]}
    assert len(entries) == 2
    assert all(e["pcrs"] == [11] for e in entries)
    assert {e["ref"] for e in entries} == {"pcrtool-svn=2,bank=sha256,pcrs=11", "pcrtool-svn=3,bank=sha256,pcrs=11"}
    # The not-allowlisted release 1.1 has no approval at all.
    assert pcr11["1.1"] not in json.dumps(entries)


def test_validate_matrix_passes_for_predicted_releases(release_dir):
    proc = cli("validate", "--allowlist", "pred.json", "--approvals", "a.pcrsig", "--key", "k.pem",
               "--json=short", cwd=release_dir)
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    assert [m["mode"] for m in report["matrices"]][0] == "signed"
    cells = [c for m in report["matrices"] for c in m["cells"]]
    assert all(c["ok"] and c["expected"] == c["actual"] for c in cells)
    outcome = {(c["scenario"], c["release"]): c["actual"] for c in cells}
    assert outcome[("allowlisted release", "fooos-1.2")] == "allow"
    assert outcome[("allowlisted release", "fooos-1.3")] == "allow"
    assert outcome[("release not on the allowlist", "fooos-1.1")] == "deny"
    assert outcome[("below floor after advance (own approval replayed)", "fooos-1.2")] == "deny"
    # Every deny was refused by the TPM itself, not only by pcrtool.
    assert all(c["tpm_rc"] for c in cells if c["actual"] == "deny")


def test_validate_refuses_approvals_made_by_another_key(release_dir):
    cli("key", "generate", "other.pem", "--type", "rsa2048", cwd=release_dir)
    proc = cli("validate", "--allowlist", "pred.json", "--approvals", "a.pcrsig", "--key", "other.pem",
               cwd=release_dir, check=False)
    assert proc.returncode == 4
    assert "the approvals are signed by key" in proc.stderr and "the device trusts key" in proc.stderr
