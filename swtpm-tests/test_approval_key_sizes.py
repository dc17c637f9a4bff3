"""The approve-time key check (cli/policy.py _check_key_for_tpm) against swtpm's TPM2_LoadExternal:
what `policy approve` refuses the TPM refuses too, what it signs the TPM loads (issue 18)."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pcrtool.errors import PcrtoolError
from pcrtool.policy.digests import public_key_tpmt


def _load(tpm, public_key):
    """TPM2_LoadExternal as unlock issues it (policy_session.load_external_key)."""
    from pcrtool.tpm import policy_session as S

    handle = S.load_external_key(tpm.esys, public_key_tpmt(public_key))
    name = bytes(tpm.esys.tr_get_name(handle))
    S.flush(tpm.esys, handle)
    return name


@pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 2048),
                                  lambda: rsa.generate_private_key(65537, 3072),
                                  lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: ec.generate_private_key(ec.SECP384R1())],
                         ids=["rsa2048", "rsa3072", "p256", "p384"])
def test_keys_approve_signs_are_loaded_by_the_tpm(tpm, make):
    assert len(_load(tpm, make().public_key())) == 34  # SHA-256 Name: nameAlg + digest


def test_rsa4096_which_approve_refuses_is_refused_by_the_tpm(tpm):
    with pytest.raises(PcrtoolError) as ei:
        _load(tpm, rsa.generate_private_key(65537, 4096).public_key())
    assert getattr(ei.value, "rc", None) is not None and ei.value.rc & 0xFFF == 0x2c4  # TPM_RC_VALUE


def test_ecc_key_with_a_leading_zero_coordinate_loads_and_verifies(tpm):
    """tpm2-pytss' from_pem drops leading zero bytes of x/y (LoadExternal then fails with
    TPM_RC_KEY); pcrtool pads them to the curve size, so such keys load, get the Name the pure
    maths computes, and their signatures verify (policy_session, as unlock issues them)."""
    from cryptography.hazmat.primitives import hashes

    from pcrtool.policy.digests import public_key_name
    from pcrtool.tpm import policy_session as S

    for _ in range(5000):
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.public_key().public_numbers()
        if nums.x < 1 << 248 or nums.y < 1 << 248:
            break
    else:  # pragma: no cover - probability ~1e-17
        pytest.fail("no P-256 key with a short coordinate found")
    handle = S.load_external_key(tpm.esys, public_key_tpmt(key.public_key()))
    try:
        assert bytes(tpm.esys.tr_get_name(handle)) == public_key_name(key.public_key())
        tbs = bytes(32)
        ticket = S.verify_signature(tpm.esys, handle, tbs, key.sign(tbs, ec.ECDSA(hashes.SHA256())),
                                 key.public_key())
        assert len(bytes(ticket.digest)) == 64
        other = ec.generate_private_key(ec.SECP256R1())
        with pytest.raises(PcrtoolError, match="TPM_RC_SIGNATURE"):  # deny side: another key's signature
            S.verify_signature(tpm.esys, handle, tbs, other.sign(tbs, ec.ECDSA(hashes.SHA256())),
                                 key.public_key())
    finally:
        S.flush(tpm.esys, handle)
