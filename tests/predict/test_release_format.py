"""The documented release format: templates parse and predict, every key is documented, and
[secureboot] takes certificates as `predict secureboot` does (issue 18)."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from pcrtool.predict import manifest as M
from pcrtool.predict.templates import TEMPLATES
from tests.support import need_tool
from tests.support.cli import run_pcrtool as run

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("kind", ["uki", "shim-grub", "secureboot"])
def test_manifest_templates_parse(kind):
    p = run("predict", "template", kind)
    assert p.returncode == 0 and p.stdout == TEMPLATES[kind]
    m = M.parse_manifest(p.stdout, source=kind)
    assert (m.name, m.version, m.svn) == ("fooos", "2.1", 3)


def test_allowlist_template_parses():
    allow = M.parse_allowlist(run("predict", "template", "allowlist").stdout)
    assert allow.allows("fooos", "2.1", 3) and not allow.allows("fooos", "2.1", 2)
    assert allow.allows("fooos", "2.0", 7)


def test_unknown_template_is_a_usage_error():
    p = run("predict", "template", "nope")
    assert p.returncode == 2 and "use one of uki, shim-grub, secureboot, allowlist" in p.stderr


def test_every_manifest_key_is_in_the_uki_template_and_the_readme():
    readme = README.read_text()
    section = readme[readme.index("## Release format reference"):]
    section = section[:section.index("\n## ", 5)]
    for key in sorted(M._TOP_KEYS):
        assert re.search(rf"^#? ?{key} = |^#? ?\[{key}\]", TEMPLATES["uki"], re.M), key
        assert f"`{key}`" in section or f"`[{key}]`" in section, key
    for key in ("SecureBoot", "PK", "KEK", "db", "dbx", "dbt", "dbr", "owner", "authorities", "separator",
                "path", "profile", "stub", "linux_stub", "sections", "chain", "kernel", "initrd", "nul",
                "sbat_level", "MokList", "MokListX", "MokListTrusted", "SbatLevel", "vendor_authority",
                "device", "config", "config_path", "files", "kernel_path", "initrd_path", "cmdline"):
        assert f"`{key}`" in section, key


def _cert(tmp_path):
    key, crt = tmp_path / "db.key", tmp_path / "db.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-subj", "/CN=db", "-days", "30"], check=True, capture_output=True)
    der = tmp_path / "db.der"
    subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER", "-out", der], check=True)
    return crt, der


def _predict(tmp_path, name, secureboot):
    m = tmp_path / f"{name}.toml"
    m.write_text(f'name = "fooos"\nversion = "1"\nsvn = 1\npcrs = [7]\n[secureboot]\n{secureboot}')
    p = run("predict", "release", m)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)["releases"][0]["phases"][0]["values"]["sha256"]["7"]


def test_secureboot_certificates_equal_sbsiglist_lists_and_predict_secureboot(tmp_path):
    crt, der = _cert(tmp_path)
    owner = "77fa9abd-0359-4d32-bd60-28f4e78f784b"
    esl = tmp_path / "db.esl"
    subprocess.run([need_tool("sbsiglist"), "--owner", owner, "--type", "x509", "--output", esl, der], check=True)
    from_esl = _predict(tmp_path, "a", 'SecureBoot = 1\ndb = "db.esl"\n')
    from_pem = _predict(tmp_path, "b", f'SecureBoot = 1\nowner = "{owner}"\ndb = "db.crt"\n')
    from_der = _predict(tmp_path, "c", f'SecureBoot = 1\nowner = "{owner}"\ndb = "db.der"\n')
    assert from_esl == from_pem == from_der
    assert from_pem != _predict(tmp_path, "d", 'SecureBoot = 1\ndb = "db.crt"\n')  # owner matters
    cli = json.loads(run("predict", "secureboot", "--db", crt, "--owner", owner, "--json=short").stdout)
    assert json.dumps(cli).count(from_pem) == 1
    # a list concatenates the signature lists
    (tmp_path / "two.esl").write_bytes(esl.read_bytes() * 2)
    assert _predict(tmp_path, "e", 'db = "two.esl"\n') == \
        _predict(tmp_path, "f", f'owner = "{owner}"\ndb = ["db.esl", "db.der"]\n')
    # an authority given as PEM is the same event as given as DER
    assert _predict(tmp_path, "g", f'authorities = [{{owner = "{owner}", certificate = "db.crt"}}]\n') == \
        _predict(tmp_path, "h", f'authorities = [{{owner = "{owner}", certificate = "db.der"}}]\n')
