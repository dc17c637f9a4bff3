"""Every --key / --public-key takes a pkcs11: URI (issue 18): the public half comes from the token."""

import json

from helpers_sign import run_cli

from pcrtool.cli.validate import load_key_any
from pcrtool.policy import digests as D
from pcrtool.sign.keyfile import load_public_key_file


def test_public_key_options_accept_pkcs11_uris_and_file_refs(keys, hsm, monkeypatch):
    monkeypatch.setenv("SOFTHSM2_CONF", hsm.env["SOFTHSM2_CONF"])
    uri = hsm.uri("rsa")
    want = D.public_key_fingerprint(load_public_key_file(str(keys.pub("rsa"))))
    assert D.public_key_fingerprint(load_public_key_file(uri)) == want
    assert D.public_key_fingerprint(load_public_key_file(f"file:{keys.pub('rsa')}")) == want
    public, private = load_key_any(uri)  # `validate --key pkcs11:…`
    assert D.public_key_fingerprint(public) == want and private is None
    by_uri = run_cli("policy", "digest", "--public-key", uri, "--json=short", env=hsm.env)
    by_file = run_cli("policy", "digest", "--public-key", str(keys.pub("rsa")), "--json=short", env=hsm.env)
    assert by_uri.returncode == 0, by_uri.stderr
    assert json.loads(by_uri.stdout) == json.loads(by_file.stdout)
    assert json.loads(by_uri.stdout)["pkfp"] == want.hex()
