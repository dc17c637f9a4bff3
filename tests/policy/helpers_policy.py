"""Shared helpers for policy tests: deterministic release sets and signing with cryptography."""

from __future__ import annotations

from tests.support import in_ci, need_module, need_tool  # noqa: F401

IN_CI = in_ci()

import hashlib
import json

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def rsa_key(bits: int = 2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def pkcs1_sha256(key):
    return lambda tbs: key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())


def pem_private(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_public(key) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def releases_doc(svns=(1, 2, 3), *, pcrs=(11,), not_allowed=1, tag="r") -> dict:
    """Releases with two measurements per PCR; ``not_allowed`` extra releases marked not allowed."""
    rels = []
    for s in svns:
        meas = [{"pcr": p, "sha256": hashlib.sha256(f"{tag}{s}-{p}-{i}".encode()).hexdigest()}
                for p in pcrs for i in range(2)]
        rels.append({"name": "os", "version": f"1.{s}", "svn": s, "measurements": meas})
    for j in range(not_allowed):
        meas = [{"pcr": p, "sha256": hashlib.sha256(f"{tag}evil{j}-{p}".encode()).hexdigest()} for p in pcrs]
        rels.append({"name": "dev", "version": f"0.{j}", "svn": max(svns), "allowed": False,
                     "measurements": meas})
    return {"pcrs": list(pcrs), "releases": rels}


def releases_json(**kw) -> str:
    return json.dumps(releases_doc(**kw))




