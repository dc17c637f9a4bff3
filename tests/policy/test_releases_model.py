"""One release model: the policy side replays measurements with the event-log replay's reset
values and reads a predictions file through predict's parser only."""

from __future__ import annotations

import hashlib
import json

from pcrtool.eventlog.replay import initial_pcr_value
from pcrtool.model import HashAlg
from pcrtool.policy.releases_file import parse_releases
from pcrtool.predict.manifest import dump_predictions, parse_manifest, predict_release

D = hashlib.sha256(b"measured").digest()


def _release(pcr: int) -> str:
    return json.dumps({"releases": [{"name": "os", "svn": 1, "measurements": [{"pcr": pcr, "sha256": D.hex()}]}]})


def test_drtm_pcrs_start_at_all_ff_like_the_event_log_replay():
    rels, _ = parse_releases(_release(17))
    assert rels[0].predicted.get(HashAlg.SHA256, 17) == hashlib.sha256(b"\xff" * 32 + D).digest()
    assert initial_pcr_value(HashAlg.SHA256, 17) == b"\xff" * 32


def test_srtm_pcrs_start_at_zero():
    rels, _ = parse_releases(_release(11))
    assert rels[0].predicted.get(HashAlg.SHA256, 11) == hashlib.sha256(bytes(32) + D).digest()


def test_predictions_file_measurements_are_predicts_own_objects():
    manifest = 'name = "os"\nversion = "1"\nsvn = 2\nphases = [":"]\n[uki.sections]\nlinux = "k"\n'
    rel = predict_release(parse_manifest(manifest), {"k": b"kernel"}.__getitem__)
    text = json.dumps(dump_predictions([rel]))
    (policy_rel,), _ = parse_releases(text)
    assert (policy_rel.name, policy_rel.version, policy_rel.svn) == ("os", "1", 2)
    assert policy_rel.predicted == rel.values()
    assert [m.description for m in policy_rel.measurements] == [".linux", ".linux"]
    assert [m.digests[HashAlg.SHA256] for m in policy_rel.measurements][1] == hashlib.sha256(b"kernel").digest()
