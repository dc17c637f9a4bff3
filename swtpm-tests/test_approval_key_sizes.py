"""The approve-time key check (cli/policy.py _check_key_for_tpm) against swtpm's TPM2_LoadExternal:
what `policy approve` refuses the TPM refuses too, what it signs the TPM loads (issue 18)."""

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pcrtool.errors import PcrtoolError


@pytest.mark.parametrize("make", [lambda: rsa.generate_private_key(65537, 2048),
                                  lambda: rsa.generate_private_key(65537, 3072),
                                  lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: ec.generate_private_key(ec.SECP384R1())],
                         ids=["rsa2048", "rsa3072", "p256", "p384"])
def test_keys_approve_signs_are_loaded_by_the_tpm(tpm, make):
    handle = tpm.load_external_public(make().public_key())
    assert len(handle.name) == 34  # SHA-256 Name: nameAlg + digest


def test_rsa4096_which_approve_refuses_is_refused_by_the_tpm(tpm):
    with pytest.raises(PcrtoolError) as ei:
        tpm.load_external_public(rsa.generate_private_key(65537, 4096).public_key())
    assert getattr(ei.value, "rc", None) is not None and ei.value.rc & 0xFFF == 0x2c4  # TPM_RC_VALUE
