"""`pcrtool verity`: dm-verity hash trees, root hashes, root-hash signatures, verity-sig partitions."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("dm-verity: hash trees, root hashes and their signatures.")

_SALT_HELP = ("Salt as hex, or '-' for none. Default: 32 random bytes (as veritysetup), or derived "
              "from --seed.")


# --- helpers -------------------------------------------------------------------------------------

def _parse_uuid(text: str) -> bytes:
    import uuid as uuidlib

    from pcrtool.errors import UsageError
    try:
        return uuidlib.UUID(text.strip()).bytes
    except ValueError:
        raise UsageError(f"{text!r} is not a UUID", hint="e.g. 12345678-1234-1234-1234-123456789abc") from None


def _fmt_uuid(raw: bytes | None) -> str | None:
    import uuid as uuidlib
    return None if raw is None else str(uuidlib.UUID(bytes=raw))


def _salt(salt: Optional[str], seed: Optional[str]) -> tuple[bytes, str]:
    import os

    from pcrtool.errors import UsageError
    from pcrtool.model import parse_hex
    from pcrtool.verity.params import derive_salt
    if salt is not None and seed is not None:
        raise UsageError("--salt and --seed exclude each other", hint="--seed derives the salt as systemd-repart does")
    if seed is not None:
        return derive_salt(_parse_uuid(seed)), "derived"
    if salt is None:
        return os.urandom(32), "random"
    if salt.strip() == "-":
        return b"", "none"
    return parse_hex(salt, what="salt"), "explicit"


@contextlib.contextmanager
def _progress(label: str, enabled: Optional[bool]):
    """A rich progress bar on stderr when it is a TTY (or forced); yields a callback or None."""
    import time

    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    # auto_refresh=False: no refresh thread, so hashing workers are never forked while another
    # thread holds a stream lock; the bar is redrawn from the callback instead.
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                  auto_refresh=False) as bar:
        task = bar.add_task(label, total=None)
        last = [0.0]

        def update(done: int, total: int) -> None:
            now = time.monotonic()
            redraw = now - last[0] >= 0.1 or done >= total
            if redraw:
                last[0] = now
            bar.update(task, completed=done, total=total, refresh=redraw)
        yield update


def _root_hash_arg(root_hash: Optional[str], root_hash_file: Optional[Path]) -> bytes:
    from pcrtool import fileio
    from pcrtool.errors import UsageError
    from pcrtool.verity.sig_partition import parse_root_hash
    if (root_hash is None) == (root_hash_file is None):
        raise UsageError("give the root hash either as an argument/--root-hash or with --root-hash-file")
    if root_hash_file is not None:
        return parse_root_hash(fileio.read_bytes(root_hash_file, what="root hash file", limit=4096),
                               source=str(root_hash_file))
    return parse_root_hash(root_hash)


def _load_certificate(path: Optional[str]):
    if path is None:
        return None
    from pcrtool.sign.keyfile import load_certificate
    return load_certificate(path)


def _write_outputs(der: bytes, root: bytes, certificate, output: Optional[Path],
                   sig_partition: Optional[Path], partition_size: int) -> dict:
    from pcrtool import fileio
    from pcrtool.errors import UsageError
    from pcrtool.sign.api import certificate_fingerprint
    from pcrtool.verity.sig_partition import VeritySig, build_sig_partition
    if output is None and sig_partition is None:
        raise UsageError("nothing to write", hint="give --output FILE.p7s and/or --sig-partition FILE")
    out: dict = {"rootHash": root.hex()}
    blob = None
    if sig_partition is not None:
        # Build before writing anything: a too-small partition must not leave a lone .p7s behind.
        blob = build_sig_partition(VeritySig(root, bytes.fromhex(certificate_fingerprint(certificate)), der),
                                   partition_size)
    if output is not None:
        fileio.write_atomic(output, der, what="signature")
        out["signature"] = str(output)
    if blob is not None:
        fileio.write_atomic(sig_partition, blob, what="verity-sig partition")
        out["sigPartition"] = str(sig_partition)
        out["certificateFingerprint"] = certificate_fingerprint(certificate)
    return out


def _same(a: Path, b: Path) -> bool:
    import os
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _show(value) -> str:
    from pcrtool.model import HashAlg
    if isinstance(value, HashAlg):
        return value.bank_name
    if isinstance(value, bytes):
        return value.hex() or "-"
    return str(int(value))


def _emit_kv(data: dict, title: str | None = None) -> None:
    from pcrtool import render
    table = render.Table(["field", "value"], title=title)
    for k, v in data.items():
        table.add(k, "" if v is None else (", ".join(map(str, v)) if isinstance(v, list) else v))
    render.emit(data, table=table)


# --- format / verify -----------------------------------------------------------------------------

@app.command("format")
def format_(
    data: Path = typer.Argument(..., metavar="DATA", help="Data image (file or block device)."),
    hash_file: Optional[Path] = typer.Argument(None, metavar="[HASH]",
                                               help="Hash file to create. Omit it to put the hash area "
                                                    "into DATA at --hash-offset."),
    hash_alg: str = typer.Option("sha256", "--hash", help="sha256, sha1 or sha512."),
    fmt: int = typer.Option(1, "--format", help="1 = normal, 0 = original Chrome OS format."),
    data_block_size: int = typer.Option(4096, "--data-block-size"),
    hash_block_size: int = typer.Option(4096, "--hash-block-size"),
    data_blocks: Optional[int] = typer.Option(None, "--data-blocks",
                                              help="Number of data blocks (default: the whole, "
                                                   "block-aligned image)."),
    hash_offset: Optional[int] = typer.Option(None, "--hash-offset",
                                              help="Byte offset of the hash area in the hash file "
                                                   "(or in DATA; default: right after the data)."),
    salt: Optional[str] = typer.Option(None, "--salt", help=_SALT_HELP),
    seed: Optional[str] = typer.Option(None, "--seed", metavar="UUID",
                                       help="Derive salt and superblock UUID as systemd-repart does "
                                            "(HMAC-SHA256(seed, \"verity-salt\"/\"verity-uuid\"))."),
    uuid: Optional[str] = typer.Option(None, "--uuid", help="Superblock UUID (default: random or from --seed)."),
    no_superblock: bool = typer.Option(False, "--no-superblock", help="Do not write the 512-byte superblock."),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file",
                                                  help="Also write the root hash here (hex, no newline)."),
    workers: Optional[int] = typer.Option(None, "--workers",
                                          help="Hashing workers (default: all cores; forked processes "
                                               "for large images)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress bar (default: on a TTY)."),
) -> None:
    """Build the hash tree of DATA exactly as `veritysetup format` does and print the root hash."""
    import os

    from pcrtool import fileio
    from pcrtool.errors import UsageError
    from pcrtool.model import HashAlg
    from pcrtool.verity.io import data_blocks_for, file_size, format_file
    from pcrtool.verity.params import HashType, VerityParams, derive_uuid, partition_uuids

    if fmt not in (0, 1):
        raise UsageError(f"--format must be 0 or 1, not {fmt}")
    salt_bytes, salt_source = _salt(salt, seed)
    if no_superblock and uuid is not None:
        raise UsageError("--uuid needs a superblock", hint="drop --no-superblock or --uuid")
    if uuid is not None:
        uuid_bytes = _parse_uuid(uuid)
    elif seed is not None:
        uuid_bytes = derive_uuid(_parse_uuid(seed))
    else:
        uuid_bytes = os.urandom(16)
        uuid_bytes = bytes([*uuid_bytes[:6], (uuid_bytes[6] & 0x0F) | 0x40, uuid_bytes[7],
                            (uuid_bytes[8] & 0x3F) | 0x80, *uuid_bytes[9:]])
    size = file_size(data)
    in_data = hash_file is None
    if in_data:
        if hash_offset is None:
            blocks = data_blocks_for(size, data_block_size, path=str(data), explicit=data_blocks)
            hash_offset = blocks * data_block_size
        else:
            usable = min(size, hash_offset)
            blocks = data_blocks if data_blocks is not None else usable // data_block_size
            if data_blocks is None and usable % data_block_size:
                raise UsageError(f"{usable} data bytes before the hash offset are not a multiple of "
                                 f"{data_block_size}", hint="pass --data-blocks explicitly")
    else:
        blocks = data_blocks_for(size, data_block_size, path=str(data), explicit=data_blocks)
    params = VerityParams(
        data_blocks=blocks, hash_alg=HashAlg.from_name(hash_alg), hash_type=HashType(fmt),
        data_block_size=data_block_size, hash_block_size=hash_block_size, salt=salt_bytes,
        superblock=not no_superblock, uuid=None if no_superblock else uuid_bytes,
        hash_offset=hash_offset or 0)
    with _progress("hashing", progress) as cb:
        result = format_file(str(data), params, hash_path=None if in_data else str(hash_file),
                             workers=workers, progress=cb)
    root = result.root_hash
    if root_hash_file is not None:
        fileio.write_atomic(root_hash_file, root.hex(), what="root hash file")
    data_uuid, hash_uuid = partition_uuids(root)
    out = {
        "rootHash": root.hex(), "hashFile": result.hash_path, "hashOffset": params.hash_offset,
        "hashSize": result.layout.hash_end - params.hash_offset,
        "hashAlgorithm": params.hash_alg.bank_name, "format": int(params.hash_type),
        "dataBlocks": params.data_blocks, "dataBlockSize": params.data_block_size,
        "hashBlockSize": params.hash_block_size, "hashBlocks": result.layout.hash_blocks,
        "salt": salt_bytes.hex() or "-", "saltSource": salt_source,
        "superblock": params.superblock, "uuid": _fmt_uuid(params.uuid),
        "levels": len(result.layout.levels),
        "partitionUuids": {"data": _fmt_uuid(data_uuid), "hash": _fmt_uuid(hash_uuid)},
    }
    from pcrtool import render
    unprotected_end = params.hash_offset if in_data else size
    if unprotected_end > params.data_size:
        render.warn(f"bytes {params.data_size}…{unprotected_end - 1} of {str(data)!r} are not protected "
                    f"(--data-blocks {params.data_blocks})")
    flat = {k: (f"data {v['data']}, hash {v['hash']}" if k == "partitionUuids" else v) for k, v in out.items()}
    if render.json_mode():
        render.emit_json(out)
    else:
        _emit_kv(flat)


@app.command()
def verify(
    data: Path = typer.Argument(..., metavar="DATA"),
    hash_file: Path = typer.Argument(..., metavar="HASH", help="Hash file (may be DATA itself with --hash-offset)."),
    root_hash: Optional[str] = typer.Argument(None, metavar="[ROOT_HASH]"),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file"),
    hash_offset: int = typer.Option(0, "--hash-offset"),
    no_superblock: bool = typer.Option(False, "--no-superblock",
                                       help="The hash file has no superblock: give the parameters."),
    hash_alg: Optional[str] = typer.Option(None, "--hash"),
    fmt: Optional[int] = typer.Option(None, "--format"),
    data_block_size: Optional[int] = typer.Option(None, "--data-block-size"),
    hash_block_size: Optional[int] = typer.Option(None, "--hash-block-size"),
    data_blocks: Optional[int] = typer.Option(None, "--data-blocks"),
    salt: Optional[str] = typer.Option(None, "--salt", help="Salt as hex or '-' (needed without superblock)."),
    workers: Optional[int] = typer.Option(None, "--workers"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress"),
) -> None:
    """Check DATA and its hash tree against ROOT_HASH; report the first bad block (exit 3)."""
    from pcrtool import render
    from pcrtool.errors import MismatchError, UsageError
    from pcrtool.model import HashAlg, parse_hex
    from pcrtool.verity.io import data_blocks_for, file_size, read_superblock_params, verify_files
    from pcrtool.verity.params import HashType, VerityParams

    root = _root_hash_arg(root_hash, root_hash_file)
    given = {"hash_alg": None if hash_alg is None else HashAlg.from_name(hash_alg),
             "hash_type": None if fmt is None else HashType(fmt),
             "data_block_size": data_block_size, "hash_block_size": hash_block_size,
             "data_blocks": data_blocks,
             "salt": None if salt is None else (b"" if salt.strip() == "-" else parse_hex(salt, what="salt"))}
    if no_superblock:
        if given["salt"] is None:
            raise UsageError("without a superblock the salt must be given", hint="--salt HEX or --salt -")
        dbs = data_block_size or 4096
        if given["data_blocks"] is None:
            size = file_size(data)
            if hash_offset and _same(data, hash_file):
                size = min(size, hash_offset)  # the hash area inside the data file is not data
            given["data_blocks"] = data_blocks_for(size, dbs, path=str(data), explicit=None)
        params = VerityParams(**{k: v for k, v in given.items() if v is not None},
                              superblock=False, hash_offset=hash_offset)
    else:
        params = read_superblock_params(str(hash_file), hash_offset)
        if params is None:
            raise UsageError(f"{str(hash_file)!r} has no verity superblock at offset {hash_offset}",
                             hint="pass --no-superblock with --salt (and the other parameters)")
        for k, v in given.items():
            if v is not None and getattr(params, k) != v:
                raise MismatchError(f"superblock says {k}={_show(getattr(params, k))}, "
                                    f"the option says {_show(v)}",
                                    hint="drop the option (the superblock has the parameters)")
    with _progress("verifying", progress) as cb:
        report = verify_files(str(data), str(hash_file), params, root, workers=workers, progress=cb)
    out = {"ok": report.ok, "rootHash": root.hex(), "dataBlocks": params.data_blocks}
    if not report.ok:
        out |= {"kind": report.kind, "block": report.block, "level": report.level,
                "offset": report.offset, "reason": report.reason}
        if render.json_mode():
            render.emit_json(out)
        where = "data" if report.kind == "data" else "hash"
        raise MismatchError(f"verification failed: {report.reason} ({where} file offset {report.offset})",
                            hint="the image was modified, or the hash tree belongs to other data")
    if render.json_mode():
        render.emit_json(out)
    else:
        render.emit_text(f"verified: {params.data_blocks} data blocks match root hash {root.hex()}")


# --- signatures ----------------------------------------------------------------------------------

_HASH_OPT = typer.Option("sha256", "--hash", help="Signature digest: sha256 (default, as openssl smime), sha384, sha512.")


@app.command()
def sign(
    root_hash: Optional[str] = typer.Argument(None, metavar="[ROOT_HASH]"),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file"),
    key: str = typer.Option(..., "--key", "-k", help="file:PATH or a pkcs11: URI."),
    certificate: Optional[str] = typer.Option(None, "--certificate", "--cert", "-c",
                                              help="Signer certificate (default: from the key file or token)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the DER PKCS#7 here (.p7s)."),
    sig_partition: Optional[Path] = typer.Option(None, "--sig-partition",
                                                 help="Also write a systemd verity-sig partition image."),
    partition_size: int = typer.Option(16384, "--partition-size"),
    no_certificate: bool = typer.Option(False, "--no-certificate",
                                        help="Do not embed the certificate (like openssl smime -nocerts)."),
    hash_alg: str = _HASH_OPT,
) -> None:
    """Sign a root hash: detached PKCS#7 over its lowercase hex, no signed attributes."""
    from pcrtool.errors import UsageError
    from pcrtool.model import HashAlg
    from pcrtool.sign import load_signer
    from pcrtool.verity.roothash_pkcs7 import sign_root_hash

    root = _root_hash_arg(root_hash, root_hash_file)
    with load_signer(key, certificate=certificate) as signer:
        if signer.is_offline:
            raise UsageError("the key is offline", hint="use 'pcrtool verity prepare' and 'attach'")
        cert = signer.certificate()
        der = sign_root_hash(signer, cert, root, hash_alg=HashAlg.from_name(hash_alg),
                             embed_certificate=not no_certificate)
    out = _write_outputs(der, root, cert, output, sig_partition, partition_size)
    _emit_kv(out)


@app.command()
def prepare(
    root_hash: Optional[str] = typer.Argument(None, metavar="[ROOT_HASH]"),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file"),
    output: Path = typer.Option(..., "--output", "-o", metavar="STEM.sign-request.json",
                                help="Request manifest; the bytes to sign go to STEM.roothash next to it."),
    certificate: Optional[str] = typer.Option(None, "--certificate", "--cert", "-c",
                                              help="Bind the request to this certificate's key."),
    hash_alg: str = _HASH_OPT,
) -> None:
    """Write the exact bytes to sign (lowercase hex root hash, no newline) and a signing request."""
    from pcrtool.model import HashAlg
    from pcrtool.sign.offline import RequestKind, default_tbs_name, new_request, write_request
    from pcrtool.verity.sig_partition import roothash_tbs
    from pcrtool.verity.roothash_pkcs7 import CONSUMER, check_hash

    from pcrtool.sign.api import require_key
    root = _root_hash_arg(root_hash, root_hash_file)
    alg = HashAlg.from_name(hash_alg)
    check_hash(alg)
    cert = _load_certificate(certificate)
    if cert is not None:
        require_key(cert.public_key(), consumer=CONSUMER)
    tbs_name = default_tbs_name(output, "roothash")
    root_alg = {20: "sha1", 32: "sha256", 64: "sha512"}[len(root)]  # what parse_root_hash accepts
    request, blobs = new_request(RequestKind.VERITY_ROOTHASH, [("roothash", tbs_name, roothash_tbs(root),
                                                                {"root_hash_algorithm": root_alg})],
                                 hash_alg=alg, key=cert, extra={"root_hash": root.hex()})
    from pcrtool.cli.common import NewFilesOnly
    with NewFilesOnly([output, Path(output).parent / tbs_name]):  # all or nothing
        write_request(output, request, blobs)
    _emit_kv({"request": str(output), "tbs": str(output.parent / tbs_name), "rootHash": root.hex(),
              "signWith": f"openssl dgst -{alg.bank_name} -sign KEY -out {tbs_name}.sig {tbs_name}"})


@app.command()
def attach(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request written by 'prepare'."),
    signature: Optional[Path] = typer.Option(None, "--signature", "-s",
                                             help="Raw signature, DER/PEM PKCS#7, or JSON response "
                                                  "(default: <tbs file>.sig next to the request)."),
    certificate: str = typer.Option(..., "--certificate", "--cert", "-c", help="Signer certificate."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the DER PKCS#7 here."),
    sig_partition: Optional[Path] = typer.Option(None, "--sig-partition"),
    partition_size: int = typer.Option(16384, "--partition-size"),
    no_certificate: bool = typer.Option(False, "--no-certificate"),
) -> None:
    """Check a signature made elsewhere against the request and write the PKCS#7 (and verity-sig)."""
    from pcrtool.errors import FormatError, SignatureError
    from pcrtool.sign.api import public_key_fingerprint
    from pcrtool.sign.offline import RequestKind, read_request, read_signatures
    from pcrtool.verity.sig_partition import parse_root_hash
    from pcrtool.verity.roothash_pkcs7 import attach_signature

    req, blobs = read_request(request)
    if req.kind is not RequestKind.VERITY_ROOTHASH:
        raise FormatError(f"{request} is a {req.kind.value} request, not verity-roothash")
    tbs = blobs[0]
    root = parse_root_hash(tbs, source=f"{request} tbs")
    cert = _load_certificate(certificate)
    if req.key is not None and req.key.fingerprint != public_key_fingerprint(cert.public_key()):
        raise SignatureError(f"the request was prepared for key {req.key.fingerprint[:16]}…, "
                             f"the certificate holds another key", hint="give the signer's certificate")
    [sig] = read_signatures(request, req, signature)
    attached = attach_signature(sig, cert, tbs, hash_alg=req.hash_alg, padding=req.padding,
                                embed_certificate=not no_certificate)
    out = _write_outputs(attached.der, root, cert, output, sig_partition, partition_size)
    out["input"] = "raw signature (wrapped)" if attached.wrapped else "PKCS#7 (kept as given)"
    _emit_kv(out)


@app.command("sig-partition")
def sig_partition_(
    signature: Path = typer.Argument(..., metavar="SIGNATURE", help="DER/PEM PKCS#7 root-hash signature."),
    root_hash: Optional[str] = typer.Option(None, "--root-hash"),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file"),
    certificate: str = typer.Option(..., "--certificate", "--cert", "-c"),
    output: Path = typer.Option(..., "--output", "-o"),
    size: int = typer.Option(16384, "--size", help="Partition size in bytes (repart: 16 KiB)."),
) -> None:
    """Build a systemd verity-sig partition image from a root-hash signature (checked first)."""
    from pcrtool import fileio
    from pcrtool.sign.pkcs7 import pem_to_der
    from pcrtool.verity.roothash_pkcs7 import check_signature_file

    root = _root_hash_arg(root_hash, root_hash_file)
    cert = _load_certificate(certificate)
    der = pem_to_der(fileio.read_bytes(signature, what="signature"))
    check_signature_file(der, cert, root, source=str(signature))
    _emit_kv(_write_outputs(der, root, cert, None, output, size))


@app.command("show-sig")
def show_sig(
    path: Path = typer.Argument(..., metavar="FILE", help="A .p7s root-hash signature or a verity-sig partition."),
    root_hash: Optional[str] = typer.Option(None, "--root-hash", help="Check against this root hash."),
    root_hash_file: Optional[Path] = typer.Option(None, "--root-hash-file"),
    certificate: Optional[str] = typer.Option(None, "--certificate", "--cert", "-c",
                                              help="Check the signature with this certificate (exit 3 if not)."),
) -> None:
    """Show a root-hash signature or verity-sig partition; verify it when a certificate is given."""
    from pcrtool import fileio
    from pcrtool.errors import MismatchError, UsageError
    from pcrtool.sign.pkcs7 import parse_detached
    from pcrtool.sign.api import certificate_fingerprint
    from pcrtool.verity.sig_partition import parse_sig_partition
    from pcrtool.verity.roothash_pkcs7 import check_signature_file

    data = fileio.read_bytes(path, what="signature")
    out: dict = {"file": str(path)}
    root = None
    fp = None
    if data.lstrip()[:1] == b"{":
        sig = parse_sig_partition(data, source=str(path))
        der, root, fp = sig.signature, sig.root_hash, sig.certificate_fingerprint
        out |= {"type": "verity-sig partition", "size": len(data), "rootHash": root.hex(),
                "certificateFingerprint": fp.hex()}
    else:
        der = data
        out["type"] = "PKCS#7"
    parsed = parse_detached(der, source=str(path))
    out |= {"digest": parsed.hash_alg.bank_name, "signatureAlgorithm": parsed.signature_algorithm,
            "issuer": parsed.issuer, "serial": f"{parsed.serial_number:x}",
            "certificateEmbedded": parsed.signer_certificate() is not None,
            "signedAttributes": parsed.signed_attrs is not None, "detached": not parsed.has_content}
    if root_hash is not None or root_hash_file is not None:
        given = _root_hash_arg(root_hash, root_hash_file)
        if root is not None and given != root:
            raise MismatchError(f"{path} is for root hash {root.hex()}, not {given.hex()}")
        root = given
    if certificate is not None:
        if root is None:
            raise UsageError("checking a .p7s needs the root hash", hint="--root-hash HEX or --root-hash-file")
        cert = _load_certificate(certificate)
        if fp is not None and fp and fp != bytes.fromhex(certificate_fingerprint(cert)):
            raise MismatchError(f"{path} names certificate {fp.hex()[:16]}…, not the given one")
        check_signature_file(der, cert, root, source=str(path))
        out["verified"] = True
    _emit_kv(out)
