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


def test_srk_attributes_are_the_tcg_provisioning_template():
    """The one SRK definition (policy/digests; tpm/policy_session, the salted pinned path, uses it
    as tpm2-pytss' TPMA_OBJECT): fixedTPM|fixedParent|
    sensitiveDataOrigin|userWithAuth|noDA|restricted|decrypt = 0x00030472 (TCG Provisioning
    Guidance §7.5.1, template L-2 with userWithAuth; tpm2_createprimary agrees in
    swtpm-tests/test_srk_pinning.py)."""
    from pcrtool.policy.digests import SRK_ATTRIBUTES
    from pcrtool.tpm import policy_session as S

    assert int(SRK_ATTRIBUTES) == 0x00030472
    assert int(S.SRK_ATTRIBUTES) == 0x00030472 and type(S.SRK_ATTRIBUTES).__module__.startswith("tpm2_pytss")


def test_nv_public_round_trip():
    from pcrtool.policy.digests import tpms_nv_public

    pub = tpms_nv_public(0x01800000, 0x22060016, 8)
    assert pub.hex() == "01800000" "000b" "22060016" "0000" "0008"
    assert m.unmarshal_nv_public(pub) == (0x01800000, 0x0B, 0x22060016, b"", 8)


@pytest.mark.parametrize("curve,size", [("SECP256R1", 32), ("SECP384R1", 48)])
def test_ecdsa_tpmt_signature_writes_r_and_s_at_the_curve_size(curve, size):
    """TPMT_SIGNATURE (Part 2 §11.3.4): sigAlg ECDSA (0x0018), hash SHA256 (0x000b), then r and s
    as TPM2B_ECC_PARAMETER of the enrolled key's curve size (small r/s left-padded)."""
    pytest.importorskip("tpm2_pytss")
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from pcrtool.errors import PolicyRefused
    from pcrtool.tpm.policy_session import tpmt_signature

    public = ec.generate_private_key(getattr(ec, curve)()).public_key()
    got = tpmt_signature(encode_dss_signature(0x0102, 0xA1), public).marshal()
    assert got.hex() == "0018" "000b" + f"{size:04x}" + "00" * (size - 2) + "0102" + f"{size:04x}" + "00" * (size - 1) + "a1"
    with pytest.raises(PolicyRefused, match=f"not an ECDSA signature of a {size * 8}-bit"):  # r one byte too long
        tpmt_signature(encode_dss_signature(1 << (8 * size), 1), public)
    with pytest.raises(PolicyRefused):  # not DER at all (an RSA signature, say)
        tpmt_signature(b"\x01" * 256, public)
