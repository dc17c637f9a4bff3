"""`pcrtool key`: generate test/demo keys, show what a key reference names, fingerprints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Generate and inspect signing keys.")

_KEY_HELP = "Key reference: file:PATH (or PATH), a pkcs11: URI; also a public key or certificate file."


@app.command()
def generate(
    path: Path = typer.Argument(..., help="Private key file to create (PEM, mode 0600, never overwritten)."),
    key_type: str = typer.Option("rsa2048", "--type", "-t",
                                 help="rsa2048, rsa3072, rsa4096, ec256 or ec384."),
    cert: Optional[str] = typer.Option(None, "--cert", metavar="CN",
                                       help="Also write a self-signed certificate with this common name."),
    cert_output: Optional[Path] = typer.Option(None, "--cert-output", metavar="PATH",
                                               help="Certificate path (default: key path with .crt)."),
    days: int = typer.Option(3650, "--days", help="Certificate validity in days."),
    public_output: Optional[Path] = typer.Option(None, "--public-output", metavar="PATH",
                                                 help="Also write the public key (PEM SubjectPublicKeyInfo)."),
    encrypt: bool = typer.Option(False, "--encrypt",
                                 help="Encrypt the key with the passphrase from $PCRTOOL_KEY_PASSPHRASE_FILE "
                                      "or $PCRTOOL_KEY_PASSPHRASE."),
) -> None:
    """Generate a key for tests and demos (release keys belong in an HSM)."""
    from pcrtool import fileio, render
    from pcrtool.errors import UsageError
    from pcrtool.sign import keygen
    from pcrtool.sign.api import public_key_fingerprint
    from pcrtool.sign.keyfile import _passphrase

    if key_type not in keygen.KEY_TYPES:
        raise UsageError(f"unknown key type {key_type!r}", hint=f"use one of {', '.join(keygen.KEY_TYPES)}")
    if cert_output is not None and not cert:
        raise UsageError("--cert-output needs --cert CN")
    outputs = [path]
    if cert:
        cert_output = cert_output or path.with_suffix(".crt")
        outputs.append(cert_output)
    if public_output:
        outputs.append(public_output)
    if len(set(map(str, outputs))) != len(outputs):
        raise UsageError("the output paths must differ")
    for p in outputs:  # refuse before writing anything: no partial set of outputs
        fileio.check_new_output(p)
    passphrase = None
    if encrypt:
        passphrase = _passphrase({})
        if not passphrase:
            raise UsageError("--encrypt needs $PCRTOOL_KEY_PASSPHRASE_FILE or $PCRTOOL_KEY_PASSPHRASE")
    key = keygen.generate_private_key(key_type)
    certificate = keygen.self_signed_certificate(key, cert, days=days) if cert else None
    fileio.write_private(path, keygen.private_key_pem(key, passphrase))
    try:
        if certificate is not None:
            fileio.write_atomic(cert_output, keygen.certificate_pem(certificate), overwrite=False,
                                what="certificate")
        if public_output:
            from cryptography.hazmat.primitives import serialization
            pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
            fileio.write_atomic(public_output, pem, overwrite=False, what="public key")
    except BaseException:
        for p in (path, cert_output if certificate is not None else None):
            if p is not None and os.path.isfile(p) and not os.path.islink(p):
                p.unlink()  # only the regular files this command created, never a device
        raise
    data = {"key": str(path), "type": key_type, "fingerprint": public_key_fingerprint(key.public_key()),
            "certificate": str(cert_output) if certificate is not None else None,
            "public_key": str(public_output) if public_output else None}
    render.emit(data, text=f"{path}: {key_type} {data['fingerprint']}")


def describe(ref: str, certificate: Optional[str] = None) -> dict:
    from pcrtool.sign.api import (certificate_fingerprint, describe_public_key, key_label,
                                  public_key_fingerprint)

    from pcrtool.sign import load_key_material

    material = load_key_material(ref, certificate=certificate)
    signer, public, cert, backend = material.signer, material.public_key, material.certificate, material.description
    try:
        kt, size = describe_public_key(public)
        out = {"key": backend, "type": key_label(kt, size), "algorithm": kt.value, "bits": size,
               "fingerprint": public_key_fingerprint(public), "private": signer is not None}
        if signer is not None and hasattr(signer, "prehashed_only"):
            out["prehashed"] = signer.prehashed_only
        if cert is not None:
            out["certificate"] = {
                "subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                "serial": format(cert.serial_number, "x"),
                "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(),
                "fingerprint": certificate_fingerprint(cert)}
        return out
    finally:
        if signer is not None:
            signer.close()


@app.command()
def show(
    ref: str = typer.Argument(..., metavar="KEY", help=_KEY_HELP),
    certificate: Optional[str] = typer.Option(None, "--certificate", "--cert", "-c", metavar="PATH",
                                              help="Certificate to pair with the key."),
) -> None:
    """Show a key's type, size, public-key fingerprint and certificate (never private material)."""
    from pcrtool import render

    info = describe(ref, certificate)
    table = render.Table(["field", "value"])
    for k in ("key", "type", "fingerprint", "private", "prehashed"):
        if k in info:
            table.add(k, info[k])
    for k, v in (info.get("certificate") or {}).items():
        table.add(f"certificate.{k}", v)
    render.emit(info, table=table)


@app.command()
def fingerprint(
    ref: str = typer.Argument(..., metavar="KEY", help=_KEY_HELP),
) -> None:
    """Print the key's two SHA-256 fingerprints and what each one is for.

    fingerprint: SHA-256 of the DER SubjectPublicKeyInfo (`openssl pkey -pubout -outform DER |
    sha256sum`), used by pcrtool's key listings and offline signing requests. pkfp: SHA-256 of the
    key's i2d_PublicKey DER (RSA: PKCS#1 RSAPublicKey), what systemd writes as "pkfp" in .pcrsig
    entries and what `pcrtool policy show` and enrolments show."""
    from pcrtool import render
    from pcrtool.policy.digests import public_key_fingerprint as pcrsig_pkfp
    from pcrtool.sign import load_key_material

    info = describe(ref)
    material = load_key_material(ref)
    material.close()
    pkfp = pcrsig_pkfp(material.public_key).hex()
    text = (f"fingerprint {info['fingerprint']}  (SHA-256 of the DER SubjectPublicKeyInfo, as openssl "
            "pkey -pubout -outform DER | sha256sum; pcrtool key listings and signing requests)\n"
            f"pkfp        {pkfp}  (SHA-256 of the i2d_PublicKey DER: the \"pkfp\" of systemd .pcrsig "
            "entries, `pcrtool policy show` and enrolments)")
    render.emit({"fingerprint": info["fingerprint"], "pkfp": pkfp, "type": info["type"]}, text=text)


@app.command()
def public(
    ref: str = typer.Argument(..., metavar="KEY", help=_KEY_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH",
                                          help="Write the PEM here instead of stdout."),
) -> None:
    """Export the public key as PEM (for systemd-measure/ukify --public-key, TPM LoadExternal)."""
    from cryptography.hazmat.primitives import serialization

    from pcrtool import fileio, render

    from pcrtool.sign import load_key_material

    material = load_key_material(ref)
    material.close()
    pub = material.public_key
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if output:
        fileio.write_atomic(output, pem, what="public key")
    elif render.json_mode():
        from pcrtool.policy.digests import public_key_fingerprint as pcrsig_pkfp
        from pcrtool.sign.api import describe_public_key, key_label, public_key_fingerprint

        render.emit_json({"public_key": pem.decode(), "type": key_label(*describe_public_key(pub)),
                          "fingerprint": public_key_fingerprint(pub), "pkfp": pcrsig_pkfp(pub).hex()})
    else:
        render.emit_text(pem.decode())


@app.command("list")
def list_(
    uri: str = typer.Argument(..., metavar="PKCS11_URI",
                              help="Token URI, e.g. 'pkcs11:token=release?pin-source=file:/run/pin'."),
) -> None:
    """List the private keys on a PKCS#11 token with the URI that selects each one."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.sign.pkcs11 import list_keys

    if not uri.startswith("pkcs11:"):
        raise UsageError("key list takes a pkcs11: URI", hint="e.g. pcrtool key list 'pkcs11:token=NAME'")
    keys = list_keys(uri)
    table = render.Table(["label", "id", "type", "fingerprint", "certificate", "uri"])
    for k in keys:
        table.add(k["label"], k["id"], k.get("type", "?"), k.get("fingerprint", k.get("error", "")),
                  k.get("certificate", "-"), k["uri"])
    render.emit({"keys": keys}, table=table)
