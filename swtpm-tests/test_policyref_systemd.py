"""pcrtool's scoped policyRef stays systemd-compatible, against the newest systemd (sid chroot):

- ``systemd-measure sign --policyref=REF`` writes the same entry (pcrs, pkfp, pol, ref, sig) that
  ``pcrtool policy approve --product`` writes for that svn and scope, and pcrtool reads the svn
  and scope back from systemd's file;
- ``systemd-cryptenroll --tpm2-public-key-policyref=REF`` seals a LUKS2 token to
  PolicyAuthorize(K, SHA256(REF)) (its tpm2-policy-hash is pcrtool's digest), and pcrtool's
  approval unseals systemd's blob through the TPM (swtpm), under systemd's persistent SRK.
"""

import base64
import hashlib
import json
import os

from signed_policy import unseal_signed  # noqa: E402
from tests.policy.helpers_policy import need_module, pem_private, pem_public, pkcs1_sha256, rsa_key  # noqa: E402

KEY = rsa_key()
REF = "pcrtool-svn=3,product=acme-os,bank=sha256,pcrs=11"


def test_systemd_measure_sign_writes_pcrtools_scoped_entry(sid_systemd, tmp_path):
    from pcrtool.model import HashAlg, PcrValues
    from pcrtool.policy import approvals as A
    from pcrtool.policy.scope import Scope

    (tmp_path / "linux").write_bytes(os.urandom(4096))
    (tmp_path / "osrel").write_bytes(b"ID=test\n")
    (tmp_path / "k.pem").write_bytes(pem_private(KEY))
    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    common = [f"--linux={tmp_path / 'linux'}", f"--osrel={tmp_path / 'osrel'}", "--bank=sha256",
              "--phase=enter-initrd", "--json=short"]
    calc = json.loads(sid_systemd.run("systemd-measure", "calculate", *common).stdout)
    theirs = json.loads(sid_systemd.run("systemd-measure", "sign", *common, f"--private-key={tmp_path / 'k.pem'}",
                                        f"--public-key={tmp_path / 'pub.pem'}", f"--policyref={REF}").stdout)
    values = PcrValues()
    values.set(HashAlg.SHA256, 11, bytes.fromhex(calc["sha256"][0]["hash"]))
    mine = A.sign_entries(A.build_entries([A.ApprovalTarget(values, 3)], KEY.public_key(), product="acme-os"),
                          pkcs1_sha256(KEY))
    want = {k: v for k, v in mine[0].to_json().items() if k != "tbs"}
    assert theirs["sha256"] == [want]
    assert want["ref"] == REF
    parsed = A.Approvals.parse(json.dumps(theirs)).entries[0]
    assert parsed.svn == 3 and parsed.scope == Scope(HashAlg.SHA256, (11,), "acme-os")


def test_systemd_cryptenroll_policyref_slot_unseals_with_pcrtools_approval(sid_systemd, swtpm, tmp_path):
    need_module("tpm2_pytss")
    from pcrtool.model import HashAlg
    from pcrtool.policy import approvals as A
    from pcrtool.policy import digests as D
    from pcrtool.policy.releases_file import Measurement
    from pcrtool.tpm import policy_session as S
    from pcrtool.tpm.policy_validate import _measure

    (tmp_path / "pub.pem").write_bytes(pem_public(KEY))
    (tmp_path / "pw").write_bytes(b"pw")
    img = tmp_path / "luks.img"
    with open(img, "wb") as f:
        f.truncate(20 * 1024 * 1024)
    sid_systemd.run("cryptsetup", "luksFormat", "--type", "luks2", "--batch-mode", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", img, tmp_path / "pw")
    _measure(swtpm, [Measurement(11, {HashAlg.SHA256: hashlib.sha256(b"uki").digest()})], HashAlg.SHA256)
    sid_systemd.run("systemd-cryptenroll", img, f"--tpm2-device={swtpm.tcti}", f"--tpm2-public-key={tmp_path / 'pub.pem'}",
                    "--tpm2-public-key-pcrs=11", f"--tpm2-public-key-policyref={REF}", "--tpm2-pcrs=",
                    env={"PASSWORD": "pw"})
    meta = json.loads(sid_systemd.run("cryptsetup", "luksDump", "--dump-json-metadata", img).stdout)
    token = next(t for t in meta["tokens"].values() if t["type"] == "systemd-tpm2")
    key_name = D.public_key_name(KEY.public_key())
    assert token["tpm2_pubkey_ref"] == REF
    assert token["tpm2-policy-hash"] == D.policy_authorize(key_name, hashlib.sha256(REF.encode()).digest()).hex()

    with S.open_esys(swtpm.tcti) as esys:
        live = S.read_pcrs(esys, HashAlg.SHA256, [11])
    entry = A.sign_entries(A.build_entries([A.ApprovalTarget(live, 3)], KEY.public_key(), product="acme-os"),
                           pkcs1_sha256(KEY))[0]
    assert entry.ref == REF
    other = A.sign_entries(A.build_entries([A.ApprovalTarget(live, 3)], KEY.public_key(), product="other"),
                           pkcs1_sha256(KEY))[0]
    blob = base64.b64decode(token["tpm2-blob"])
    srk_record = base64.b64decode(token["tpm2_srk"])

    def unseal(e):
        with S.open_esys(swtpm.tcti) as esys:   # under systemd's persistent SRK
            return unseal_signed(esys, esys.tr_deserialize(srk_record), blob, e, KEY.public_key(), e.policy_ref)

    secret = unseal(entry)
    assert len(secret) > 0
    # the slot's passphrase is base64 of the unsealed secret: cryptsetup accepts it
    (tmp_path / "slot.key").write_bytes(base64.b64encode(secret))
    sid_systemd.run("cryptsetup", "open", "--test-passphrase", "--key-file", tmp_path / "slot.key", img)
    # an approval for another product (another ref) is refused by the TPM
    import pytest

    from pcrtool.errors import TpmPolicyFailed
    with pytest.raises(TpmPolicyFailed):
        unseal(other)
