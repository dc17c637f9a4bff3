"""A PCR measured while unlock runs (a boot phase, an add-on): unlock starts again from the new
values, and only a state that is approved unlocks. On real swtpm, signed and allowlist modes.

The measurement is injected right before TPM2_PolicyPCR of an attempt, i.e. after pcrtool read the
PCRs and chose the approval for them: the worst moment.
"""

import hashlib

import pytest

from tests.policy.helpers_policy import need_module, pkcs1_sha256, rsa_key  # noqa: E402

KEY = rsa_key()
PHASE_A = hashlib.sha256(b"phase: enter-initrd").digest()
PHASE_B = hashlib.sha256(b"phase: leave-initrd").digest()
ROGUE = hashlib.sha256(b"something nobody approved").digest()


def _values(state: bytes):
    from pcrtool.model import HashAlg, PcrValues
    v = PcrValues()
    v.set(HashAlg.SHA256, 11, state)
    return v


def _state(*digests: bytes) -> bytes:
    state = bytes(32)
    for d in digests:
        state = hashlib.sha256(state + d).digest()
    return state


def _boot(sw, *digests):
    from pcrtool.tpm import policy_session as S
    sw.reboot()
    with S.open_esys(sw.tcti) as esys:
        for d in digests:
            S.extend_pcrs(esys, _values(d))


@pytest.fixture
def measure_during_policy_pcr(monkeypatch):
    """Extend PCR 11 with the next digest of a list each time TPM2_PolicyPCR is about to run."""
    from pcrtool.tpm import policy_session as S

    real = S.policy_pcr
    calls = []

    def install(*digests):
        pending = list(digests)

        def hooked(esys, session, bank, pcrs):
            calls.append(1)
            if pending:
                S.extend_pcrs(esys, _values(pending.pop(0)))
            return real(esys, session, bank, pcrs)
        monkeypatch.setattr(S, "policy_pcr", hooked)
        return calls
    return install


def _signed(sw):
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.tpm import enroll as E

    targets = [A.ApprovalTarget(_values(_state(PHASE_A)), 1), A.ApprovalTarget(_values(_state(PHASE_A, PHASE_B)), 1)]
    apps = A.Approvals(tuple(A.sign_entries(A.build_entries(targets, KEY.public_key()), pkcs1_sha256(KEY))))
    e = E.enroll(sw.tcti, KEY.public_key(), floor=1, window=1, bank=HashAlg.SHA256, pcrs=[11], secret=b"r" * 32)
    return e, apps


def test_signed_unlock_follows_an_approved_phase_measured_mid_unlock(swtpm, measure_during_policy_pcr):
    need_module("tpm2_pytss")
    from pcrtool.tpm import enroll as E

    e, apps = _signed(swtpm)
    _boot(swtpm, PHASE_A)
    calls = measure_during_policy_pcr(PHASE_B)
    result = E.unlock(swtpm.tcti, e, apps)
    assert result.secret == b"r" * 32
    assert len(calls) == 2  # the first attempt failed in the TPM, the second used the new values
    assert result.commands.count("policy_authorize") == 2 and result.commands.count("unseal") == 1


def test_signed_unlock_refuses_an_unapproved_state_measured_mid_unlock(swtpm, measure_during_policy_pcr):
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused
    from pcrtool.tpm import enroll as E

    e, apps = _signed(swtpm)
    _boot(swtpm, PHASE_A)
    calls = measure_during_policy_pcr(ROGUE)
    with pytest.raises(PolicyRefused, match="no approval matches the live PCRs") as ei:
        E.unlock(swtpm.tcti, e, apps)
    assert ei.value.exit_code == 4 and len(calls) == 1  # the retry saw no approval: no second session


def test_unlock_gives_up_when_the_pcrs_keep_moving(swtpm, measure_during_policy_pcr):
    """Approved states A, A+A, A+A+A, …; every attempt starts in one and is overtaken by the next
    measurement: unlock stops after PCR_RETRIES attempts with the TPM's refusal."""
    need_module("tpm2_pytss")
    from pcrtool.errors import TpmPolicyFailed
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.tpm import enroll as E

    targets = [A.ApprovalTarget(_values(_state(*[PHASE_A] * n)), 1) for n in range(1, 6)]
    apps = A.Approvals(tuple(A.sign_entries(A.build_entries(targets, KEY.public_key()), pkcs1_sha256(KEY))))
    e = E.enroll(swtpm.tcti, KEY.public_key(), floor=1, window=1, bank=HashAlg.SHA256, pcrs=[11], secret=b"r" * 32)
    _boot(swtpm, PHASE_A)
    calls = measure_during_policy_pcr(*[PHASE_A] * 10)
    with pytest.raises(TpmPolicyFailed):
        E.unlock(swtpm.tcti, e, apps)
    assert len(calls) == E.PCR_RETRIES == 3


def test_allowlist_unlock_follows_an_approved_phase_measured_mid_unlock(swtpm, measure_during_policy_pcr):
    need_module("tpm2_pytss")
    from pcrtool.errors import PolicyRefused
    from pcrtool.model import HashAlg
    from pcrtool.tpm import policy_allowlist as P

    # A and B in different PolicyOR groups (8 branches a group): the path chosen for A cannot
    # satisfy B, so the first attempt fails in the TPM. (In one group, PolicyOR itself accepts B.)
    others = [(f"other{n}", _values(_state(hashlib.sha256(b"%d" % n).digest()))) for n in range(8)]
    e = P.enroll_allowlist(swtpm.tcti, [("a", _values(_state(PHASE_A))), *others,
                                        ("b", _values(_state(PHASE_A, PHASE_B)))],
                           bank=HashAlg.SHA256, pcrs=[11], secret=b"l" * 32)
    _boot(swtpm, PHASE_A)
    calls = measure_during_policy_pcr(PHASE_B)
    assert P.unlock_allowlist(swtpm.tcti, e).secret == b"l" * 32
    assert len(calls) == 2
    _boot(swtpm, PHASE_A)
    calls = measure_during_policy_pcr(ROGUE)
    with pytest.raises(PolicyRefused, match="match no allowlisted release"):
        P.unlock_allowlist(swtpm.tcti, e)
