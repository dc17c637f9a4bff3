"""Marshalling of the structures pcrtool sends (TPM 2.0 Part 2), checked byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg, PcrSelection
from pcrtool.tpm import marshal as m


def test_pcr_selection_bytes():
    # count=2; sha256 (0x000b), sizeofSelect 3, PCR 0 and 7 -> 0x81; sha1 PCR 23 -> third byte 0x80
    got = m.marshal_pcr_selection({HashAlg.SHA256: (0, 7), HashAlg.SHA1: (23,)})
    assert got.hex() == "00000002" "000b" "03" "810000" "0004" "03" "000080"
    assert m.unmarshal_pcr_selection(got) == [(0x0B, [0, 7]), (0x04, [23])]


def test_pcr_selection_rejects_out_of_range():
    with pytest.raises(UsageError):
        m.marshal_pcr_selection({HashAlg.SHA256: (24,)})


def test_chunks_hold_at_most_eight_pcrs_over_all_banks():
    sel = PcrSelection.parse("sha256:all+sha1:0,1,2")
    chunks = m.chunk_selection(sel)
    assert [sum(len(p) for p in c.values()) for c in chunks] == [8, 8, 8, 3]
    assert chunks[2] == {HashAlg.SHA256: tuple(range(16, 24))}
    assert chunks[3] == {HashAlg.SHA1: (0, 1, 2)}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from([HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384]),
                       st.sets(st.integers(0, 23), min_size=1), min_size=1))
def test_chunking_keeps_every_pcr_once(banks):
    sel = PcrSelection({alg: tuple(sorted(p)) for alg, p in banks.items()})
    seen = [(alg, pcr) for chunk in m.chunk_selection(sel) for alg, pcrs in chunk.items() for pcr in pcrs]
    assert sorted(seen) == sorted(sel.items())
    for chunk in m.chunk_selection(sel):
        assert 0 < sum(map(len, chunk.values())) <= 8
        assert m.unmarshal_pcr_selection(m.marshal_pcr_selection(chunk)) == \
            [(int(a), list(p)) for a, p in chunk.items()]


def test_digest_values():
    got = m.marshal_digest_values({HashAlg.SHA1: b"\x11" * 20})
    assert got == bytes.fromhex("00000001" "0004") + b"\x11" * 20
    with pytest.raises(UsageError):
        m.marshal_digest_values({HashAlg.SHA256: b"\x11" * 20})


def test_srk_template_ecc_is_the_tcg_provisioning_template():
    t = m.srk_template("ecc")
    # type ECC, nameAlg SHA256, attributes 0x00030472 (fixedTPM|fixedParent|sensitiveDataOrigin|
    # userWithAuth|noDA|restricted|decrypt), empty authPolicy, AES-128-CFB, scheme NULL,
    # curve NIST P-256, kdf NULL, unique x/y = 32 zero bytes each
    assert t.hex() == ("0023" "000b" "00030472" "0000" "0006" "0080" "0043" "0010" "0003" "0010"
                       "0020" + "00" * 32 + "0020" + "00" * 32)
    r = m.srk_template("rsa", noda=False)
    assert r[:8].hex() == "0001000b00030072"
    assert r[8:24].hex() == "0000" "0006" "0080" "0043" "0010" "0800" "00000000"
    assert r[24:] == b"\x01\x00" + bytes(256)


def test_sealed_object_template():
    policy = bytes(range(32))
    t = m.sealed_object_template(policy)
    # keyedhash, sha256, fixedTPM|fixedParent|noDA, authPolicy, scheme NULL, empty unique
    assert t.hex() == "0008" "000b" "00000412" "0020" + policy.hex() + "0010" "0000"
    with pytest.raises(UsageError):
        m.sealed_object_template(bytes(20))


def test_signature_and_nv_public():
    assert m.marshal_signature(m.TPM_ALG_RSASSA, HashAlg.SHA256, b"\x01\x02").hex() == "0014000b00020102"
    assert m.marshal_signature(m.TPM_ALG_ECDSA, HashAlg.SHA256, (b"\x01", b"\x02")).hex() == "0018000b0001010001" "02"
    pub = m.marshal_nv_public(0x01800000, 0x22060016, 8)
    assert pub.hex() == "01800000" "000b" "22060016" "0000" "0008"
    assert m.unmarshal_nv_public(pub) == (0x01800000, 0x0B, 0x22060016, b"", 8)
