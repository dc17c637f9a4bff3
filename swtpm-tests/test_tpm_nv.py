"""NV indices on a real swtpm: ordinary, counter, bits; Names; reboot/power-loss behaviour;
PolicyNV comparisons on a counter (TPM 2.0 Part 3 §23.9, operations Part 2 §6.8)."""

from __future__ import annotations

import contextlib
import struct

import pytest

from pcrtool.errors import TpmError, TpmPolicyFailed
from pcrtool.model import HashAlg
from pcrtool.policy.digests import COUNTER_ATTRIBUTES, TPM_EO, TPMA_NV, nv_name, policy_nv

COUNTER = 0x01800100
ORDINARY = 0x01800200
BITS = 0x01800300
ORDINARY_ATTRS = (TPMA_NV.OWNERWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHWRITE | TPMA_NV.AUTHREAD
                  | TPMA_NV.NO_DA)


def test_ordinary_index_round_trip_larger_than_one_nv_buffer(tpm):
    pub = tpm.nv_define(ORDINARY, 2048, ORDINARY_ATTRS)
    assert pub.size == 2048 and pub.type_name == "ordinary" and not pub.written
    assert pub.name == nv_name(ORDINARY, ORDINARY_ATTRS, 2048, written=False)
    data = bytes(range(256)) * 8
    tpm.nv_write(ORDINARY, data)  # swtpm's TPM_PT_NV_BUFFER_MAX is 1024: two NV_Write calls
    assert tpm.nv_read(ORDINARY) == data
    assert tpm.nv_read(ORDINARY, 4, 1020, auth="owner") == data[1020:1024]
    pub = tpm.nv_read_public(ORDINARY)
    assert pub.written
    assert pub.name == nv_name(ORDINARY, ORDINARY_ATTRS, 2048, written=True)  # the Name changed
    assert ORDINARY in tpm.nv_indices()
    tpm.nv_undefine(ORDINARY)
    assert ORDINARY not in tpm.nv_indices()


def test_define_twice_and_missing_index_are_decoded(tpm):
    tpm.nv_define(ORDINARY, 8, ORDINARY_ATTRS)
    with pytest.raises(TpmError, match="TPM_RC_NV_DEFINED") as e:
        tpm.nv_define(ORDINARY, 8, ORDINARY_ATTRS)
    assert e.value.hint and "defined already" in e.value.hint
    with pytest.raises(TpmError, match="NV_UNINITIALIZED"):
        tpm.nv_read(ORDINARY)
    with pytest.raises(TpmError, match="TPM_RC_HANDLE"):
        tpm.nv_read(0x01800999)


def test_counter_starts_uninitialized_then_counts_and_refuses_writes(tpm):
    tpm.nv_define(COUNTER, 8, COUNTER_ATTRIBUTES)
    with pytest.raises(TpmError, match="NV_UNINITIALIZED"):
        tpm.nv_read_counter(COUNTER)
    first = tpm.nv_increment(COUNTER, auth="owner")
    assert tpm.nv_increment(COUNTER, auth="owner") == first + 1
    assert tpm.nv_read(COUNTER) == struct.pack(">Q", first + 1)  # big-endian 8 bytes
    with pytest.raises(TpmError, match="TPM_RC_ATTRIBUTES"):
        tpm.nv_write(COUNTER, bytes(8), auth="owner")
    assert tpm.nv_read_public(COUNTER).name == nv_name(COUNTER, COUNTER_ATTRIBUTES, 8, written=True)


def test_counter_survives_reboot_and_power_loss_and_never_goes_down(swtpm, open_tpm_on):
    tpm = open_tpm_on(swtpm)
    tpm.nv_define(COUNTER, 8, COUNTER_ATTRIBUTES)
    value = tpm.nv_increment(COUNTER, auth="owner")
    value = tpm.nv_increment(COUNTER, auth="owner")
    tpm.extend_data(16, b"boot 1")
    swtpm.reboot()
    assert tpm.read_pcrs("sha256:16").get(HashAlg.SHA256, 16) == bytes(32)  # PCRs reset
    assert tpm.nv_read_counter(COUNTER) == value  # NV kept over a clean reboot
    swtpm.reset_unclean()
    assert tpm.nv_read_counter(COUNTER) == value  # non-orderly counter: exact after power loss
    # Deleting and re-defining cannot go back: a new counter starts at the highest value any
    # counter ever had (TPM 2.0 Part 1 §37.2.3.4 / Part 3 §31.3).
    tpm.nv_undefine(COUNTER)
    tpm.nv_define(COUNTER, 8, COUNTER_ATTRIBUTES)
    assert tpm.nv_increment(COUNTER, auth="owner") > value


def test_orderly_counter_jumps_forward_after_power_loss(swtpm, open_tpm_on):
    """Why the floor counter is not ORDERLY: after a power loss it jumps ahead (Part 1 §37.2.3.4)."""
    tpm = open_tpm_on(swtpm)
    tpm.nv_define(COUNTER, 8, COUNTER_ATTRIBUTES | TPMA_NV.ORDERLY)
    value = tpm.nv_increment(COUNTER, auth="owner")
    tpm.nv_increment(COUNTER, auth="owner")
    value += 1
    swtpm.reboot()
    assert tpm.nv_read_counter(COUNTER) == value  # clean shutdown saved it
    tpm.nv_increment(COUNTER, auth="owner")
    swtpm.reset_unclean()
    assert tpm.nv_read_counter(COUNTER) > value + 1


def test_bits_index_ors_bits(tpm):
    attrs = ORDINARY_ATTRS | TPMA_NV.TPM_NT_BITS
    pub = tpm.nv_define(BITS, 8, attrs)
    assert pub.type_name == "bits"
    assert tpm.nv_set_bits(BITS, 0b0101) == 0b0101
    assert tpm.nv_set_bits(BITS, 0b0011) == 0b0111
    assert tpm.nv_set_bits(BITS, 1 << 63) == (1 << 63) | 0b0111


# PolicyNV compares A = NV contents (big-endian) with B = operandB (Part 2 §6.8 TPM_EO).
def _expected(op: TPM_EO, a: int, b: int) -> bool:
    sa = a - (1 << 64) if a >> 63 else a
    sb = b - (1 << 64) if b >> 63 else b
    return {
        TPM_EO.EQ: a == b, TPM_EO.NEQ: a != b,
        TPM_EO.UNSIGNED_GT: a > b, TPM_EO.UNSIGNED_LT: a < b,
        TPM_EO.UNSIGNED_GE: a >= b, TPM_EO.UNSIGNED_LE: a <= b,
        TPM_EO.SIGNED_GT: sa > sb, TPM_EO.SIGNED_LT: sa < sb,
        TPM_EO.SIGNED_GE: sa >= sb, TPM_EO.SIGNED_LE: sa <= sb,
        TPM_EO.BITSET: a & b == b, TPM_EO.BITCLEAR: a & b == 0,
    }[op]


@pytest.fixture(scope="module")
def counter_tpm(swtpm_module):
    """One swtpm with a counter at value c (first increment + 2), shared by the PolicyNV cases;
    PolicyNV runs in the production session (policy_session: salted to the SRK)."""
    from pcrtool.tpm import open_tpm
    from pcrtool.tpm import policy_session as S

    with open_tpm(swtpm_module.tcti) as tpm:
        tpm.nv_define(COUNTER, 8, COUNTER_ATTRIBUTES)
        tpm.nv_increment(COUNTER, auth="owner")
        tpm.nv_increment(COUNTER, auth="owner")
        value = tpm.nv_increment(COUNTER, auth="owner")
        srk = S.create_srk(tpm.esys)
        yield tpm, value, srk
        S.flush(tpm.esys, srk)


def _policy_nv(esys, session, handle, operand: bytes, op: TPM_EO) -> None:
    """TPM2_PolicyNV with any operation, read with the index's own auth, as policy_session's
    policy_nv_le issues it (which covers UNSIGNED_LE only)."""
    from tpm2_pytss.constants import ESYS_TR, TPM2_EO
    from tpm2_pytss.types import TPM2B_OPERAND

    from pcrtool.tpm import policy_session as S

    if op == TPM_EO.UNSIGNED_LE:
        S.policy_nv_le(esys, session, handle, struct.unpack(">Q", operand)[0])
        return
    S.tpm_call("TPM2_PolicyNV", esys.policy_nv, handle, handle, session, TPM2B_OPERAND(operand),
               TPM2_EO(int(op)), 0, session1=ESYS_TR.PASSWORD)


@contextlib.contextmanager
def _session(esys, srk):
    """A production policy session (salted to the SRK) and an ESYS_TR of the counter."""
    from pcrtool.tpm import nv
    from pcrtool.tpm import policy_session as S

    handle = nv.open_nv(esys, COUNTER)
    session = S.start_policy_session(esys, srk)
    try:
        yield session, handle
    finally:
        S.flush(esys, session)
        esys.tr_close(handle)


@pytest.mark.parametrize("op", list(TPM_EO))
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_policy_nv_on_a_counter_compares_as_specified(counter_tpm, op, delta):
    from pcrtool.tpm import nv
    from pcrtool.tpm import policy_session as S

    tpm, c, srk = counter_tpm
    operand = c + delta
    if op in (TPM_EO.BITSET, TPM_EO.BITCLEAR):
        operand = {-1: 0b1, 0: c, 1: 1 << 40}[delta]
    b = struct.pack(">Q", operand)
    with _session(tpm.esys, srk) as (s, h):
        if _expected(op, c, operand):
            _policy_nv(tpm.esys, s, h, b, op)
            # The digest the TPM computed equals the pure maths over the written-state Name.
            name = nv.read_nv_public(tpm.esys, h).name
            assert S.policy_digest(tpm.esys, s) == policy_nv(name, b, op)
        else:
            with pytest.raises(TpmPolicyFailed, match="TPM_RC_POLICY") as e:
                _policy_nv(tpm.esys, s, h, b, op)
            assert e.value.exit_code == 4


def test_policy_nv_signed_comparison_differs_from_unsigned(counter_tpm):
    tpm, c, srk = counter_tpm
    huge = struct.pack(">Q", 1 << 63)  # negative when signed
    with _session(tpm.esys, srk) as (s, h):
        _policy_nv(tpm.esys, s, h, huge, TPM_EO.SIGNED_GT)  # c > -2^63
    with _session(tpm.esys, srk) as (s, h), pytest.raises(TpmPolicyFailed):
        _policy_nv(tpm.esys, s, h, huge, TPM_EO.UNSIGNED_GT)  # c > 2^63 is false
