"""PCR read/extend, banks and capabilities on a real swtpm; cross-checked with tpm2-tools."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from pcrtool.errors import TpmError, UsageError
from pcrtool.model import HashAlg, PcrSelection, PcrValues

ALL_BANKS = [HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512]


def test_fresh_swtpm_has_four_banks_and_reset_values(tpm):
    assert tpm.banks() == ALL_BANKS  # swtpm 0.7 allocates sha1/256/384/512 by default
    values = tpm.read_pcrs(PcrSelection({alg: tuple(range(24)) for alg in ALL_BANKS}))
    assert len(list(values)) == 96  # 12 TPM2_PCR_Read calls of 8
    for v in values:
        # PC Client PTP: PCR 17-22 reset to all ones (DRTM), everything else to zero.
        expected = b"\xff" * v.alg.digest_size if 17 <= v.pcr <= 22 else bytes(v.alg.digest_size)
        assert v.value == expected, v


def test_extend_known_answer_in_two_banks(tpm):
    d256 = hashlib.sha256(b"pcrtool").digest()
    d1 = hashlib.sha1(b"pcrtool").digest()
    tpm.extend(16, {HashAlg.SHA256: d256, HashAlg.SHA1: d1})
    tpm.extend(16, {HashAlg.SHA256: d256})
    got = tpm.read_pcrs(PcrSelection.parse("sha256:16+sha1:16+sha384:16"))
    once = hashlib.sha256(bytes(32) + d256).digest()
    assert got.get(HashAlg.SHA256, 16) == hashlib.sha256(once + d256).digest()
    assert got.get(HashAlg.SHA1, 16) == hashlib.sha1(bytes(20) + d1).digest()
    assert got.get(HashAlg.SHA384, 16) == bytes(48)  # banks left out stay untouched


def test_extend_data_hashes_for_every_bank(tpm):
    tpm.extend_data(23, b"abc")
    got = tpm.read_pcrs(PcrSelection({alg: (23,) for alg in ALL_BANKS}))
    for alg in ALL_BANKS:
        assert got.get(alg, 23) == alg.digest(bytes(alg.digest_size) + alg.digest(b"abc"))


def test_read_accepts_tpm2_tools_syntax(tpm):
    got = tpm.read_pcrs("sha256:0,7+sha1:7")
    assert sorted((v.alg, v.pcr) for v in got) == [(HashAlg.SHA1, 7), (HashAlg.SHA256, 0), (HashAlg.SHA256, 7)]


def test_bad_requests_give_specific_errors(tpm):
    with pytest.raises(UsageError):
        tpm.extend(24, {HashAlg.SHA256: bytes(32)})
    with pytest.raises(UsageError):
        tpm.extend(16, {HashAlg.SHA256: bytes(20)})
    with pytest.raises(TpmError, match="no active sm3_256"):
        tpm.read_pcrs("sm3_256:0")


def test_capabilities(tpm):
    commands = tpm.commands()
    for code in (0x17F, 0x16A, 0x192, 0x149, 0x171, 0x16C):  # PolicyPCR … PolicyCommandCode
        assert code in commands  # 0x192: PolicyAuthorizeNV (TPM 2.0 rev 1.38+)
    algs = tpm.algorithms()
    assert {0x0001, 0x0023, 0x000B, 0x0006} <= set(algs)  # RSA, ECC, SHA256, AES
    info = tpm.info()
    assert info["manufacturer"] == "IBM" and info["family"] == "2.0"
    assert info["spec_revision"] >= 1.38


def test_tpm2_pcrread_agrees_with_pcrtool(swtpm, tpm, tool):
    """Independent tool: tpm2-tools' tpm2_pcrread on the same swtpm reads the same values."""
    tool("tpm2_pcrread")
    for pcr, data in ((0, b"a"), (7, b"b"), (11, b"c"), (16, b"d"), (23, b"e")):
        tpm.extend_data(pcr, data)
    selection = "sha1:all+sha256:all+sha384:all+sha512:all"
    ours = tpm.read_pcrs(selection)
    out = subprocess.run(["tpm2_pcrread", selection], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "TPM2TOOLS_TCTI": swtpm.tcti})
    assert out.returncode == 0, out.stderr
    theirs = PcrValues.parse(out.stdout, source="tpm2_pcrread")
    assert theirs.to_json() == ours.to_json()
    assert len(list(theirs)) == 96
