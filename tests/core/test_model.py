"""Known-answer tests for the shared value types (tpm2-tools and systemd syntaxes)."""

import hashlib
import json

import pytest

from pcrtool.errors import FormatError, UsageError
from pcrtool.model import HashAlg, PcrSelection, PcrValues, parse_hex


def test_hash_alg_ids_are_tcg_registry_values():
    assert (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512, HashAlg.SM3_256) == (
        0x0004, 0x000B, 0x000C, 0x000D, 0x0012)
    assert [a.digest_size for a in (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)] == [20, 32, 48, 64]


def test_hash_alg_digest_matches_hashlib():
    assert HashAlg.SHA256.digest(b"abc") == hashlib.sha256(b"abc").digest()
    # GB/T 32905-2016 example 1: SM3("abc")
    assert HashAlg.SM3_256.digest(b"abc").hex() == \
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"


@pytest.mark.parametrize("name,alg", [("sha256", HashAlg.SHA256), ("SHA-384", HashAlg.SHA384),
                                      ("sm3_256", HashAlg.SM3_256), ("sm3", HashAlg.SM3_256)])
def test_hash_alg_from_name(name, alg):
    assert HashAlg.from_name(name) is alg


def test_hash_alg_unknown_name_is_usage_error():
    with pytest.raises(UsageError):
        HashAlg.from_name("md5")


def test_pcr_selection_tpm2_tools_syntax():
    sel = PcrSelection.parse("sha256:0,7+sha1:7")
    assert dict(sel.banks) == {HashAlg.SHA256: (0, 7), HashAlg.SHA1: (7,)}
    assert str(sel) == "sha256:0,7+sha1:7"
    assert list(sel.items()) == [(HashAlg.SHA256, 0), (HashAlg.SHA256, 7), (HashAlg.SHA1, 7)]


def test_pcr_selection_all_and_default_bank():
    assert PcrSelection.parse("sha1:all").banks[HashAlg.SHA1] == tuple(range(24))
    assert dict(PcrSelection.parse("11,4").banks) == {HashAlg.SHA256: (4, 11)}


@pytest.mark.parametrize("bad", ["", "sha256:24", "sha256:x", "md5:0"])
def test_pcr_selection_rejects_bad_input(bad):
    with pytest.raises(UsageError):
        PcrSelection.parse(bad)


H = "ab" * 32


def test_pcr_values_systemd_text_round_trip():
    text = f"11:sha256={H}\n4:sha1={'cd' * 20}\n"
    values = PcrValues.parse(text)
    assert values.get(HashAlg.SHA256, 11) == bytes.fromhex(H)
    assert values.get(HashAlg.SHA1, 4) == bytes.fromhex("cd" * 20)
    assert PcrValues.parse(values.to_text()).to_json() == values.to_json()


def test_pcr_values_tpm2_pcrread_yaml():
    text = f"sha1:\nsha256:\n  0 : 0x{H.upper()}\n  7 : 0x{'00' * 32}\n"
    values = PcrValues.parse(text)
    assert values.to_json() == {"sha256": {"0": H, "7": "00" * 32}}


def test_pcr_values_json_shapes():
    nested = PcrValues.parse(json.dumps({"source": "x", "banks": {"sha256": {"0": H}}}))
    quoted = PcrValues.parse(json.dumps({"bank": "sha256", "pcrs": {"0": H}}))
    measure = PcrValues.parse(json.dumps({"sha256": [{"pcr": 0, "hash": H}]}))
    assert nested.to_json() == quoted.to_json() == measure.to_json() == {"sha256": {"0": H}}


@pytest.mark.parametrize("bad", ["11:sha256=abc", "11:sha256=" + "ab" * 31, "{bad json", "{}",
                                 "99:sha256=" + H, "garbage line"])
def test_pcr_values_bad_input_is_format_error(bad):
    with pytest.raises(FormatError):
        PcrValues.parse(bad, source="t")


def test_parse_hex():
    assert parse_hex("0xAbCd") == b"\xab\xcd"
    with pytest.raises(UsageError):
        parse_hex("zz")
    with pytest.raises(UsageError):
        parse_hex("ab", size=2)


def test_pcr_values_go_attestation_shape(corpus):
    """go-attestation's Log.PCRs dump, e.g. the corpus' linux_tpm12 file (values a TPM 1.2 read)."""
    path = corpus / "logs" / "go-attestation" / "linux_tpm12.json.pcrs.json"
    values = PcrValues.parse(path.read_text())
    assert values.get(HashAlg.SHA1, 0).hex() == "83584d3949ac1182fb0497b59b3df7336b8648fa"
    assert len(values.values[HashAlg.SHA1]) == 24
    with pytest.raises(FormatError):
        PcrValues.parse(json.dumps({"pcrs": [{"index": 0, "alg": "sha1"}]}))
