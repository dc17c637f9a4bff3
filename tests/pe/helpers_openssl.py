"""Oracle: the signed attributes systemd-sbsign builds, produced by OpenSSL's libcrypto itself.

systemd-sbsign (v258, src/sbsign/sbsign.c ``pkcs7_new_with_attributes`` and the
``--prepare-offline-signing`` branch of ``verb_sign``) makes these libcrypto calls on a fresh
SignerInfo and writes ``ASN1_item_i2d(si->auth_attr, PKCS7_ATTR_SIGN)``. systemd-sbsign is not
packaged for bookworm, so the test replays the same public OpenSSL calls through ctypes: the DER
then comes from OpenSSL's encoder (attribute order, time encoding), not from pcrtool.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from ctypes import POINTER, byref, c_char_p, c_int, c_int64, c_void_p

NID_pkcs9_contentType = 50
V_ASN1_OBJECT = 6


def _lib():
    name = ctypes.util.find_library("crypto")
    if not name:
        return None
    lib = ctypes.CDLL(name)
    for fn, res, args in [
        ("PKCS7_SIGNER_INFO_new", c_void_p, []),
        ("PKCS7_SIGNER_INFO_free", None, [c_void_p]),
        ("OPENSSL_sk_new_null", c_void_p, []),
        ("PKCS7_add_attrib_smimecap", c_int, [c_void_p, c_void_p]),
        ("PKCS7_add_attrib_content_type", c_int, [c_void_p, c_void_p]),
        ("ASN1_TIME_set", c_void_p, [c_void_p, c_int64]),
        ("PKCS7_add0_attrib_signing_time", c_int, [c_void_p, c_void_p]),
        ("OBJ_txt2obj", c_void_p, [c_char_p, c_int]),
        ("PKCS7_add_signed_attribute", c_int, [c_void_p, c_int, c_int, c_void_p]),
        ("PKCS7_add1_attrib_digest", c_int, [c_void_p, c_char_p, c_int]),
        ("PKCS7_ATTR_SIGN_it", c_void_p, []),
        ("ASN1_item_i2d", c_int, [c_void_p, POINTER(c_void_p), c_void_p]),
        ("CRYPTO_free", None, [c_void_p, c_char_p, c_int]),
    ]:
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


def sbsign_signed_attributes(message_digest: bytes, epoch: int) -> bytes | None:
    """DER SET of the signed attributes as systemd-sbsign would write them (None: no libcrypto)."""
    lib = _lib()
    if lib is None:
        return None
    si = lib.PKCS7_SIGNER_INFO_new()
    try:
        assert lib.PKCS7_add_attrib_smimecap(si, lib.OPENSSL_sk_new_null()) == 1
        assert lib.PKCS7_add_attrib_content_type(si, None) == 1
        assert lib.PKCS7_add0_attrib_signing_time(si, lib.ASN1_TIME_set(None, epoch)) == 1
        spc = lib.OBJ_txt2obj(b"1.3.6.1.4.1.311.2.1.4", 1)
        assert lib.PKCS7_add_signed_attribute(si, NID_pkcs9_contentType, V_ASN1_OBJECT, spc) == 1
        assert lib.PKCS7_add1_attrib_digest(si, message_digest, len(message_digest)) == 1
        buf = c_void_p()
        # struct pkcs7_signer_info_st { version; issuer_and_serial; digest_alg; auth_attr; ... }
        auth_attr = ctypes.cast(si, POINTER(c_void_p))[3]
        n = lib.ASN1_item_i2d(auth_attr, byref(buf), lib.PKCS7_ATTR_SIGN_it())
        assert n > 0
        out = ctypes.string_at(buf, n)
        lib.CRYPTO_free(buf, b"", 0)
        return out
    finally:
        lib.PKCS7_SIGNER_INFO_free(si)
