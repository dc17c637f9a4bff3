"""Known-answer tests for policy digests: vectors from systemd's src/test/test-tpm2.c."""

import hashlib

import pytest

from pcrtool.errors import UsageError
from pcrtool.model import HashAlg, PcrValues
from pcrtool.policy import digests as d

# test-tpm2.c test_rsa_template / test_ecc_template: RESTRICTED|DECRYPT|FIXEDTPM|FIXEDPARENT|
# SENSITIVEDATAORIGIN|USERWITHAUTH, AES-128-CFB, scheme NULL, exponent 0 (struct default)
_TEMPLATE_ATTRS = 0x00030072
_AES128CFB = (0x0006, 128, 0x0043)
_RSA_N = bytes.fromhex(
    "9ec7341c52093ac40a1965a5df10432513c539adcf905e30577ab6ebc88ffe53cd08cef12ed9bec6125432f4fada3629"
    "b8b96d31b8f507aa35029188fe396da823fcb236027f7fbb01b0da3d87be7f999390449ced604bdf7e26c48657cc0671"
    "000f1147da195c3861c96642e54427cb7a11572e07567ec3fd6316978abc4bd92b27bb0a0e4958e599804eeb41d682b3"
    "b7fc1f960209f80a4fb8a1b64abfd96bf5d554e73cdd6ad1c8becb4fcf5e8f0c3e621d210e5e2f308f6520ad9a966779"
    "231b99f06c5989e5a23a9415c8808ab89ce81117632e2f8461cd4428bded40979236aeadafe8de3f51660a45e1dbc876"
    "94e6a36360201cca3ff9e7263e712727")


def _rsa_template(n=_RSA_N):
    return d.tpmt_public_rsa(n, 0, attributes=_TEMPLATE_ATTRS, symmetric=_AES128CFB)


def _ecc_template(x, y):
    return d.tpmt_public_ecc(d.TPM_ECC_NIST_P256, bytes.fromhex(x), bytes.fromhex(y),
                             attributes=_TEMPLATE_ATTRS, symmetric=_AES128CFB)


def test_rsa_name_matches_systemd_calculate_pubkey_name():
    assert d.name_of(_rsa_template()).hex() == \
        "000be78f74a470dd92e979ca067cdb2293a35f075e8560b436bd2ccea5da21486a07"


def test_ecc_name_matches_systemd_calculate_pubkey_name():
    t = _ecc_template("238e02ee4fd5598add6b502429f1815418515e4b0d6551c8e816b38cb15451d1",
                      "70c2d491769775ec43ccd5a571c429233e9d30cf0f486c2e01acd6cb32ba93b6")
    assert d.name_of(t).hex() == "000b302787187ba19c82011c987bd2dcdbb652b3a543ccc5cb0b49c33d4caae604a6"


def test_policy_authorize_matches_systemd_vectors():
    assert d.policy_authorize(d.name_of(_rsa_template())).hex() == \
        "95213a3784eaab04f427bc7e8851c2f1df0903be8e42428ec25dcefd907baff1"
    t = _ecc_template("423a89da6f0998f510489ab9682706e762031ef8f9faef2a185eff67065a187e",
                      "996f73291670cef9e303d6cd9fa19ddf2c9c1fb1e283324ca9acca07c405c8d0")
    assert d.policy_authorize(d.name_of(t)).hex() == \
        "2a5b705e83f949c27ac4d2e79e54fb5fb0a60f0b37bbd54a0ee1022ba00d3628"


def test_policy_auth_value_matches_systemd_vectors():
    once = d.policy_auth_value()
    assert once.hex() == "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e"
    assert d.policy_auth_value(once).hex() == \
        "759ebd5ed65100e0b4aa2d04b4b789c2672d92ecc9cdda4b5fa16a303132e008"


_PCR_VALUES = [
    "2124793cbbe60c3a8637d3b84a5d054e87c351e1469a285acc04755e8b204dec",
    "bf7592f18adcfdc549fc0b94939f5069a24697f9cff4a0dca29014767b97559d",
    "4b00cff9dee3a364979b2dc241b34568a8ad49fcf2713df259e47dff8875feed",
    "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    "368f85b3013041dfe203faaa364f00b07c5da7b1e5f1dbf2efb06fa6b9bd92de",
    "c97c40369691c8e4aa78fb3a52655cd193b780a838b8e23f5f476576919db5e5",
    "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
    "aa1154c9e0a774854ccbed4c8ce7e9b906b3d700a1a8db1772d0341a62dbe51b",
    "cfde439a2c06af3479ca6bdc60429b90553d65300c5cfcc40004a08c6b5ad81a",
    "9c2bac22ef5ec84fcdb71c3ebf776cba1247e5da980e5ee08e45666a2edf0b8b",
    "9885873f4d7348199ad286f8f2476d4f866940950f6f9fb9f945ed352dbdcbd2",
    "42400ab950d21aa79d12cc4fdef67d1087a39ad64900619831c0974dbae54e44",
    "767d064382e56ca1ad3bdcc6bc596112e6c2008b593d3570d24c2bfa64c4628c",
    "30c16133175959408c9745d8dafadef5daf4b39cb2be04df0d60089bd46d3cc4",
    "e3991b7ddd47be7e92726a832d6874c5349b52b789fa0db8b558c69fea29574e",
    "852dae3ecb992bdeb13d6002fefeeffdd90feca8b378d56681ef2c885d0e5137",
]


def _values(pcrs):
    v = PcrValues()
    for p in pcrs:
        v.set(HashAlg.SHA256, p, bytes.fromhex(_PCR_VALUES[p]))
    return v


def test_policy_pcr_matches_systemd_vectors():
    v = _values([4, 7, 8])
    first = d.policy_pcr(v)
    assert first.hex() == "76532a0e16f7e6bf6b02918c11f75d99d729fab0cc81d0df2c4284a2c4fe6e05"
    assert d.policy_pcr(v, first).hex() == "97e64bcabb64c1fa4b726528644926c8029f5b4458b0575c98c04fe225629a0b"
    v16 = _values(range(16))
    first = d.policy_pcr(v16)
    assert first.hex() == "22be4f1674f792d6345cea9427701068f0e8d9f42755dcc0e927e545a68f9c13"
    assert d.policy_pcr(v16, first).hex() == "7481fd1b116078eb3ac2456e4ad542c9b46b9b8eb891335771ca8e7c8f8e4415"


# systemd TEST(tpm2b_public_from_openssl_pkey): PEM → (fingerprint, name) with literal exponents
_PEM_65537 = bytes.fromhex(
    "2d2d2d2d2d424547494e205055424c4943204b45592d2d2d2d2d0a4d494942496a414e42676b71686b6947397730424151454641414f43415138414d49494243674b4341514541795639434950652f505852337a436f63787045300a6a575262546c3568585844436b472f584b79374b6d2f4439584942334b734f5a31436a5937375571372f674359363170697838697552756a73413464503165380a593445336c68556d374a332b6473766b626f4b64553243626d52494c2f6675627771694c4d587a41673342575278747234547545443533527a373634554650640a307a70304b68775231496230444c67772f344e67566f314146763378784b4d6478774d45683567676b73733038326332706c354a504e32587677426f744e6b4d0a5471526c745a4a35355244436170696e7153334577376675646c4e735851357746766c7432377a7637344b585165616d704c59433037584f6761304c676c536b0a79754774586b6a50542f735542544a705374615769674d5a6f714b7479563463515a58436b4a52684459614c47587673504233687a766d5671636e6b47654e540a65774944415141420a2d2d2d2d2d454e44205055424c4943204b45592d2d2d2d2d0a")
_PEM_65541 = bytes.fromhex(
    "2d2d2d2d2d424547494e205055424c4943204b45592d2d2d2d2d0a4d494942496a414e42676b71686b6947397730424151454641414f43415138414d49494243674b434151454179566c7551664b75565171596a5a71436a657a760a364e4a6f58654c736f702f72765375666330773769544d4f73566741557462515452505451725874397065537a4370524467634378656b6a544144577279304b0a6d59786a7a3634776c6a7030463959383068636a6b6b4b3759414d333054664c4648656c2b377574427370777142467a6e2b385a6659567353434b397354706f0a316c61376e5347514e7451576f36444a366c525a336a676d6d584f61544654416145304a432b7046584273564471736d46326438362f314e51714a755a5154520a575852636954704e58357649792f37766b6c5a6a685569526c78764e594f4e3070636476534a37364e74496e447a3048506f775a38705a454f4d2f4a454f59780a617a4c4a6a644936446b355279593578325a7949375074566a3057537242524f4d696f2b674c6556457a43343456336438315a38445138564e334c69625130330a70514944415141460a2d2d2d2d2d454e44205055424c4943204b45592d2d2d2d2d0a")
_PEM_EC = bytes.fromhex(
    "2d2d2d2d2d424547494e205055424c4943204b45592d2d2d2d2d0a4d466b77457759484b6f5a497a6a3043415159494b6f5a497a6a30444151634451674145726a6e4575424c73496c3972687068777976584e50686a346a426e500a44586e794a304b395579724e6764365335413532542b6f5376746b436a365a726c34685847337741515558706f426c532b7448717452714c35513d3d0a2d2d2d2d2d454e44205055424c4943204b45592d2d2d2d2d0a")


@pytest.mark.parametrize("pem,fp,name", [
    (_PEM_65537, "d9186d13a7fd5b3644cee05448f49ad3574e82a2942ff93cf89598d36cca78a9",
     "000be1bd75c7976e7a30e9e82223b81a9eff0d42c30618e588db592ed5da94455e81"),
    (_PEM_65541, "c8ca80a687d5972e1d961aaa2cfde2ff2e7a20d85e3ea0382804e70e013d65af",
     "000beb8974d36d8cf58fdc87460dda00319e10c94c1b9f222ac9ce29d1c4776246cc"),
    (_PEM_EC, "cd3373293b62a52b48c12100e80ea9bfd806266ce76893a5ec31cb128052d97c",
     "000b5c127e4dbaf8fb7bac641e8db25a84a48db876ca7ee3bd317ae1a4554ff72f17"),
])
def test_pem_key_fingerprint_and_name_match_systemd(pem, fp, name):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    key = load_pem_public_key(pem)
    assert d.public_key_fingerprint(key).hex() == fp
    assert d.public_key_name(key).hex() == name


def test_policy_or_rejects_one_or_nine_branches():
    with pytest.raises(UsageError):
        d.policy_or([bytes(32)])
    with pytest.raises(UsageError):
        d.policy_or([bytes(32)] * 9)


def test_policy_or_is_reset_then_hash_of_concatenation():
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    want = hashlib.sha256(bytes(32) + bytes.fromhex("00000171") + a + b).digest()
    assert d.policy_or([a, b]) == want


@pytest.mark.parametrize("n,depth", [(1, 0), (2, 1), (8, 1), (9, 2), (64, 2), (65, 3), (1000, 4)])
def test_or_tree_every_leaf_replays_to_root(n, depth):
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    tree = d.PolicyOrTree.build(leaves)
    assert len(tree.levels) - 1 == depth
    for i in range(n):
        assert tree.replay(i) == tree.root
        assert all(2 <= len(g) <= 8 for g in tree.path(i))


def test_or_tree_of_one_leaf_is_the_leaf():
    leaf = hashlib.sha256(b"x").digest()
    assert d.PolicyOrTree.build([leaf]).root == leaf


def test_nv_name_sets_written_bit_and_differs_from_unwritten():
    written = d.nv_name(0x01500000, d.COUNTER_ATTRIBUTES, 8)
    unwritten = d.nv_name(0x01500000, d.COUNTER_ATTRIBUTES, 8, written=False)
    assert written != unwritten
    marshalled = (bytes.fromhex("01500000000b") + (int(d.COUNTER_ATTRIBUTES) | 0x20000000).to_bytes(4, "big")
                  + b"\x00\x00\x00\x08")
    assert written == b"\x00\x0b" + hashlib.sha256(marshalled).digest()


def test_policy_nv_layout():
    name = d.nv_name(0x01500000, d.COUNTER_ATTRIBUTES, 8)
    operand = (5).to_bytes(8, "big")
    args = hashlib.sha256(operand + b"\x00\x00" + b"\x00\x09").digest()
    want = hashlib.sha256(bytes(32) + bytes.fromhex("00000149") + args + name).digest()
    assert d.policy_nv(name, operand, d.TPM_EO.UNSIGNED_LE) == want
