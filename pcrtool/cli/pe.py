"""`pcrtool pe`: Authenticode hash, inspect, sign, verify, offline prepare/attach, PKCS#7 export/import.

Digests printed:
  - "as loaded": EDK2's digest of the file exactly as given (for db/dbx hash enrolment and PCR 4);
  - "for signing": the digest a new signature carries (file zero-padded to 8 bytes first).
They differ only for an unsigned file whose length is not a multiple of 8.

signingTime is SOURCE_DATE_EPOCH when set (reproducible output), else the current time, as
systemd-sbsign does.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Authenticode: hash, inspect, sign and verify PE/UKI binaries.")

_HASH_HELP = "Hash algorithm: sha256 (default) or sha384 (sha512 is refused: EDK2 rejects it)."


def _read(path: str, what: str = "PE file") -> bytes:
    from pcrtool import fileio
    return fileio.read_bytes(path, what=what)


def _read_pe(path: str):
    from pcrtool.pe.files import read_pe
    return read_pe(path)


def _hash_alg(name: str):
    from pcrtool.model import HashAlg
    return HashAlg.from_name(name)


def _signing_time():
    from pcrtool.pe.files import signing_time
    return signing_time()


def _warn_all(warnings) -> None:
    from pcrtool import render
    for w in warnings:
        render.warn(w)


def _write_and_reverify(output: str, signed, cert_der: bytes) -> None:
    from pcrtool.pe.files import write_and_reverify
    write_and_reverify(output, signed, cert_der)


@app.command("hash")
def hash_cmd(file: str = typer.Argument(..., help="PE/EFI binary."),
             hash_name: str = typer.Option("sha256", "--hash", help="sha256, sha384 or sha512.")) -> None:
    """Print the Authenticode digest as firmware sees the file, and as a new signature carries it."""
    from pcrtool import render
    from pcrtool.pe import PeImage, image_digest, signing_digest

    data = _read_pe(file)
    alg = _hash_alg(hash_name)
    image = PeImage.parse(data)
    _warn_all(image.warnings)
    as_loaded = image_digest(image, alg).hex()
    for_signing = signing_digest(data, alg).hex() if not image.is_signed or len(data) % 8 == 0 else as_loaded
    out = {"file": file, "hash": alg.bank_name, "as_loaded": as_loaded, "for_signing": for_signing,
           "signed": image.is_signed, "size": len(data)}
    text = f"{alg.bank_name}:{as_loaded}  as loaded (db/dbx, PCR 4)\n{alg.bank_name}:{for_signing}  for signing"
    render.emit(out, text=text)


@app.command()
def inspect(file: str = typer.Argument(..., help="PE/EFI binary.")) -> None:
    """Show headers, sections, the certificate table and layout warnings."""
    from pcrtool import render
    from pcrtool.errors import FormatError
    from pcrtool.pe import PeImage

    image = PeImage.parse(_read(file))
    certs, table_error = [], None
    try:
        certs = image.certificates()
    except FormatError as e:
        table_error = e.message
    out = {
        "file": file, "format": "PE32+" if image.is_pe32_plus else "PE32", "machine": image.machine,
        "subsystem": image.subsystem, "size_of_headers": image.size_of_headers,
        "size_of_image": image.size_of_image, "checksum": image.checksum,
        "sections": [{"name": s.name, "virtual_address": s.virtual_address, "virtual_size": s.virtual_size,
                      "raw_offset": s.raw_offset, "raw_size": s.raw_size, "characteristics": s.characteristics}
                     for s in image.sections],
        "certificate_table": {"offset": image.cert_table_offset, "size": image.cert_table_size,
                              "entries": [{"offset": c.offset, "length": c.length, "revision": c.revision,
                                           "type": c.cert_type} for c in certs],
                              "error": table_error},
        "warnings": image.warnings,
    }
    table = render.Table(["section", "vaddr", "vsize", "offset", "rawsize"],
                         title=f"{file}: {out['format']}, {len(certs)} signature(s)")
    for s in image.sections:
        table.add(s.name, f"{s.virtual_address:#x}", s.virtual_size, f"{s.raw_offset:#x}", s.raw_size)
    _warn_all(image.warnings + ([f"certificate table: {table_error}"] if table_error else []))
    render.emit(out, table=table)


@app.command()
def sign(files: List[str] = typer.Argument(..., metavar="FILE...",
                                          help="PE/EFI binaries to sign (e.g. systemd-boot, the UKI, add-ons)."),
         key: str = typer.Option(..., "--key", "-k", help="Key: PATH, file:PATH or a pkcs11: URI."),
         cert: Optional[str] = typer.Option(None, "--cert", "--certificate", "-c", help="Signer certificate (PEM/DER)."),
         output: Optional[str] = typer.Option(None, "--output", "-o",
                                              help="Signed output file; with several inputs an existing directory "
                                                   "(each output keeps its input's name)."),
         suffix: Optional[str] = typer.Option(None, "--suffix",
                                              help="Instead of -o: write FILE+SUFFIX next to each input "
                                                   "(e.g. .signed)."),
         hash_name: str = typer.Option("sha256", "--hash", help=_HASH_HELP),
         chain: List[str] = typer.Option([], "--chain",
                                         help="Intermediate CA certificate(s) to embed (PEM/DER); repeatable."),
         detached: bool = typer.Option(False, "--detached",
                                       help="Write only the PKCS#7 (for sbattach/osslsigncode attach-signature)."),
         ) -> None:
    """Sign (or add a signature to) PE binaries; every output is checked before it is renamed into place.

    Several inputs share one process and one key load (a release's PE set in one call); every
    input is read and checked before the first output is written."""
    from pcrtool.cli.pe_sign import run
    run(files, key=key, cert=cert, output=output, suffix=suffix, hash_name=hash_name, chain=chain,
        detached=detached)


@app.command()
def verify(file: str = typer.Argument(..., help="PE/EFI binary."),
           cert: List[str] = typer.Option([], "--cert", "--certificate", "-c",
                                          help="Trusted certificate (PEM/DER) or EFI_SIGNATURE_LIST; repeatable."),
           db: List[str] = typer.Option([], "--db", help="db: ESL, efivarfs dump or certificate; repeatable."),
           dbx: List[str] = typer.Option([], "--dbx", help="dbx: ESL or efivarfs dump; repeatable."),
           ) -> None:
    """List signatures and decide whether EDK2 would run the image (exit 3 if not)."""
    from pcrtool import render
    from pcrtool.errors import MismatchError
    from pcrtool.pe.sigdb import SignatureDb, load_sigdb
    from pcrtool.pe.verify import verify_image

    allowed, forbidden = SignatureDb(), SignatureDb()
    for path in list(cert) + list(db):
        allowed.extend(load_sigdb(_read(path, "certificate or signature list")))
    for path in dbx:
        forbidden.extend(load_sigdb(_read(path, "dbx signature list")))
    result = verify_image(_read(file), db=allowed, dbx=forbidden)
    _warn_all(result.warnings)
    table = render.Table(["#", "subject", "issuer", "hash", "signing time", "digest", "signature", "trusted by"],
                         title=f"{file}: sha256 {result.digest_sha256.hex()}")
    for s in result.signatures:
        table.add(s.index, s.subject, s.issuer, s.digest_algorithm, s.signing_time,
                  "ok" if s.digest_matches else "MISMATCH", "ok" if s.signature_valid else "BAD",
                  s.trusted_by or (f"DBX: {s.dbx_hit}" if s.dbx_hit else "-"))
        for p in s.problems:
            render.warn(f"signature {s.index}: {p}")
    render.emit(result.to_json(), table=table)
    if result.accepted is None:
        render.info(f"{result.reason}")
        bad = [s for s in result.signatures if not (s.digest_matches and s.signature_valid)]
        if bad or not result.table_ok:
            raise MismatchError(f"{file}: {len(bad)} signature(s) do not verify", hint="see the warnings above")
        return
    if not result.accepted:
        raise MismatchError(f"{file}: EDK2 would refuse the image: {result.reason}",
                            hint="sign it with a key whose certificate is in db")
    render.info(f"EDK2 would accept {file}: {result.reason}")


@app.command()
def prepare(file: str = typer.Argument(..., help="PE/EFI binary to sign offline."),
            cert: str = typer.Option(..., "--cert", "--certificate", "-c", help="Certificate of the offline signing key."),
            request: str = typer.Option(..., "--request",
                                        help="Request manifest to write (STEM.sign-request.json); "
                                             "STEM.sattrs.der is written next to it."),
            hash_name: str = typer.Option("sha256", "--hash", help=_HASH_HELP),
            signed_data: Optional[str] = typer.Option(
                None, "--signed-data", help="Wrap this systemd-sbsign --prepare-offline-signing blob "
                                            "(checked against the image) instead of making new attributes.")
            ) -> None:
    """Write the signed-attributes blob (as systemd-sbsign --prepare-offline-signing) and a request."""
    import base64
    import hashlib

    from pcrtool import render
    from pcrtool.pe.sign import check_certificate_key, prepare as prepare_sig
    from pcrtool.sign import load_signer
    from pcrtool.sign.offline import RequestKind, default_tbs_name, new_request, write_request

    data = _read_pe(file)
    alg = _hash_alg(hash_name)
    signer = load_signer("offline", certificate=cert)
    from pcrtool.pe.sign import CONSUMER, certificate_bytes
    from pcrtool.sign.api import KeyType
    signer.require(consumer=CONSUMER, key_types=(KeyType.RSA,), max_rsa_bits=4096)
    cert_der = certificate_bytes(signer)
    check_certificate_key(cert_der, signer.public_key())
    if signed_data is None:
        when = _signing_time()
        prepared = prepare_sig(data, when, alg)
    else:  # systemd-sbsign's blob: kept byte for byte; refused unless it covers this image
        from pcrtool.pe.sign import prepare_with_attributes
        from pcrtool.sign.authenticode_pkcs7 import parse_signed_attributes
        prepared = prepare_with_attributes(data, _read(signed_data, "signed data"), alg)
        when = parse_signed_attributes(prepared.signed_attrs).signing_time
        if when is None:
            from pcrtool.errors import FormatError
            raise FormatError(f"{signed_data}: the signed attributes carry no signingTime")
    name = default_tbs_name(request, "sattrs.der")
    req, blobs = new_request(
        RequestKind.AUTHENTICODE, [("signed-attributes", name, prepared.signed_attrs,
                                    {"spc-indirect-data": base64.b64encode(prepared.idc_der).decode()})],
        hash_alg=alg,
        key=signer, inputs={"pe": hashlib.sha256(data).hexdigest()},
        extra={"image-digest": prepared.image_digest.hex(), "signing-time": when.isoformat(),
               "certificate": base64.b64encode(cert_der).decode()})
    from pcrtool.cli.common import NewFilesOnly
    with NewFilesOnly([request, Path(request).parent / name]):  # all or nothing
        write_request(request, req, blobs)
    render.emit({"request": request, "tbs": str(Path(request).parent / name),
                 "image_digest": prepared.image_digest.hex(), "signing_time": when.isoformat()},
                text=f"wrote {Path(request).parent / name} and {request}\n"
                     f"sign it e.g. with: openssl dgst -{alg.bank_name} -sign KEY "
                     f"-out {Path(request).parent / name}.sig {Path(request).parent / name}")


@app.command()
def attach(file: str = typer.Argument(..., help="The same PE binary that was prepared."),
           request: Optional[str] = typer.Option(None, "--request",
                                                 help="The request manifest from 'pcrtool pe prepare'."),
           signed_data: Optional[str] = typer.Option(
               None, "--signed-data",
               help="Instead of --request: the signed-attributes blob of 'systemd-sbsign sign "
                    "--prepare-offline-signing' (or of 'pcrtool pe prepare'), used as it is; needs --cert "
                    "and --signature."),
           signature: Optional[str] = typer.Option(None, "--signature", "--signed-data-signature", "-s",
                                                   help="Raw PKCS#1 v1.5 signature over the sattrs file, a JSON "
                                                        "response, or a full PKCS#7 (DER/PEM). Default with "
                                                        "--request: STEM.sattrs.der.sig next to the request."),
           output: str = typer.Option(..., "--output", "-o", help="Signed output file."),
           cert: Optional[str] = typer.Option(None, "--cert", "--certificate", "-c",
                                              help="Signer certificate (default: the one recorded in the request)."),
           ) -> None:
    """Complete an offline signature; refuses if the PE or the signed attributes changed.

    The signing time and every other attribute come from the prepared blob, so pcrtool and
    systemd-sbsign complete each other's preparations without a shared SOURCE_DATE_EPOCH; the
    blob's messageDigest must be this image's (exit 3 otherwise)."""
    import base64
    import hashlib

    from pcrtool import render
    from pcrtool.errors import FormatError, MismatchError, UsageError
    from pcrtool.pe.sign import attach_chunks, check_certificate_key, complete_chunks, prepare_with_attributes
    from pcrtool.sign.offline import RequestKind, check_signature, read_request, read_signatures

    if (request is None) == (signed_data is None):
        raise UsageError("give exactly one of --request (pcrtool pe prepare) and --signed-data "
                         "(systemd-sbsign --prepare-offline-signing)")
    if signed_data is not None:
        if cert is None or signature is None:
            raise UsageError("--signed-data needs --cert and --signature (the raw signature over the blob)")
        req = None
        blob = _read(signed_data, "signed-attributes blob")
        data = _read_pe(file)
        prepared = prepare_with_attributes(data, blob, _attrs_hash_alg(blob, signed_data))
    else:
        req, blobs = read_request(request)
        if req.kind is not RequestKind.AUTHENTICODE:
            raise FormatError(f"{request} is a {req.kind.value} request, not an authenticode one")
        blob = blobs[0]
        data = _read_pe(file)
        if hashlib.sha256(data).hexdigest() != req.inputs.get("pe"):
            raise MismatchError(f"{file} is not the file the request was prepared for (sha256 differs)",
                                hint="attach to the exact file given to 'pcrtool pe prepare'")
        prepared = prepare_with_attributes(data, blob, req.hash_alg)
    if cert:
        from cryptography.hazmat.primitives.serialization import Encoding

        from pcrtool.sign.keyfile import load_certificate_bytes
        cert_der = load_certificate_bytes(_read(cert, "certificate"), name=cert).public_bytes(Encoding.DER)
    else:
        try:
            cert_der = base64.b64decode(str(req.extra["certificate"]), validate=True)
        except (KeyError, ValueError):
            raise FormatError(f"{request} records no certificate", hint="pass --cert") from None
    from cryptography import x509
    public_key = x509.load_der_x509_certificate(cert_der).public_key()
    raw = _read(signature, "signature") if signature else None
    if raw is not None and _looks_like_pkcs7(raw):
        from pcrtool.sign.authenticode_pkcs7 import load_pkcs7_file
        signed = attach_chunks(prepared, load_pkcs7_file(raw))
        cert_der = _signer_cert(signed)
    else:
        if req is None:
            from pcrtool.sign.api import Padding, verify_signature
            sig = raw
            verify_signature(public_key, blob, sig, prepared.alg, Padding.PKCS1V15,
                             what=f"signature {signature} over {signed_data}")
        else:
            sig = raw if raw is not None and not raw.lstrip().startswith(b"{") else \
                read_signatures(request, req, signature)[0]
            check_signature(req, sig, public_key, tbs=blob)
        check_certificate_key(cert_der, public_key)
        signed = complete_chunks(prepared, sig, cert_der)
    _write_and_reverify(output, signed, cert_der)
    render.info(f"signed {file} -> {output}")


def _attrs_hash_alg(blob: bytes, name: str):
    """The hash of a prepared blob, from the length of its messageDigest (the blob names no algorithm)."""
    from pcrtool.errors import FormatError
    from pcrtool.model import HashAlg
    from pcrtool.sign.authenticode_pkcs7 import parse_signed_attributes

    md = parse_signed_attributes(blob).message_digest
    for alg in (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512):
        if md is not None and len(md) == alg.digest_size:
            return alg
    raise FormatError(f"{name} has no usable messageDigest attribute",
                      hint="give the blob 'systemd-sbsign sign --prepare-offline-signing' wrote")


def _looks_like_pkcs7(raw: bytes) -> bool:
    s = raw.lstrip()
    return s.startswith(b"-----BEGIN PKCS7") or (s[:2] == b"\x30\x82" and b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" in s[:20])


def _signer_cert(chunks: list) -> bytes:
    """The signer certificate of the WIN_CERTIFICATE that ends ``chunks``."""
    from pcrtool.sign.authenticode_pkcs7 import parse_pkcs7
    return parse_pkcs7(chunks[-1][8:]).signer_certificate()


@app.command("export-pkcs7")
def export_pkcs7(file: str = typer.Argument(..., help="Signed PE binary."),
                 output: str = typer.Option(..., "--output", "-o", help="PKCS#7 DER to write."),
                 index: int = typer.Option(0, "--index", "-i", help="Which signature (0 = first).")) -> None:
    """Write one embedded Authenticode PKCS#7 (DER), e.g. for sbattach or osslsigncode."""
    from pcrtool import fileio, render
    from pcrtool.errors import UsageError
    from pcrtool.pe import PeImage
    from pcrtool.sign.authenticode_pkcs7 import parse_pkcs7

    certs = PeImage.parse(_read(file)).certificates()
    if not 0 <= index < len(certs):
        raise UsageError(f"{file} has {len(certs)} signature(s), no index {index}")
    der = parse_pkcs7(certs[index].payload).der
    fileio.write_atomic(output, der, what="PKCS#7")
    render.info(f"wrote signature {index} of {file} to {output} ({len(der)} bytes)")


@app.command("import-pkcs7")
def import_pkcs7(file: str = typer.Argument(..., help="PE binary (unsigned or signed)."),
                 pkcs7: str = typer.Argument(..., help="Authenticode PKCS#7 (DER or PEM), e.g. sbsign --detached."),
                 output: str = typer.Option(..., "--output", "-o", help="Signed output file."),
                 hash_name: str = typer.Option("sha256", "--hash", help=_HASH_HELP)) -> None:
    """Attach a complete PKCS#7 after checking it signs this image's digest and verifies."""
    from pcrtool import render
    from pcrtool.pe.sign import attach_chunks, prepare_for_pkcs7
    from pcrtool.sign.authenticode_pkcs7 import load_pkcs7_file

    signed = attach_chunks(prepare_for_pkcs7(_read_pe(file), _hash_alg(hash_name)),
                          load_pkcs7_file(_read(pkcs7, "PKCS#7")))
    _write_and_reverify(output, signed, _signer_cert(signed))
    render.info(f"attached {pkcs7} to {file} -> {output}")
