"""File keys: formats, passphrases, signatures checked by openssl, consumer checks, errors."""

from __future__ import annotations

import subprocess

import pytest

from helpers_sign import need_tool, openssl
from pcrtool.errors import KeyReferenceError, SignatureError, UnsupportedError, UsageError
from pcrtool.model import HashAlg
from pcrtool.sign import KeyRef, KeyScheme, KeyType, Padding, load_signer
from pcrtool.sign.api import redact_uri

DATA = b"pcrtool payload \x00\x01\x02" * 7


def openssl_verify(pub, data_path, sig_path, *opts) -> bool:
    proc = subprocess.run([need_tool("openssl"), "dgst", "-sha256", *opts, "-verify", str(pub),
                           "-signature", str(sig_path), str(data_path)], capture_output=True)
    return proc.returncode == 0


@pytest.mark.parametrize("name,kt,size", [("rsa", KeyType.RSA, 2048), ("rsa3072", KeyType.RSA, 3072),
                                          ("ec256", KeyType.EC, 256), ("ec384", KeyType.EC, 384)])
def test_key_type_size_and_fingerprint_match_openssl(keys, name, kt, size):
    signer = load_signer(f"file:{keys.dir / (name + '.pem')}")
    assert (signer.key_type, signer.key_size) == (kt, size)
    assert signer.fingerprint() == keys.fingerprint(name)
    assert signer.certificate() is None


def test_rsa_pkcs1v15_signature_is_byte_identical_to_openssl(keys, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(DATA)
    expected = openssl("dgst", "-sha256", "-sign", str(keys.rsa), str(data))
    assert load_signer(str(keys.rsa)).sign(DATA, HashAlg.SHA256) == expected
    expected384 = openssl("dgst", "-sha384", "-sign", str(keys.rsa), str(data))
    assert load_signer(str(keys.rsa)).sign(DATA, HashAlg.SHA384) == expected384


def test_pss_and_ecdsa_signatures_verify_with_openssl(keys, tmp_path):
    data = tmp_path / "data"
    data.write_bytes(DATA)
    sig = tmp_path / "sig"
    sig.write_bytes(load_signer(str(keys.rsa)).sign(DATA, HashAlg.SHA256, Padding.PSS))
    assert openssl_verify(keys.pub("rsa"), data, sig, "-sigopt", "rsa_padding_mode:pss",
                          "-sigopt", "rsa_pss_saltlen:32")
    assert not openssl_verify(keys.pub("rsa"), data, sig)  # it is not PKCS#1 v1.5
    for name in ("ec256", "ec384"):
        sig.write_bytes(load_signer(str(keys.dir / f"{name}.pem")).sign(DATA, HashAlg.SHA256))
        assert openssl_verify(keys.pub(name), data, sig)
        data.write_bytes(DATA + b"x")
        assert not openssl_verify(keys.pub(name), data, sig)
        data.write_bytes(DATA)


def test_der_and_traditional_formats_load(keys, tmp_path):
    der = tmp_path / "k.der"
    der.write_bytes(openssl("pkey", "-in", str(keys.rsa), "-outform", "DER"))
    trad = tmp_path / "k.rsa.pem"
    trad.write_bytes(openssl("pkey", "-in", str(keys.rsa), "-traditional"))
    assert b"BEGIN RSA PRIVATE KEY" in trad.read_bytes()
    sec1 = tmp_path / "ec.der"
    sec1.write_bytes(openssl("ec", "-in", str(keys.ec256), "-outform", "DER"))
    for p, name in ((der, "rsa"), (trad, "rsa"), (sec1, "ec256")):
        assert load_signer(str(p)).fingerprint() == keys.fingerprint(name)


@pytest.fixture
def encrypted(keys, tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text("correct horse\n")
    enc = tmp_path / "enc.pem"
    enc.write_bytes(openssl("pkey", "-in", str(keys.rsa), "-aes256", "-passout", f"file:{passfile}"))
    return enc, passfile


def test_encrypted_key_passphrase_from_uri_file_env_file_and_env(keys, encrypted, monkeypatch):
    enc, passfile = encrypted
    monkeypatch.delenv("PCRTOOL_KEY_PASSPHRASE", raising=False)
    monkeypatch.delenv("PCRTOOL_KEY_PASSPHRASE_FILE", raising=False)
    fp = keys.fingerprint("rsa")
    assert load_signer(f"file:{enc}?passphrase-file={passfile}").fingerprint() == fp
    monkeypatch.setenv("PCRTOOL_KEY_PASSPHRASE_FILE", str(passfile))
    assert load_signer(str(enc)).fingerprint() == fp
    monkeypatch.delenv("PCRTOOL_KEY_PASSPHRASE_FILE")
    monkeypatch.setenv("PCRTOOL_KEY_PASSPHRASE", "correct horse")
    assert load_signer(str(enc)).fingerprint() == fp


def test_encrypted_key_without_or_with_wrong_passphrase_is_one_line_key_error(encrypted, monkeypatch):
    enc, _ = encrypted
    monkeypatch.delenv("PCRTOOL_KEY_PASSPHRASE_FILE", raising=False)
    monkeypatch.delenv("PCRTOOL_KEY_PASSPHRASE", raising=False)
    with pytest.raises(KeyReferenceError, match="encrypted and no passphrase") as e:
        load_signer(str(enc))
    assert "PCRTOOL_KEY_PASSPHRASE" in e.value.hint
    monkeypatch.setenv("PCRTOOL_KEY_PASSPHRASE", "wrong-secret-value")
    with pytest.raises(KeyReferenceError, match="wrong passphrase") as e:
        load_signer(str(enc))
    assert "\n" not in str(e.value) and "wrong-secret-value" not in f"{e.value} {e.value.hint}"


def test_unsupported_keys_and_garbage_are_refused(tmp_path):
    ed = tmp_path / "ed.pem"
    ed.write_bytes(openssl("genpkey", "-algorithm", "ED25519"))
    with pytest.raises(UnsupportedError, match="RSA or ECDSA"):
        load_signer(str(ed))
    p521 = tmp_path / "p521.pem"
    p521.write_bytes(openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"))
    with pytest.raises(UnsupportedError, match="secp521r1"):
        load_signer(str(p521))
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    with pytest.raises(KeyReferenceError, match="not a PEM or DER private key"):
        load_signer(str(junk))
    with pytest.raises(Exception, match="does not exist"):
        load_signer(str(tmp_path / "missing.pem"))


def test_certificate_pairing(keys, tmp_path):
    signer = load_signer(str(keys.rsa), certificate=str(keys.crt("rsa")))
    assert signer.certificate().subject.rfc4514_string() == "CN=pcrtool test rsa"
    with pytest.raises(KeyReferenceError, match="does not belong"):
        load_signer(str(keys.rsa_b), certificate=str(keys.crt("rsa")))
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(keys.rsa.read_bytes() + keys.crt("rsa").read_bytes())
    assert load_signer(str(bundle)).certificate() is not None


def test_consumer_checks_refuse_with_reason(keys):
    ec = load_signer(str(keys.ec256))
    with pytest.raises(UnsupportedError, match="systemd signed PCR policy accepts only RSA"):
        ec.require_rsa(consumer="systemd signed PCR policy")
    with pytest.raises(UnsupportedError, match="PSS"):
        ec.sign(DATA, HashAlg.SHA256, Padding.PSS)
    rsa = load_signer(str(keys.rsa3072))
    rsa.require_rsa(consumer="x")
    with pytest.raises(UnsupportedError, match="larger than 2048"):
        rsa.require_rsa(consumer="TPM LoadExternal", max_bits=2048)
    with pytest.raises(UnsupportedError):
        rsa.sign(DATA, HashAlg.SM3_256)


def test_verify_tells_another_key_from_other_bytes(keys):
    a, b = load_signer(str(keys.rsa)), load_signer(str(keys.rsa_b))
    sig = a.sign(DATA, HashAlg.SHA256)
    a.verify(DATA, sig)
    with pytest.raises(SignatureError, match="over other bytes"):
        a.verify(DATA + b"!", sig)
    with pytest.raises(SignatureError, match="another key"):
        b.verify(DATA, sig)
    with pytest.raises(SignatureError, match="another hash"):
        a.verify(DATA, a.sign(DATA, HashAlg.SHA384), HashAlg.SHA256)


def test_key_refs_parse_and_never_display_a_pin():
    assert KeyRef.parse("offline").scheme is KeyScheme.OFFLINE
    assert KeyRef.parse("/k.pem") == KeyRef(KeyScheme.FILE, "/k.pem")
    assert KeyRef.parse("file:k.pem?passphrase-file=/p").target == "k.pem?passphrase-file=/p"
    ref = KeyRef.parse("pkcs11:token=a;object=b?pin-value=s3cr3t&module-path=/m.so")
    assert "s3cr3t" not in str(ref) and "pin-value=***" in str(ref) and "module-path=/m.so" in str(ref)
    assert redact_uri("pkcs11:token=a") == "pkcs11:token=a"
    for bad in ("", "file:", "ftp:x"):
        with pytest.raises(UsageError):
            KeyRef.parse(bad)


def test_offline_signer_knows_public_key_but_refuses_to_sign(keys):
    from pcrtool.sign.offline import SignatureRequired
    signer = load_signer("offline", certificate=str(keys.crt("rsa")))
    assert signer.is_offline and signer.fingerprint() == keys.fingerprint("rsa")
    assert load_signer("offline", certificate=str(keys.pub("ec256"))).fingerprint() == keys.fingerprint("ec256")
    with pytest.raises(SignatureRequired):
        signer.sign(DATA, HashAlg.SHA256)
    with pytest.raises(KeyReferenceError, match="public key or certificate"):
        load_signer("offline").public_key()


def test_ecdsa_raw_and_der_signatures_normalise_to_der(keys):
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from pcrtool.sign.api import ecdsa_signature_to_der
    signer = load_signer(str(keys.ec384))
    der = signer.sign(DATA, HashAlg.SHA384)
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(48, "big") + s.to_bytes(48, "big")
    assert ecdsa_signature_to_der(raw, 384) == der == ecdsa_signature_to_der(der, 384)
    signer.verify(DATA, ecdsa_signature_to_der(raw, 384), HashAlg.SHA384)
    with pytest.raises(SignatureError, match="neither DER nor raw"):
        ecdsa_signature_to_der(raw[:-1], 384)
