"""Property tests: random parameters and sizes against veritysetup; the pure core stays pure."""

from __future__ import annotations

import tempfile
import uuid as uuidlib
from pathlib import Path

from helpers_verity import UUID, data_bytes, veritysetup_format
from hypothesis import HealthCheck, given, settings, strategies as st

from pcrtool.model import HashAlg
from pcrtool.verity.params import HashType, VerityParams
from pcrtool.verity.superblock import build_superblock, parse_superblock
from pcrtool.verity.tree import build_tree
from tests.support import modules_imported

params_st = st.fixed_dictionaries({
    "alg": st.sampled_from(["sha1", "sha256", "sha512"]),
    "fmt": st.sampled_from([0, 1]),
    "dbs": st.sampled_from([512, 1024, 4096]),
    "hbs": st.sampled_from([512, 2048, 4096]),
    "blocks": st.integers(min_value=1, max_value=1200),
    "salt": st.binary(max_size=40),
    "sb": st.booleans(),
})


@settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=params_st)
def test_random_parameters_match_veritysetup(p):
    with tempfile.TemporaryDirectory() as tmp:
        data_path, hash_path = Path(tmp) / "d", Path(tmp) / "h"
        data = data_bytes(p["blocks"] * p["dbs"], seed=p["blocks"])
        data_path.write_bytes(data)
        oracle = veritysetup_format(data_path, hash_path, alg=p["alg"], fmt=p["fmt"], dbs=p["dbs"], hbs=p["hbs"],
                                    salt=p["salt"] or None, superblock=p["sb"])
        params = VerityParams(data_blocks=p["blocks"], hash_alg=HashAlg.from_name(p["alg"]),
                              hash_type=HashType(p["fmt"]), data_block_size=p["dbs"], hash_block_size=p["hbs"],
                              salt=p["salt"], superblock=p["sb"], uuid=uuidlib.UUID(UUID).bytes if p["sb"] else None)
        tree = build_tree(params, data)
        assert tree.root_hash.hex() == oracle.root
        assert tree.hash_area() == oracle.hash_bytes


@settings(deadline=None, max_examples=50)
@given(p=params_st, uuid=st.binary(min_size=16, max_size=16))
def test_superblock_roundtrip(p, uuid):
    params = VerityParams(data_blocks=p["blocks"], hash_alg=HashAlg.from_name(p["alg"]), hash_type=HashType(p["fmt"]),
                          data_block_size=p["dbs"], hash_block_size=p["hbs"], salt=p["salt"], uuid=uuid)
    assert parse_superblock(build_superblock(params)) == params


def test_pure_core_imports_no_adapters():
    """verity/ (except the io adapter) and sign/pkcs7 never import subprocess, typer, rich."""
    code = ("import pcrtool.verity, pcrtool.verity.tree, pcrtool.verity.sig_partition, "
            "pcrtool.verity.roothash_pkcs7, pcrtool.verity.superblock, pcrtool.sign.pkcs7")
    assert modules_imported(code, ("subprocess", "typer", "rich", "tpm2_pytss", "pkcs11")) == []
