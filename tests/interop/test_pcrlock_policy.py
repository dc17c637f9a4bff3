"""A pcrtool pcrlock.d tree from release manifests, made into a policy by `systemd-pcrlock
make-policy` (newest systemd, swtpm), read back by pcrtool: `pcrlock show` and `pcrlock accepts`
say which predicted releases the policy accepts — the allowlisted ones, not the others."""

from __future__ import annotations

import json
from pathlib import Path

from helpers_interop import run_pcrtool
from tests.support import need_tool

ROOT = Path(__file__).resolve().parents[2]


def _manifests(tmp: Path) -> list[Path]:
    spec = json.loads((ROOT / "pcrtool" / "data" / "demo" / "releases.json").read_text())
    out = []
    for i, r in enumerate(spec["releases"]):
        d = tmp / f"rel{i}"
        d.mkdir()
        lines = [f'name = "{r["name"]}"', f'version = "{r["version"]}"', f'svn = {r["svn"]}', 'pcrs = [11]',
                 'phases = ["enter-initrd"]', "[uki.sections]"]
        for name, content in r["sections"].items():
            (d / name.lstrip(".")).write_text(content)
            lines.append(f'{name.lstrip(".")} = "{name.lstrip(".")}"')
        (d / "release.toml").write_text("\n".join(lines) + "\n")
        out.append(d / "release.toml")
    return out


def test_make_policy_from_a_pcrtool_tree_read_back(sid_systemd, tmp_path):
    need_tool("swtpm")
    from pcrtool.validate_systemd import Machine, demo_boots

    manifests = _manifests(tmp_path)
    (tmp_path / "allow.toml").write_text("".join(
        f'[[allow]]\nname = "demo-os"\nversion = "{v}"\n' for v in ("1.0", "1.1", "2.0")))
    run_pcrtool("predict", "release", *manifests, "--allowlist", tmp_path / "allow.toml", "-o", tmp_path / "pred.json",
                check=True)
    tree = tmp_path / "pcrlock.d"
    run_pcrtool("pcrlock", "tree", *manifests, "--allowlist", tmp_path / "allow.toml", "-o", tree, check=True)
    assert sorted(p.name for p in (tree / "650-uki.pcrlock.d").iterdir()) == [
        "demo-os-1.0.pcrlock", "demo-os-1.1.pcrlock", "demo-os-2.0.pcrlock"]
    shown = json.loads(run_pcrtool("--json=short", "pcrlock", "show", tree, check=True).stdout)
    assert [c["component"] for c in shown] == ["650-uki"] and len(shown[0]["variants"]) == 3

    spec = json.loads((ROOT / "pcrtool" / "data" / "demo" / "releases.json").read_text())
    m = Machine(tmp_path)
    try:
        boots = demo_boots(spec, m.banks)
        env = m.boot(next(b for b in boots if b.id == "demo-os 2.0"))
        policy = tmp_path / "pcrlock.json"
        sid_systemd.run("systemd-pcrlock", "make-policy", "--pcr=11", "--location=770",
                        "--components=/usr/lib/pcrlock.d", f"--components={tree}", f"--policy={policy}", env=env)
        # systemd's own prediction with its default location window (every later phase too)
        wide = json.loads(sid_systemd.run("systemd-pcrlock", "predict", "--pcr=11", "--json=short",
                                          "--components=/usr/lib/pcrlock.d", f"--components={tree}", env=env).stdout)
    finally:
        m.stop()
    doc = json.loads(policy.read_text())
    assert doc["pcrBank"] == "sha256" and [v["pcr"] for v in doc["pcrValues"]] == [11]
    shown = json.loads(run_pcrtool("--json=short", "pcrlock", "show", policy, check=True).stdout)
    assert shown["pcrValues"] == doc["pcrValues"] and shown["nvIndex"] == doc["nvIndex"]
    # pcrtool predicts the same values from the components (systemd's static ones copied out)
    static = tmp_path / "static"
    sid_systemd.run("cp", "-r", "/usr/lib/pcrlock.d", static)
    predicted = json.loads(run_pcrtool("--json=short", "pcrlock", "predict", "--components", static,
                                       "--components", tree, "--pcr", "11", "--location", "770", check=True).stdout)
    assert predicted["pcrValues"] == [{"pcr": 11, "values": sorted(doc["pcrValues"][0]["values"])}]
    predicted = json.loads(run_pcrtool("--json=short", "pcrlock", "predict", "--components", static,
                                       "--components", tree, "--pcr", "11", check=True).stdout)
    theirs = sorted(v for item in wide["sha256"] if item["pcr"] == 11 for v in item["values"])
    print("systemd-pcrlock predict:", len(theirs), "values for PCR 11")
    assert predicted["pcrValues"][0]["values"] == theirs and len(theirs) > 8
    verdict = json.loads(run_pcrtool("--json=short", "pcrlock", "accepts", policy, "--predictions", tmp_path / "pred.json",
                                     check=True).stdout)
    got = {r["release"]: r["accepted"] for r in verdict["releases"]}
    assert got == {"demo-os 1.0": True, "demo-os 1.1": True, "demo-os 2.0": True, "demo-os 2.0-debug": False}
    assert all(r["accepted"] == r["allowed"] for r in verdict["releases"])
