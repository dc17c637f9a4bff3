"""Inputs from other tools: predictions files from `pcrtool predict release` feed approvals (every
phase gets an entry); arbitrary bytes never crash the approvals/releases parsers."""

import json

from helpers_policy import pkcs1_sha256, rsa_key
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pcrtool.errors import PcrtoolError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import approvals as A
from pcrtool.policy.releases_file import parse_releases
from pcrtool.predict.manifest import Release, dump_predictions

KEY = rsa_key()


def _values(fill: int) -> PcrValues:
    v = PcrValues()
    v.set(HashAlg.SHA256, 7, bytes([fill]) * 32)
    v.set(HashAlg.SHA256, 11, bytes([fill + 1]) * 32)
    return v


def test_predictions_file_gives_one_approval_per_phase_with_svn():
    rels = [Release("os", "1.0", 4, (7, 11), (HashAlg.SHA256,), {"enter-initrd": _values(1), "": _values(3)}),
            Release("os", "0.9", 2, (7, 11), (HashAlg.SHA256,), {"enter-initrd": _values(5)}, allowed=False)]
    text = json.dumps(dump_predictions(rels))
    releases, _ = parse_releases(text)
    assert [(r.label, r.svn, r.allowed, len(r.all_predicted)) for r in releases] == \
        [("os-0.9", 2, False, 1), ("os-1.0", 4, True, 2)]
    allowed = [r for r in releases if r.allowed]
    targets = [A.ApprovalTarget(v, r.svn) for r in allowed for v in r.all_predicted]
    entries = A.sign_entries(A.build_entries(targets, KEY.public_key()), pkcs1_sha256(KEY))
    assert len(entries) == 2 and {e.svn for e in entries} == {4}
    assert {e.pcrs for e in entries} == {(7, 11)}


@settings(deadline=None, max_examples=150)
@given(st.one_of(st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                              lambda c: st.one_of(st.lists(c, max_size=4),
                                                  st.dictionaries(st.sampled_from(
                                                      ["sha256", "sha1", "pcrs", "pkfp", "pol", "sig", "ref", "tbs",
                                                       "releases", "svn", "measurements", "pcr", "name"]), c,
                                                      max_size=5)), max_leaves=20).map(json.dumps)))
@example('{"releases": [{"measurements": 5}]}')
@example('{"releases": [{"svn": 1.5, "measurements": [{"pcr": 1, "sha256": "%s"}]}]}' % ("00" * 32))
@example('{"releases": [{"predicted": [1], "measurements": []}]}')
@example('{"sha256": [{"pcrs": [1], "pkfp": "", "pol": "%s", "tbs": 5}]}' % ("00" * 32))
@example('{"sha256": [{"pcrs": [1], "pkfp": 5, "pol": "%s", "ref": 7}]}' % ("00" * 32))
def test_parsers_raise_only_pcrtool_errors(text):
    for parse in (A.Approvals.parse, parse_releases):
        try:
            parse(text)
        except PcrtoolError:
            pass
