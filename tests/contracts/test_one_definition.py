"""One way to do each thing: a public function or class name is defined in one module of
``pcrtool/`` only (the CLI's command functions aside, whose names are the commands).

``KNOWN`` lists today's remaining duplicates, each with the issue that removes it. It may only
shrink: a new duplicate (say a second ``public_key_fingerprint`` or ``parse_signature_lists``)
fails this test.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pcrtool"

# name -> why it is still defined twice (and who removes it)
KNOWN = {
    "public_key_fingerprint": "sign/api vs policy/digests: systemd's pkfp, unified in issue 18",
    "verify_signature": "sign/api vs tpm/policy_session (TPM2_VerifySignature), issue 13",
    "ReleaseManifest": "predict/manifest vs predict/release (a Protocol; predict/ is issue 15's)",
    "Cell": "tpm/policy_validate vs validate_systemd: two validation matrices (issues 13 and 14)",
    "Variable": "eventlog decode result vs predict/secureboot input (predict/ is issue 15's)",
}

# Names that must exist exactly once (the checks below also cover any new duplicate).
MUST_BE_UNIQUE = ["parse_event_log", "parse_signature_lists", "parse_variable_data", "replay",
                  "load_predictions", "certificate_fingerprint"]


def public_definitions() -> dict[str, list[str]]:
    where = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/"):
            continue
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    and not node.name.startswith("_"):
                where[node.name].append(rel)
    return where


# A policy assertion is computed in software (policy/digests.py) and issued to the TPM
# (tpm/policy_session.py) under the same TPM2_Policy* name: a pair by design, not a copy.
COMPUTE_AND_ISSUE = {"policy/digests.py", "tpm/policy_session.py"}


def duplicates(where: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: places for name, places in where.items()
            if len(places) > 1 and name not in KNOWN
            and not (name.startswith("policy_") and set(places) == COMPUTE_AND_ISSUE)}


def test_no_new_duplicate_definitions():
    assert duplicates(public_definitions()) == {}


def test_listed_names_are_defined_once():
    where = public_definitions()
    assert {name: where.get(name, []) for name in MUST_BE_UNIQUE if len(where.get(name, [])) != 1} == {}


def test_contract_sees_a_second_definition():
    where = public_definitions()
    where["parse_signature_lists"] = where["parse_signature_lists"] + ["predict/secureboot.py"]
    assert duplicates(where) == {"parse_signature_lists": ["eventlog/decode/variables.py", "predict/secureboot.py"]}


def test_known_list_only_shrinks():
    """A duplicate that was removed leaves KNOWN too, so it cannot come back unnoticed (e.g. a
    second public_key_fingerprint once issue 18 has unified it)."""
    where = public_definitions()
    stale = sorted(name for name in KNOWN if len(where.get(name, [])) < 2)
    assert stale == [], f"defined once now: remove {stale} from KNOWN in {__file__}"
