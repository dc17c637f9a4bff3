"""Issue 13's findings, reproduced as an attacker would: only the CLI, file edits and tpm2-tools
on swtpm. Each finding is a test that states the property that must hold; the ones today's code
breaks are ``xfail(strict=True)`` and lose the mark when the redesign fixes them (an XPASS fails
the run). Next to them, the cells the issue lists as held correctly stay as plain regression tests.

A deny must come with the TPM's own verdict where the TPM can enforce the property (a ``TPM_RC``
in the one-line error), and must never print the secret.
"""

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.policy.helpers_policy import need_module, need_tool, pem_private, pem_public, rsa_key  # noqa: E402
from tpm_proxy import boot, excuse_lockout, lockout_counter, pcrtool, tpm2_tools  # noqa: E402
from pcrtool.tpm.enroll_modes import load_any_enrollment  # noqa: E402

KEY = rsa_key()
SECRET = bytes(range(0x30, 0x50))
TPM_SAID_NO = re.compile(r"TPM_RC[_ ]")


def release_doc(svns, *, pcrs=(11,), tag="r", name="os") -> dict:
    """Releases whose events carry sha1 and sha256 digests (two events per PCR)."""
    rels = []
    for s in svns:
        meas = []
        for p in pcrs:
            for i in range(2):
                seed = f"{tag}{s}-{p}-{i}".encode()
                meas.append({"pcr": p, "sha1": hashlib.sha1(seed).hexdigest(),
                             "sha256": hashlib.sha256(seed).hexdigest()})
        rels.append({"name": name, "version": f"1.{s}", "svn": s, "measurements": meas})
    return {"pcrs": list(pcrs), "releases": rels}


def extend_only(sw, measurements, banks) -> None:
    """Reboot and extend only the given banks (an attacker with root extends what he likes)."""
    sw.reboot()
    for m in measurements:
        tpm2_tools(sw, "tpm2_pcrextend", f"{m['pcr']}:" + ",".join(f"{b}={m[b]}" for b in banks))


def sign_entry(pol_hex: str, ref: str, key=KEY) -> dict:
    """A correctly signed .pcrsig entry for any ref string (what a careless signer could emit)."""
    tbs = bytes.fromhex(pol_hex) + hashlib.sha256(ref.encode()).digest()
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    return {"ref": ref, "tbs": tbs.hex(), "sig": base64.b64encode(sig).decode(), "pol": pol_hex}


class Device:
    """A swtpm, a work dir with the signing key, releases and approvals; the CLI drives it."""

    def __init__(self, sw, d: Path) -> None:
        need_module("tpm2_pytss")
        need_tool("tpm2_pcrextend")
        self.sw, self.d = sw, d
        (d / "k.pem").write_bytes(pem_private(KEY))
        (d / "pub.pem").write_bytes(pem_public(KEY))
        (d / "secret.bin").write_bytes(SECRET)
        self.t = ("--tcti", sw.tcti)

    def releases(self, name: str, doc: dict) -> Path:
        path = self.d / f"{name}.json"
        path.write_text(json.dumps(doc))
        return path

    def approve(self, rel: Path, out: str, *extra) -> Path:
        pcrtool("policy", "approve", "-r", rel, "-k", self.d / "k.pem", "-o", self.d / out, *extra, check=0)
        return self.d / out

    def enroll(self, out: str, *args, check=0):
        return pcrtool("tpm", "enroll", *self.t, "--secret", self.d / "secret.bin", "-o", self.d / out, *args,
                       check=check)

    def unlock(self, enrollment, *args):
        return pcrtool("tpm", "unlock", *self.t, "-e", self.d / enrollment, *args)

    def status(self, enrollment, *args) -> dict:
        return json.loads(pcrtool("tpm", "status", *self.t, "-e", self.d / enrollment, *args, "--json=short",
                                  check=0).stdout)

    def enroll_in_mode(self, mode: str, doc: dict) -> tuple[Path, str]:
        """Approve ``doc`` (a.pcrsig) and enrol e.json in ``mode``: "signed" (the key, floor 1) or
        "allowlist-direct" (the releases). Returns the approvals and the floor counter's index."""
        rel = self.releases("rel", doc)
        apps = self.approve(rel, "a.pcrsig")
        if mode == "signed":
            self.enroll("e.json", "-k", self.d / "pub.pem", "--floor", 1)
        else:
            self.enroll("e.json", "--allowlist", rel)
        st = self.status("e.json")
        return apps, st.get("counter_index") or st["index"]

    def unlock_in_mode(self, mode: str, apps: Path):
        """Unlock e.json as ``enroll_in_mode`` enrolled it (approvals only in signed mode)."""
        return self.unlock("e.json", "-a", apps) if mode == "signed" else self.unlock("e.json")

    def edit(self, src: str, dst: str, **changes) -> str:
        doc = json.loads((self.d / src).read_text())
        doc.update(changes)
        (self.d / dst).write_text(json.dumps(doc))
        (self.d / dst).chmod(0o600)
        return dst


def unlocked(p) -> bool:
    if p.returncode == 0:
        assert base64.b64decode(p.stdout) == SECRET
        return True
    assert base64.b64encode(SECRET).decode() not in p.stdout and SECRET.hex() not in p.stdout
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    return False


def assert_tpm_denied(p) -> None:
    assert not unlocked(p), "unlocked"
    assert p.returncode == 4, p.stderr
    assert TPM_SAID_NO.search(p.stderr), f"the deny did not come from the TPM: {p.stderr}"


@pytest.fixture
def dev(swtpm, tmp_path):
    return Device(swtpm, tmp_path)


# --- finding 2: enrollment.json fields the TPM never checks ----------------------------------------

def test_f2_edited_pcrs_do_not_unlock_with_a_narrower_approval(dev):
    doc = release_doc((1, 2, 3), pcrs=(7, 11))
    rel = dev.releases("rel", doc)
    full = dev.approve(rel, "a.pcrsig", "--pcrs", "7,11")
    only11 = dev.approve(rel, "a11.pcrsig", "--pcrs", "11")   # signed once, for other devices
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--pcrs", "7,11", "--floor", 1)
    boot(dev.sw, doc, 0)
    assert unlocked(dev.unlock("e.json", "-a", full))                  # allow: the enrolled scope
    attack = [m for m in doc["releases"][0]["measurements"] if m["pcr"] == 11] + \
             [{"pcr": 7, "sha1": "11" * 20, "sha256": "11" * 32}]     # another Secure Boot state
    extend_only(dev.sw, attack, ("sha1", "sha256"))
    assert not unlocked(dev.unlock("e.json", "-a", full))
    dev.edit("e.json", "edited.json", pcrs=[11])
    assert_tpm_denied(dev.unlock("edited.json", "-a", only11))


def test_f2_edited_bank_does_not_unlock_with_another_banks_approval(dev):
    doc = release_doc((1, 2))
    rel = dev.releases("rel", doc)
    apps = dev.approve(rel, "a.pcrsig", "--banks", "sha1,sha256")
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1)       # sha256, PCR 11
    boot(dev.sw, doc, 0)
    assert unlocked(dev.unlock("e.json", "-a", apps))
    extend_only(dev.sw, doc["releases"][0]["measurements"], ("sha1",))   # sha256 bank stays unknown
    assert not unlocked(dev.unlock("e.json", "-a", apps))
    dev.edit("e.json", "edited.json", bank="sha1")
    assert_tpm_denied(dev.unlock("edited.json", "-a", apps))


def test_f2_empty_srk_name_is_refused(dev):
    doc = release_doc((1,))
    apps = dev.approve(dev.releases("rel", doc), "a.pcrsig")
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1)
    boot(dev.sw, doc, 0)
    assert unlocked(dev.unlock("e.json", "-a", apps))
    dev.edit("e.json", "nopin.json", srk_name="")
    p = dev.unlock("nopin.json", "-a", apps)
    assert not unlocked(p) and p.returncode in (1, 4), p.stderr


def test_held_edited_allowlist_pcrs_are_denied_by_the_tpm(dev):
    """Allowlist mode binds the PCR selection in every PolicyOR leaf: an edit cannot widen it."""
    doc = release_doc((1, 2), pcrs=(7, 11))
    rel = dev.releases("rel", doc)
    dev.enroll("e.json", "--allowlist", rel)
    boot(dev.sw, doc, 0)
    assert unlocked(dev.unlock("e.json"))
    extend_only(dev.sw, [m for m in doc["releases"][0]["measurements"] if m["pcr"] == 11], ("sha256",))
    assert not unlocked(dev.unlock("e.json"))
    dev.edit("e.json", "edited.json", pcrs=[11])
    assert not unlocked(dev.unlock("edited.json"))


# --- finding 3: re-enrolment forgets the floor ------------------------------------------------------

def test_f3_reenrolment_never_lowers_the_floor(dev):
    doc = release_doc((1, 2, 3))
    apps = dev.approve(dev.releases("rel", doc), "a.pcrsig")
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1, "--window", 4)
    boot(dev.sw, doc, 2)
    pcrtool("tpm", "advance-floor", *dev.t, "-e", dev.d / "e.json", "--to", 3, "-a", apps, check=0)
    dev.enroll("again.json", "-k", dev.d / "pub.pem", check=None)   # a routine re-enrolment, defaults
    if not (dev.d / "again.json").exists():
        return   # refused without an explicit override: nothing revived
    boot(dev.sw, doc, 2)
    assert unlocked(dev.unlock("again.json", "-a", apps))
    boot(dev.sw, doc, 0)   # svn 1, revoked by the advance
    assert_tpm_denied(dev.unlock("again.json", "-a", apps))


# --- finding 4: approvals are not scoped ------------------------------------------------------------

def test_f4_another_products_approval_does_not_unlock(dev):
    doc_a = release_doc((1, 2, 3), tag="A", name="product-a")
    doc_b = release_doc((4,), tag="B", name="product-b")
    # the product each approval is for is named when it is signed and when the device enrols
    apps_a = dev.approve(dev.releases("a", doc_a), "a.pcrsig", "--product", "product-a")
    apps_b = dev.approve(dev.releases("b", doc_b), "b.pcrsig", "--product", "product-b")   # same key
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1, "--window", 8, "--product", "product-a")
    boot(dev.sw, doc_a, 2)
    pcrtool("tpm", "advance-floor", *dev.t, "-e", dev.d / "e.json", "--to", 3, "-a", apps_a, check=0)
    assert unlocked(dev.unlock("e.json", "-a", apps_a))
    boot(dev.sw, doc_b, 0)   # product B's signed image, svn 4, booted on device A
    p = dev.unlock("e.json", "-a", apps_b)
    assert not unlocked(p) and p.returncode == 4, p.stderr   # pcrtool sees no approval in scope
    # the TPM's verdict: product B's approval presented through the TPM anyway
    from pcrtool.policy.approvals import Approvals
    from pcrtool.tpm import enroll as E
    from pcrtool.errors import TpmPolicyFailed
    e = load_any_enrollment(dev.d / "e.json")
    b = Approvals.parse(apps_b.read_text())
    with pytest.raises(TpmPolicyFailed, match="TPM_RC"):
        E.unlock(dev.sw.tcti, e, b, attempt_anyway=True, entry_override=b.entries[0])


# --- finding 5: advance-floor trusts unsigned entries -----------------------------------------------

def test_f5_forged_entry_does_not_move_the_floor(dev):
    doc = release_doc((1, 2, 3))
    apps = dev.approve(dev.releases("rel", doc), "a.pcrsig")
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1, "--window", 4)
    forged = json.loads(apps.read_text())
    ref3 = "pcrtool-svn=3,bank=sha256,pcrs=11"
    entry = dict(next(e for e in forged["sha256"] if e.get("ref") == ref3))
    entry["ref"] = ref3.replace("svn=3", "svn=4")       # the signature stays svn 3's
    entry["tbs"] = entry["pol"] + hashlib.sha256(entry["ref"].encode()).hexdigest()
    forged["sha256"].append(entry)
    (dev.d / "forged.pcrsig").write_text(json.dumps(forged))
    boot(dev.sw, doc, 2)   # svn 3
    p = pcrtool("tpm", "advance-floor", *dev.t, "-e", dev.d / "e.json", "--to", 4, "-a", dev.d / "forged.pcrsig")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert dev.status("e.json")["floor"] == 1
    assert unlocked(dev.unlock("e.json", "-a", apps))


# --- finding 7: anyone can move the counter -----------------------------------------------------------

@pytest.mark.parametrize("mode", ["signed", "allowlist-direct"])
def test_f7_the_counter_cannot_be_incremented_without_authorization(dev, mode):
    doc = release_doc((1, 2))
    apps, index = dev.enroll_in_mode(mode, doc)
    p = tpm2_tools(dev.sw, "tpm2_nvincrement", "-C", index, index, check=False)
    assert p.returncode != 0, "an empty-password NV_Increment of the floor counter succeeded"
    boot(dev.sw, doc, 0)
    assert unlocked(dev.unlock_in_mode(mode, apps))


# --- finding 8: authorizing to a swapped index trips dictionary-attack lockout ---------------------------

@pytest.mark.parametrize("mode", ["signed", "allowlist-direct"])
def test_f8_an_index_with_a_password_at_the_counter_handle_costs_no_lockout(dev, mode):
    doc = release_doc((1, 2))
    apps, index = dev.enroll_in_mode(mode, doc)
    excuse_lockout(dev.sw)   # this test asserts on the counter itself
    tpm2_tools(dev.sw, "tpm2_nvundefine", "-C", "o", index)
    tpm2_tools(dev.sw, "tpm2_nvdefine", index, "-C", "o", "-s", "8", "-p", "squatter",
               "-a", "ownerread|ownerwrite|authread|authwrite|nt=counter")
    tpm2_tools(dev.sw, "tpm2_nvincrement", "-C", index, "-P", "squatter", index)
    assert lockout_counter(dev.sw.socket_path) == 0
    boot(dev.sw, doc, 0)
    p = dev.unlock_in_mode(mode, apps)
    assert not unlocked(p)
    if mode == "signed":
        pcrtool("tpm", "advance-floor", *dev.t, "-e", dev.d / "e.json", "--to", 2, "--force")
        pcrtool("tpm", "status", *dev.t, "-e", dev.d / "e.json")
    assert lockout_counter(dev.sw.socket_path) == 0


# --- held: counter swapped for an index without a password, NV edits -------------------------------------

@pytest.mark.parametrize("mode", ["signed", "allowlist-direct"])
def test_held_counter_redefined_by_the_owner_revives_nothing(dev, mode):
    doc = release_doc((1, 2))
    apps, index = dev.enroll_in_mode(mode, doc)
    tpm2_tools(dev.sw, "tpm2_nvundefine", "-C", "o", index)
    tpm2_tools(dev.sw, "tpm2_nvdefine", index, "-C", "o", "-s", "8",
               "-a", "ownerread|ownerwrite|authread|authwrite|no_da|nt=counter")
    tpm2_tools(dev.sw, "tpm2_nvincrement", "-C", index, index)
    boot(dev.sw, doc, 0)
    p = dev.unlock_in_mode(mode, apps)
    assert not unlocked(p) and p.returncode in (1, 4), p.stderr


# --- finding 9: sloppy input ----------------------------------------------------------------------------

def test_f9_a_ref_with_a_trailing_newline_is_a_format_error(dev):
    doc = release_doc((1,))
    apps = dev.approve(dev.releases("rel", doc), "a.pcrsig")
    dev.enroll("e.json", "-k", dev.d / "pub.pem", "--floor", 1)
    good = json.loads(apps.read_text())
    entry = dict(good["sha256"][0])
    entry.update(sign_entry(entry["pol"], "pcrtool-svn=1\n"))
    (dev.d / "nl.pcrsig").write_text(json.dumps({"sha256": [entry]}))
    boot(dev.sw, doc, 0)
    p = dev.unlock("e.json", "-a", dev.d / "nl.pcrsig")
    assert p.returncode == 1 and "ref" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.fixture(scope="module")
def enrolled(swtpm_module, tmp_path_factory):
    """One signed and one allowlist enrollment with approvals, for the file-edit cells."""
    d = tmp_path_factory.mktemp("sloppy")
    dev = Device(swtpm_module, d)
    doc = release_doc((1, 2))
    rel = dev.releases("rel", doc)
    dev.approve(rel, "a.pcrsig")
    dev.enroll("signed.json", "-k", d / "pub.pem", "--floor", 1)
    dev.enroll("allow.json", "--allowlist", rel)
    boot(swtpm_module, doc, 0)
    return dev


DEEP = "[" * 100_000 + "]" * 100_000
HUGE = "@HUGE@"   # written as a 5,000-digit JSON number


def _set(field, value):
    return lambda doc: {**doc, field: value}


def _raw(text):
    return lambda doc: text


ENROLLMENT_EDITS = {
    "deep nesting": _raw(DEEP),
    "huge integer c0": _set("c0", HUGE),
    "counter index 2**32": _set("counter_index", 2 ** 32),
    "negative counter index": _set("counter_index", -1),
    "PCR 99": _set("pcrs", [99]),
    "bad base64 blob": _set("blob", "!!not base64!!"),
    "bad PEM key": _set("public_key_pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
    "bad hex key_name": _set("key_name", "zz"),
    "bad hex counter_name": _set("counter_name", "xyz"),
    "window 100,000": _set("window", 100_000),
    "pcrs not a list": _set("pcrs", {"a": 1}),
    "blob of another type": _set("blob", 5),
}
APPROVALS_EDITS = {
    "deep nesting": _raw(DEEP),
    "huge integer pcr": lambda doc: {"sha256": [{**doc["sha256"][0], "pcrs": [HUGE]}]},
    "PCR 99": lambda doc: {"sha256": [{**doc["sha256"][0], "pcrs": [99]}]},
    "bad base64 sig": lambda doc: {"sha256": [{**doc["sha256"][0], "sig": "%%%"}]},
    "bad hex pol": lambda doc: {"sha256": [{**doc["sha256"][0], "pol": "not hex"}]},
    "entry is a list": _raw('{"sha256": [[1, 2]]}'),
    "svn ref beyond 2**32": lambda doc: {"sha256": [{**doc["sha256"][0], "ref": f"pcrtool-svn={2 ** 40}",
                                                      "tbs": None}]},
}
# Before the fix these ended in "internal error": enrollment deep nesting, huge integer c0, counter
# index 2**32, negative counter index, PCR 99, bad base64 blob, bad PEM key, bad hex counter_name,
# window 100,000; approvals deep nesting, huge integer pcr, svn ref beyond 2**32.


def _cells():
    for kind, edits in (("enrollment", ENROLLMENT_EDITS), ("approvals", APPROVALS_EDITS)):
        for name in edits:
            yield pytest.param(kind, name, id=f"{kind}: {name}")


@pytest.mark.parametrize("kind,name", list(_cells()))
def test_f9_malformed_device_file_is_a_one_line_format_error(enrolled, kind, name):
    dev = enrolled
    src = "signed.json" if kind == "enrollment" else "a.pcrsig"
    edits = ENROLLMENT_EDITS if kind == "enrollment" else APPROVALS_EDITS
    out = edits[name](json.loads((dev.d / src).read_text()))
    target = dev.d / f"edited-{abs(hash((kind, name)))}.json"
    text = out if isinstance(out, str) else json.dumps(out).replace('"@HUGE@"', "9" * 5000)
    target.write_text(text)
    target.chmod(0o600)
    args = ("-e", target, "-a", dev.d / "a.pcrsig") if kind == "enrollment" else \
        ("-e", dev.d / "signed.json", "-a", target)
    p = pcrtool("tpm", "unlock", *dev.t, *args, timeout=60)
    lines = [x for x in p.stderr.strip().splitlines() if "warning" not in x]
    assert p.returncode == 1 and len(lines) == 1, p.stderr[-2000:]
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr and p.stdout == ""


def test_f3_reenrolment_from_the_previous_file_keeps_the_floor_and_a_lower_one_is_named(dev):
    """The routine re-enrolment (--previous) keeps floor 3; going lower needs --revive naming the
    svns that unlock again, and only those do."""
    doc = release_doc((1, 2, 3))
    apps = dev.approve(dev.releases("rel", doc), "a.pcrsig")
    pub = dev.d / "pub.pem"
    dev.enroll("e.json", "-k", pub, "--floor", 1, "--window", 4)
    boot(dev.sw, doc, 2)
    pcrtool("tpm", "advance-floor", *dev.t, "-e", dev.d / "e.json", "--to", 3, "-a", apps, check=0)
    dev.enroll("kept.json", "-k", pub, "--previous", dev.d / "e.json", "-a", apps)
    assert unlocked(dev.unlock("kept.json", "-a", apps))
    boot(dev.sw, doc, 1)   # svn 2: below the kept floor
    p = dev.unlock("kept.json", "-a", apps)
    assert not unlocked(p) and p.returncode == 4, p.stderr
    boot(dev.sw, doc, 2)
    p = dev.enroll("lower.json", "-k", pub, "--previous", dev.d / "e.json", "-a", apps, "--floor", 2, check=None)
    assert p.returncode != 0 and not (dev.d / "lower.json").exists(), "a lower floor without --revive"
    p = dev.enroll("wrong.json", "-k", pub, "--previous", dev.d / "e.json", "-a", apps, "--floor", 2,
                   "--revive", "1-2", check=None)
    assert p.returncode != 0 and not (dev.d / "wrong.json").exists(), "--revive naming other svns"
    dev.enroll("lower.json", "-k", pub, "--previous", dev.d / "e.json", "-a", apps, "--floor", 2, "--revive", "2-2")
    boot(dev.sw, doc, 1)
    assert unlocked(dev.unlock("lower.json", "-a", apps))     # revived by name
    boot(dev.sw, doc, 0)
    p = dev.unlock("lower.json", "-a", apps)
    assert not unlocked(p) and p.returncode == 4, p.stderr
