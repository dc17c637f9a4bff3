"""PCR 11 prediction: systemd's own vectors and a differential test against systemd-measure."""

from __future__ import annotations

import json
import random
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from helpers_uki import need_tool
from pcrtool.errors import UsageError
from pcrtool.model import HashAlg
from pcrtool.predict.uki import (
    DEFAULT_PHASES, UkiSection, normalize_phases, predict_pcr11, select_sections,
)

SYSTEMD_MEASURE = "/usr/lib/systemd/systemd-measure"
ALL = (HashAlg.SHA1, HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
VECTOR = {".linux": b"HALLO\n", ".initrd": b"foobar\n"}


def test_systemd_vector_phase_colon_sha256_and_sha1():
    # test/units/TEST-70-TPM2.measure.sh (systemd), phase ":" = UKI only.
    pred = predict_pcr11(VECTOR, ALL, [":"])
    assert pred.value(":", HashAlg.SHA256).hex() == \
        "37b48bd0b222394dbe3cceff2fca4660c4b0a90ae9369ec90b42f14489989c13"
    assert pred.value("", HashAlg.SHA1).hex() == "5177e4ad69db92192c10e5f80402bf81bfec8a81"


def test_systemd_vector_phase_foo():
    pred = predict_pcr11(VECTOR, [HashAlg.SHA256], ["foo"])
    assert pred.value("foo", HashAlg.SHA256).hex() == \
        "21c49c1242042649e09c156546fd7d425ccc3c67359f840507b30be4e0f6f699"


def test_measure_json_shape_omits_empty_phase():
    pred = predict_pcr11(VECTOR, [HashAlg.SHA256], [":", "foo"])
    assert pred.to_measure_json() == {"sha256": [
        {"pcr": 11, "hash": "37b48bd0b222394dbe3cceff2fca4660c4b0a90ae9369ec90b42f14489989c13"},
        {"phase": "foo", "pcr": 11,
         "hash": "21c49c1242042649e09c156546fd7d425ccc3c67359f840507b30be4e0f6f699"}]}
    assert pred.to_text() == \
        "11:sha256=37b48bd0b222394dbe3cceff2fca4660c4b0a90ae9369ec90b42f14489989c13\n" \
        "11:sha256=21c49c1242042649e09c156546fd7d425ccc3c67359f840507b30be4e0f6f699\n"


def test_pcrsig_and_unknown_sections_are_never_measured():
    a = predict_pcr11(VECTOR, [HashAlg.SHA256], [":"])
    b = predict_pcr11(VECTOR | {".pcrsig": b"{}", ".text": b"code", ".reloc": b"x"}, [HashAlg.SHA256], [":"])
    assert a.values == b.values


def test_empty_section_counts_as_absent():
    a = predict_pcr11(VECTOR, [HashAlg.SHA256], [":"])
    b = predict_pcr11(VECTOR | {".cmdline": b""}, [HashAlg.SHA256], [":"])
    assert a.values == b.values


def test_phase_paths_sorted_deduplicated_and_empty_words_dropped():
    assert normalize_phases(["b", "a", "a", "::a::"]) == ("a", "b")
    assert normalize_phases(None) == DEFAULT_PHASES
    with pytest.raises(UsageError):
        normalize_phases(["bad\nword"])


def _measure(tmp_path, sections, banks, phases):
    args = [SYSTEMD_MEASURE, "calculate", "--json=short"]
    for name, content in sections.items():
        f = tmp_path / name.lstrip(".")
        f.write_bytes(content)
        args.append(f"--{name.lstrip('.')}={f}")
    args += [f"--bank={b.bank_name}" for b in banks]
    args += [f"--phase={p}" for p in phases]
    proc = subprocess.run(args, capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


# systemd 252's systemd-measure knows these sections (later ones arrived in v253+).
MEASURE_252_SECTIONS = (".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey")


def test_differential_against_systemd_measure_random_sections(tmp_path):
    need_tool(SYSTEMD_MEASURE)
    rng = random.Random(7)
    for round_ in range(12):
        chosen = [".linux"] + [n for n in MEASURE_252_SECTIONS[1:] if rng.random() < 0.6]
        sections = {n: rng.randbytes(rng.choice([1, 5, 4096, 70000])) for n in chosen}
        phases = rng.sample(["", "enter-initrd", "enter-initrd:leave-initrd", "sysinit:ready", "foo:bar:baz"],
                            k=rng.randint(1, 3))
        oracle = _measure(tmp_path, sections, ALL, [p or ":" for p in phases])
        ours = predict_pcr11(sections, ALL, phases).to_measure_json()
        assert ours == oracle, f"round {round_}: {sorted(sections)} {phases}"


def test_differential_default_phases_text_output(tmp_path):
    need_tool(SYSTEMD_MEASURE)
    sections = {".linux": b"kernel" * 100, ".osrel": b"ID=test\n", ".cmdline": b"quiet"}
    args = [SYSTEMD_MEASURE, "calculate"]
    for name, content in sections.items():
        f = tmp_path / name.lstrip(".")
        f.write_bytes(content)
        args.append(f"--{name.lstrip('.')}={f}")
    oracle = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    assert predict_pcr11(sections, ALL).to_text() == oracle


@settings(deadline=None, max_examples=25)
@given(linux=st.binary(min_size=1, max_size=300), cmdline=st.binary(max_size=50))
def test_order_of_dict_does_not_matter(linux, cmdline):
    a = predict_pcr11({".linux": linux, ".cmdline": cmdline}, [HashAlg.SHA256], [":"])
    b = predict_pcr11({".cmdline": cmdline, ".linux": linux}, [HashAlg.SHA256], [":"])
    assert a.values == b.values


def _s(name, data):
    return UkiSection(name, data)


def test_multi_profile_base_overridden_by_selected_profile():
    secs = [_s(".linux", b"K"), _s(".cmdline", b"base"), _s(".osrel", b"OS"),
            _s(".profile", b"ID=one"), _s(".cmdline", b"one"),
            _s(".profile", b"ID=two"), _s(".cmdline", b"two"), _s(".initrd", b"I2")]
    assert select_sections(secs) == {".linux": b"K", ".cmdline": b"one", ".osrel": b"OS",
                                     ".profile": b"ID=one"}
    assert select_sections(secs, profile=1) == {".linux": b"K", ".cmdline": b"two", ".osrel": b"OS",
                                                ".profile": b"ID=two", ".initrd": b"I2"}
    with pytest.raises(UsageError):
        select_sections(secs, profile=2)


def test_single_profile_uki_and_first_section_of_a_name_wins():
    secs = [_s(".linux", b"K"), _s(".linux", b"other"), _s(".pcrsig", b"sig")]
    assert select_sections(secs) == {".linux": b"K"}
    with pytest.raises(UsageError):
        select_sections(secs, profile=1)


def test_dtbauto_measured_only_for_the_matching_candidate():
    secs = [_s(".linux", b"K"), _s(".dtbauto", b"A"), _s(".dtbauto", b"B")]
    assert select_sections(secs) == {".linux": b"K"}
    assert select_sections(secs, hardware_match={".dtbauto": 1}) == {".linux": b"K", ".dtbauto": b"B"}


# --- real UKI files --------------------------------------------------------------------------

from helpers_uki import build_uki  # noqa: E402
from pcrtool.predict.uki import measured_sections, sections_from_uki, stub_version, uki_sections  # noqa: E402


def test_uki_file_matches_systemd_measure_over_section_files(tmp_path):
    need_tool(SYSTEMD_MEASURE)
    content = {".osrel": b"ID=test\nVERSION_ID=1\n", ".cmdline": b"console=ttyS0 rw",
               ".linux": random.Random(3).randbytes(5000), ".initrd": b"initrd" * 999}
    # file order differs from canonical order on purpose
    uki = build_uki(tmp_path / "b", [(".cmdline", content[".cmdline"]), (".linux", content[".linux"]),
                                     (".osrel", content[".osrel"]), (".initrd", content[".initrd"])])
    sections = sections_from_uki(uki)
    assert sections == content
    oracle = _measure(tmp_path, content, ALL, [":", "enter-initrd"])
    assert predict_pcr11(sections, ALL, [":", "enter-initrd"]).to_measure_json() == oracle


def test_stub_version_decides_which_sections_are_measured(tmp_path):
    uki = build_uki(tmp_path, [(".linux", b"K"), (".uname", b"6.1.0")], drop=())
    assert stub_version(uki_sections(uki)) == 252          # Debian 12's stub, from .sdmagic
    assert set(sections_from_uki(uki)) == {".linux"}       # 252 knows neither .uname nor .sbat
    newest = sections_from_uki(uki, stub=None)
    assert set(newest) == {".linux", ".uname", ".sbat"} and newest[".sbat"].startswith(b"sbat,")
    assert set(sections_from_uki(uki, stub=253)) == {".linux", ".uname", ".sbat"}
    assert measured_sections(256)[-1] == ".pcrpkey" and ".ucode" in measured_sections(256)


def test_multi_profile_uki_file(tmp_path):
    uki = build_uki(tmp_path, [(".linux", b"K"), (".cmdline", b"base"), (".profile", b"ID=a"),
                               (".profile", b"ID=b"), (".cmdline", b"b")])
    assert [s.name for s in uki_sections(uki)][-5:] == [".linux", ".cmdline", ".profile", ".profile", ".cmdline"]
    assert sections_from_uki(uki, stub=None) == {".linux": b"K", ".cmdline": b"base", ".profile": b"ID=a"}
    assert sections_from_uki(uki, profile=1, stub=257) == {".linux": b"K", ".cmdline": b"b", ".profile": b"ID=b"}


def test_pe_without_linux_section_is_rejected(tmp_path):
    from pcrtool.errors import FormatError

    with pytest.raises(FormatError, match="no .linux section"):
        sections_from_uki(STUB_BYTES())


def STUB_BYTES() -> bytes:  # noqa: N802
    from helpers_uki import STUB

    if not STUB.is_file():
        pytest.skip("systemd-boot-efi stub missing")
    return STUB.read_bytes()
