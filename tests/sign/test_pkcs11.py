"""PKCS#11 keys on a real SoftHSM2 token: identical signatures to the file key, one-line errors."""

from __future__ import annotations

import subprocess

import pytest

from helpers_sign import PIN, need_tool, openssl, run_cli
from pcrtool.errors import KeyReferenceError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign import Padding, load_signer
from pcrtool.sign.pkcs11 import Pkcs11Uri

DATA = b"release approval bytes" * 11


@pytest.mark.parametrize("prehashed", [False, True], ids=["SHA256_RSA_PKCS", "RSA_PKCS+DigestInfo"])
@pytest.mark.parametrize("alg", [HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512])
def test_token_rsa_signature_is_identical_to_file_key(keys, hsm, prehashed, alg):
    file_sig = load_signer(str(keys.rsa)).sign(DATA, alg)
    with load_signer(hsm.uri("rsa", prehashed=prehashed)) as token:
        assert token.prehashed_only is prehashed
        assert token.fingerprint() == keys.fingerprint("rsa")
        assert token.sign(DATA, alg) == file_sig


def test_token_signature_equals_openssl_over_the_same_file(keys, hsm, tmp_path):
    data = tmp_path / "tbs"
    data.write_bytes(DATA)
    with load_signer(hsm.uri(key_id=b"\x01")) as token:
        assert token.sign(DATA, HashAlg.SHA256) == openssl("dgst", "-sha256", "-sign", str(keys.rsa), str(data))


@pytest.mark.parametrize("prehashed", [False, True])
def test_token_pss_verifies_with_openssl(keys, hsm, tmp_path, prehashed):
    data, sig = tmp_path / "d", tmp_path / "s"
    data.write_bytes(DATA)
    with load_signer(hsm.uri("rsa", prehashed=prehashed)) as token:
        sig.write_bytes(token.sign(DATA, HashAlg.SHA256, Padding.PSS))
    proc = subprocess.run([need_tool("openssl"), "dgst", "-sha256", "-sigopt", "rsa_padding_mode:pss",
                           "-sigopt", "rsa_pss_saltlen:32", "-verify", str(keys.pub("rsa")),
                           "-signature", str(sig), str(data)], capture_output=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["ec256", "ec384"])
def test_token_ecdsa_is_der_and_verifies_with_openssl(keys, hsm, tmp_path, name):
    data, sig = tmp_path / "d", tmp_path / "s"
    data.write_bytes(DATA)
    with load_signer(hsm.uri(name)) as token:
        assert token.fingerprint() == keys.fingerprint(name)
        raw = token.sign(DATA, HashAlg.SHA256)
    assert raw[0] == 0x30  # DER SEQUENCE, not raw r||s
    sig.write_bytes(raw)
    proc = subprocess.run([need_tool("openssl"), "dgst", "-sha256", "-verify", str(keys.pub(name)),
                           "-signature", str(sig), str(data)], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_certificate_is_read_from_the_token(keys, hsm):
    with load_signer(hsm.uri("rsa")) as token:
        assert token.certificate().subject.rfc4514_string() == "CN=pcrtool test rsa"
    with load_signer(hsm.uri("ec384")) as token:
        assert token.certificate() is None


def test_private_only_rsa_object_gives_its_public_key_and_refuses_a_foreign_certificate(keys, hsm):
    with load_signer(hsm.uri("rsa_nopub")) as token:  # CKA_MODULUS/CKA_PUBLIC_EXPONENT of the private key
        assert token.fingerprint() == keys.fingerprint("rsa_b")
        assert token.sign(DATA, HashAlg.SHA256) == load_signer(str(keys.rsa_b)).sign(DATA, HashAlg.SHA256)
    with pytest.raises(KeyReferenceError, match="does not belong"):
        load_signer(hsm.uri("rsa_nopub"), certificate=str(keys.crt("rsa")))


def _wrong_pin_uri(hsm, tmp_path, pin="999999"):
    pinfile = tmp_path / "pin"
    pinfile.write_text(pin)
    return f"pkcs11:token=pcrtool%20test;object=rsa?pin-source=file:{pinfile}&module-path={hsm.module}"


def test_errors_are_one_line_key_errors_without_the_pin(hsm, tmp_path):
    cases = {
        "wrong PIN": f"pkcs11:token=pcrtool%20test;object=rsa?pin-value=999999&module-path={hsm.module}",
        "no private key object=absent": hsm.uri("absent"),
        "no PKCS#11 token matches token=other": f"pkcs11:token=other?pin-value=999999&module-path={hsm.module}",
        "needs a PIN": hsm.uri("rsa", pin_source=False),
        "does not exist": "pkcs11:token=x?pin-value=999999&module-path=/nonexistent/p11.so",
    }
    for expected, uri in cases.items():
        with pytest.raises(KeyReferenceError) as e:
            load_signer(uri)
        text = f"{e.value} {e.value.hint}"
        assert expected in str(e.value) and "\n" not in text and "999999" not in text and PIN not in text
    with pytest.raises(KeyReferenceError, match="wrong PIN"):
        load_signer(_wrong_pin_uri(hsm, tmp_path))


def test_uri_parsing():
    uri = Pkcs11Uri.parse("pkcs11:token=My%20Token;object=k;id=%01%ff?pin-source=file:/p&module-path=/m.so")
    assert uri.path == {"token": "My Token", "object": "k", "id": b"\x01\xff"}
    assert uri.query == {"pin-source": "file:/p", "module-path": "/m.so"}
    assert "secret" not in repr(Pkcs11Uri.parse("pkcs11:token=t?pin-value=secret"))
    for bad in ("pkcs11:bogus=1", "pkcs11:token=a;token=b", "pkcs11:token=a?pin-value=1&pin-source=/x",
                "pkcs11:token=a?nope=1"):
        with pytest.raises(UsageError):
            Pkcs11Uri.parse(bad)


def test_cli_key_show_pkcs11_never_prints_the_pin_and_fails_in_one_line(keys, hsm):
    uri = f"pkcs11:token=pcrtool%20test;object=rsa?pin-value={PIN}&module-path={hsm.module}"
    proc = run_cli("key", "show", uri, "--json=short", env=hsm.env)
    assert proc.returncode == 0, proc.stderr
    assert PIN not in proc.stdout + proc.stderr
    assert keys.fingerprint("rsa") in proc.stdout and "CN=pcrtool test rsa" in proc.stdout
    bad = uri.replace(PIN, "111111")
    proc = run_cli("key", "show", bad, env=hsm.env, fresh_process=True)  # no login shared with other tests
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "wrong PIN" in proc.stderr and "111111" not in proc.stderr


def test_pkcs11_tool_signature_matches_pcrtool(keys, hsm, tmp_path):
    data, sig = tmp_path / "d", tmp_path / "s"
    data.write_bytes(DATA)
    subprocess.run([need_tool("pkcs11-tool"), "--module", hsm.module, "--token-label", hsm.label,
                    "--login", "--pin", PIN, "--sign", "-m", "SHA256-RSA-PKCS", "--id", "01",
                    "-i", str(data), "-o", str(sig)], check=True, capture_output=True, env={**hsm.env})
    assert sig.read_bytes() == load_signer(str(keys.rsa)).sign(DATA, HashAlg.SHA256)


def test_uri_pin_sources_and_module_name(hsm, tmp_path):
    from pcrtool.sign.pkcs11 import resolve_module, resolve_pin
    pinfile = tmp_path / "pin"
    pinfile.write_text(PIN + "\n")
    for source in (f"file:{pinfile}", f"file://{pinfile}", str(pinfile)):
        assert resolve_pin(Pkcs11Uri.parse(f"pkcs11:token=t?pin-source={source}")) == PIN
    assert resolve_module(Pkcs11Uri.parse("pkcs11:token=t?module-name=libsofthsm2")).endswith("libsofthsm2.so")
    with pytest.raises(KeyReferenceError, match="module named"):
        resolve_module(Pkcs11Uri.parse("pkcs11:token=t?module-name=no-such-module"))


def test_arbitrary_uris_parse_or_fail_with_usage_error():
    from hypothesis import given, settings, strategies as st

    alphabet = st.sampled_from(list("tokenobjidpin-sourcevaluemodule=;?&%:/0123456789abcXYZ "))

    @settings(deadline=None, max_examples=300)
    @given(st.text(alphabet, max_size=60))
    def check(tail):
        try:
            uri = Pkcs11Uri.parse("pkcs11:" + tail)
        except UsageError as e:
            assert "\n" not in str(e)
        else:
            assert "pin-value" not in uri.text or "pin-value=***" in uri.text

    check()


def test_key_list_shows_every_token_key_with_a_working_uri(keys, hsm):
    proc = run_cli("key", "list", hsm.uri(), "--json=short", env=hsm.env)
    assert proc.returncode == 0, proc.stderr
    import json
    listed = {k["label"]: k for k in json.loads(proc.stdout)["keys"]}
    assert sorted(listed) == ["ec256", "ec384", "rsa", "rsa_nopub"]
    assert listed["rsa"]["id"] == "01" and listed["rsa"]["type"] == "rsa2048"
    assert listed["rsa"]["fingerprint"] == keys.fingerprint("rsa")
    assert listed["rsa"]["certificate"] == "CN=pcrtool test rsa"
    assert listed["ec384"]["fingerprint"] == keys.fingerprint("ec384") and "certificate" not in listed["ec384"]
    assert PIN not in proc.stdout
    uri = listed["ec256"]["uri"] + f"?pin-source=file:{hsm.pin_file}&module-path={hsm.module}"
    with load_signer(uri) as signer:
        assert signer.fingerprint() == keys.fingerprint("ec256")
