"""Offline signing of a DDI through the common signing request (kind verity-roothash): prepare on
the build host, sign the request's bytes elsewhere (openssl here), attach."""

from __future__ import annotations

import json

from helpers_ddi import EPOCH, SEED, cli, make_tree, run

from tests.support import need_tool


def test_prepare_sign_attach_gives_the_online_image(keys, certdirs, host, tmp_path):
    openssl = need_tool("openssl")
    src = make_tree(tmp_path / "src", "off", "ID=_any\n", files=5)
    key, cert = keys["new"]
    online = tmp_path / "online" / "off.raw"
    online.parent.mkdir()
    common = ["--seed", SEED, "--source-date-epoch", EPOCH, "--arch", "x86-64"]
    assert cli("ddi", "build", src, "-o", online, "-k", f"file:{key}", "-c", cert, *common)[0] == 0
    image = tmp_path / "off.raw"
    code, out, err = cli("--json=short", "ddi", "prepare", src, "-o", image, "-c", cert, *common)
    assert code == 0, err
    info = json.loads(out)
    request = tmp_path / "off.sign-request.json"
    assert info["request"] == str(request) and json.loads(request.read_text())["kind"] == "verity-roothash"
    tbs = tmp_path / "off.roothash"
    assert tbs.read_bytes() == info["rootHash"].encode()
    # unsigned until attached: systemd's policy refuses it
    code, _, err = cli("ddi", "verify", image, "--certs", certdirs["new"], "--host-os-release", host["debian"],
                       "--arch", "x86-64")
    assert code == 3 and "verity-sig" in err
    run(openssl, "dgst", "-sha256", "-sign", key, "-out", tmp_path / "off.roothash.sig", tbs)
    code, _, err = cli("ddi", "attach", request, image, "-c", cert)
    assert code == 0, err
    assert image.read_bytes() == online.read_bytes()
    code, _, err = cli("ddi", "verify", image, "--certs", certdirs["new"], "--host-os-release", host["debian"],
                       "--arch", "x86-64")
    assert code == 0, err


def test_attach_refuses_another_keys_signature_and_another_image(keys, tmp_path):
    openssl = need_tool("openssl")
    key, cert = keys["new"]
    images = []
    for name in ("a", "b"):
        src = make_tree(tmp_path / f"src-{name}", name, "ID=_any\n", files=2 + len(images))
        image = tmp_path / f"{name}.raw"
        assert cli("ddi", "prepare", src, "-o", image, "-c", cert, "--arch", "x86-64")[0] == 0
        images.append(image)
    request = tmp_path / "a.sign-request.json"
    before = images[0].read_bytes()
    run(openssl, "dgst", "-sha256", "-sign", keys["other"][0], "-out", tmp_path / "a.roothash.sig",
        tmp_path / "a.roothash")
    code, _, err = cli("ddi", "attach", request, images[0], "-c", cert)
    assert code == 3 and "Traceback" not in err
    assert images[0].read_bytes() == before          # nothing written
    run(openssl, "dgst", "-sha256", "-sign", key, "-out", tmp_path / "a.roothash.sig", tmp_path / "a.roothash")
    code, _, err = cli("ddi", "attach", request, images[1], "-c", cert)
    assert code == 3 and "not the one the request covers" in err


def test_signing_host_and_pkcs11_token_give_the_same_image(keys, tmp_path):
    """The same DDI three ways: a key file, a SoftHSM2 token (Signer API), and `pcrtool sign-request
    sign` on the signing host for a `ddi prepare` request."""
    need_tool("softhsm2-util")
    need_tool("pkcs11-tool")
    from tests.support.softhsm import SoftHsm

    src = make_tree(tmp_path / "src", "tri", "ID=_any\n", files=4)
    key, cert = keys["new"]
    common = ["--seed", SEED, "--source-date-epoch", EPOCH, "--arch", "x86-64"]
    images = {n: tmp_path / n / "tri.raw" for n in ("file", "token", "host")}
    for p in images.values():
        p.parent.mkdir()
    assert cli("ddi", "build", src, "-o", images["file"], "-k", f"file:{key}", "-c", cert, *common)[0] == 0
    with SoftHsm.start(label="ddi test") as hsm:
        hsm.import_key(key, label="ddi", key_id=b"\x09", certificate=cert)
        code, _, err = cli("ddi", "build", src, "-o", images["token"], "-k", hsm.uri("ddi"), *common)
    assert code == 0, err
    assert cli("ddi", "prepare", src, "-o", images["host"], "-c", cert, *common)[0] == 0
    request = images["host"].with_name("tri.sign-request.json")
    code, out, err = cli("--json=short", "sign-request", "show", request, "-k", cert)
    assert code == 0, err
    digest = json.loads(out)["digest"]
    code, _, err = cli("sign-request", "sign", request, "-k", f"file:{key}", "--expect", digest,
                       "--audit-log", tmp_path / "audit.jsonl")
    assert code == 0, err
    assert cli("ddi", "attach", request, images["host"], "-c", cert)[0] == 0
    assert images["token"].read_bytes() == images["file"].read_bytes() == images["host"].read_bytes()
