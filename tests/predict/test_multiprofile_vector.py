"""Multi-profile UKI built by ukify 257 (Debian trixie), with the PCR 11 values ukify printed for
each profile via systemd-measure 257 (tests/vectors/predict/multiprofile-ukify257.*).

pcrtool parses the UKI itself, selects each profile as systemd-stub does (base sections, then the
profile's sections overriding them, its .profile measured; the 257 stub also measures .uname and
.sbat) and must reproduce every value, in all four banks and systemd-measure's four phases.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from pcrtool.model import HashAlg
from pcrtool.predict.uki import predict_pcr11, sections_from_uki, stub_version, uki_sections

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "predict"
UKI = gzip.decompress((VECTORS / "multiprofile-ukify257.efi.gz").read_bytes())
EXPECTED = json.loads((VECTORS / "multiprofile-ukify257.json").read_text())["profiles"]
BANKS = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)


def test_vector_layout():
    assert stub_version(uki_sections(UKI)) == 257
    assert [s.name for s in uki_sections(UKI)].count(".profile") == len(EXPECTED) == 3


@pytest.mark.parametrize("profile", range(3))
def test_each_profile_matches_ukify(profile):
    pred = predict_pcr11(sections_from_uki(UKI, profile=profile), BANKS)
    for phase, banks in EXPECTED[profile].items():
        for bank, value in banks.items():
            assert pred.value(phase, HashAlg.from_name(bank)).hex() == value, (profile, phase, bank)


def test_default_profile_is_profile_0():
    assert sections_from_uki(UKI) == sections_from_uki(UKI, profile=0)
