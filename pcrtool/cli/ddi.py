"""`pcrtool ddi`: inspect, verify, build and sign system/configuration extension DDIs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Discoverable Disk Images: inspect, verify, build and sign sysext/confext DDIs.")

_KIND_HELP = "sysext, confext or portable (default: from the image's extension-release file)."


def _kind(text: Optional[str]):
    from pcrtool.ddi.release import ExtensionType
    from pcrtool.errors import UsageError
    if text is None:
        return None
    try:
        return ExtensionType(text)
    except ValueError:
        raise UsageError(f"--type takes sysext, confext or portable, not {text!r}") from None


def _guess_kind(release_files: dict):
    """sysext or confext from the extension-release files found (sysext when there are none)."""
    from pcrtool.ddi.release import ExtensionType
    kinds = {k.split(":", 1)[0] for k in release_files}
    if "confext" in kinds and "sysext" not in kinds:
        return ExtensionType.CONFEXT
    return ExtensionType.SYSEXT


def _dissect(image, path: Path, arch: str, kind, *, mismatch: bool = True):
    from pcrtool.ddi.files import extract_release_files
    from pcrtool.ddi.image import dissect
    from pcrtool.errors import FormatError, MismatchError
    try:
        d = dissect(image, arch=arch, kind=kind)
    except FormatError as e:
        if not mismatch:
            raise
        raise MismatchError(f"{path.name}: {e.message}", hint=e.hint) from None
    release_files = d.release_files
    if d.release_error and d.data_designator:
        release_files = extract_release_files(image, d, kind)
    return d, release_files


@app.command()
def inspect(
    image: Path = typer.Argument(..., help="The DDI (.raw) to read."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture to pick partitions for (default: this machine's)."),
) -> None:
    """Show the partitions, verity pairing, signature and extension-release of a DDI."""
    from dataclasses import replace

    from pcrtool import render
    from pcrtool.ddi.files import MappedImage, host_arch
    from pcrtool.ddi.image import describe

    with MappedImage(image) as img:
        d, release_files = _dissect(img, image, host_arch(arch), None, mismatch=False)
        info = describe(replace(d, release_files=release_files), image_name=image.name)
        if d.sig is not None:
            info["verity"]["signer"] = _signer(d.sig.signature)
    if render.json_mode():
        render.emit_json(info)
        return
    lines = [f"      Name: {info['name']}", f"      Size: {info['size']} bytes",
             f"Image UUID: {info['imageUuid']}", f"      Arch: {info['architecture'] or '-'}"]
    for key in ("sysextRelease", "confextRelease"):
        if key in info:
            lines.append(f"{'Extension' if key == 'sysextRelease' else ' Confext'}: extension-release."
                         f"{info['extensionReleaseName']}")
            lines += [f"            {line}" for line in info[key]]
    if "verity" in info:
        v = info["verity"]
        for k in ("rootHash", "certificateFingerprint", "signer", "hashAlgorithm", "dataBlocks", "salt"):
            if k in v:
                lines.append(f"{k:>22}: {v[k]}")
    render.emit_text("\n".join(lines))
    table = render.Table(["partno", "designator", "label", "partition uuid", "fstype", "arch", "verity",
                          "rw", "offset", "size"])
    for m in info["mounts"]:
        table.add(str(m["partno"]), m["designator"] or "-", m["partition_label"], m["partition_uuid"],
                      m["fstype"] or "-", m["architecture"] or "-", m["verity"] or "-", m["rw"],
                      str(m["offset"]), str(m["size"]))
    render.emit_table(table)


def _signer(der: bytes) -> str | None:
    from pcrtool.errors import PcrtoolError
    from pcrtool.sign.pkcs7 import parse_detached
    try:
        p = parse_detached(der)
    except PcrtoolError:
        return None
    return f"{p.issuer}, serial {p.serial_number:x}"


@app.command()
def verify(
    image: Path = typer.Argument(..., help="The DDI (.raw) to check."),
    image_policy: Optional[str] = typer.Option(
        None, "--image-policy", help="systemd.image-policy(7) string (default: systemd-sysext's built-in policy)."),
    certs: Optional[List[str]] = typer.Option(
        None, "--certs", help="Trusted certificates: a directory of PEM *.crt or a file (repeatable; "
                              "default /etc/verity.d, /run/verity.d, /usr/local/lib/verity.d, /usr/lib/verity.d)."),
    host_os_release: Optional[str] = typer.Option(None, "--host-os-release", help="The host's os-release (default: this machine's)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Host architecture (default: this machine's)."),
    kind: Optional[str] = typer.Option(None, "--type", help=_KIND_HELP),
    scope: str = typer.Option("system", "--scope", help="Where it is merged: system, initrd or portable."),
    name: Optional[str] = typer.Option(None, "--name", help="The file name systemd would see (default: IMAGE's)."),
    strict_validity: bool = typer.Option(False, "--strict-validity",
                                         help="Refuse certificates outside their validity period (systemd does not)."),
) -> None:
    """Exit 0 if systemd would merge the image (signature, dm-verity, policy, extension-release), 3 with the reason if not."""
    import datetime as dt

    from pcrtool import render
    from pcrtool.ddi.files import MappedImage, host_arch, load_trusted_certs
    from pcrtool.ddi.files import host_os_release as read_host_os_release
    from pcrtool.ddi.policy import SYSEXT_DEFAULT, parse_image_policy
    from pcrtool.ddi.release import Host, parse_os_release
    from pcrtool.ddi.verify import verify_ddi

    if scope not in ("system", "initrd", "portable"):
        from pcrtool.errors import UsageError
        raise UsageError(f"--scope takes system, initrd or portable, not {scope!r}")
    policy = parse_image_policy(image_policy if image_policy is not None else SYSEXT_DEFAULT)
    the_arch = host_arch(arch)
    the_kind = _kind(kind)
    trusted, searched = load_trusted_certs(certs)
    with MappedImage(image) as img:
        d, release_files = _dissect(img, image, the_arch, the_kind)
        the_kind = the_kind or _guess_kind(release_files)
        host = Host(parse_os_release(read_host_os_release(host_os_release), source="host os-release"),
                    the_arch, scope)
        result = verify_ddi(img, d, policy, certs=trusted, host=host, kind=the_kind,
                              file_name=name or image.name, now=dt.datetime.now(dt.timezone.utc),
                              strict_validity=strict_validity, release_files=release_files)
    if render.json_mode():
        out = result.to_json()
        out.update({"image": str(image), "policy": policy.long_form(), "certificates": [c.source for c in trusted],
                    "type": the_kind.value if the_kind else None})
        render.emit_json(out)
    else:
        for c in result.checks:
            render.emit_text(f"{'ok  ' if c.ok else 'FAIL'} {c.name:<18} {c.detail}")
    for w in result.warnings:
        render.warn(w)
    if not result.ok:
        from pcrtool.errors import EXIT_MISMATCH
        render.error(f"{image.name}: systemd would not merge this image: {result.reason}")
        raise typer.Exit(EXIT_MISMATCH)


# --- build, prepare, attach ---------------------------------------------------------------------

def _epoch(value: Optional[int]) -> int:
    import os

    from pcrtool.errors import UsageError
    if value is not None:
        return value
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is None:
        return 0
    try:
        return int(env)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds") from None


def _seed(text: Optional[str]):
    import uuid

    from pcrtool.errors import UsageError
    if text is None:
        return uuid.uuid4()
    try:
        return uuid.UUID(text)
    except ValueError:
        raise UsageError(f"--seed {text!r} is not a UUID", hint="e.g. --seed $(uuidgen)") from None


def _check_output(output: Path, force: bool) -> None:
    """Fail before the (slow) build, not after it."""
    from pcrtool.errors import InputFileError
    if not output.parent.is_dir():
        raise InputFileError(f"directory {str(output.parent)!r} for the image does not exist", hint="create it first")
    if output.exists() and not force:
        raise InputFileError(f"image {str(output)!r} exists already; refusing to overwrite it",
                             hint="remove it or pass --force")


def _build(kind: str, src: Path, output: Path, compress: str, seed: Optional[str], arch: Optional[str],
           epoch: Optional[int], release_flags: Optional[List[str]] = None):
    from pcrtool.ddi.build import build_image, check_release, release_text
    from pcrtool.ddi.files import host_arch
    from pcrtool.ddi.release import image_name
    from pcrtool.errors import UsageError

    the_kind = _kind(kind)
    if not output.name.endswith(".raw"):
        raise UsageError(f"output {output} does not end in .raw",
                         hint="systemd-sysext only picks up NAME.raw; NAME must match extension-release.NAME")
    name = image_name(output.name)
    written = release_text(release_flags) if release_flags else None
    release = check_release(src, the_kind, name, written)
    extra = {the_kind.release_path(name): written} if written else {}
    the_arch = host_arch(arch)
    if release.get("ARCHITECTURE") not in (None, "_any", the_arch):
        raise UsageError(f"extension-release says ARCHITECTURE={release['ARCHITECTURE']}, building for {the_arch}",
                         hint="pass --arch or fix the extension-release file")
    return build_image(src, the_kind, seed=_seed(seed), arch=the_arch, compress=compress,
                       epoch=_epoch(epoch), extra=extra), the_arch


def _summary(built, output: Path, arch: str, extra: dict) -> None:
    from pcrtool import render
    out = {"image": str(output), "rootHash": built.root_hash.hex(), "seed": str(built.seed),
           "architecture": arch, "size": built.layout.total_size, "fileSystemSize": built.fs_size,
           "fileSystemUuid": str(built.fs_uuid), **extra}
    if render.json_mode():
        render.emit_json(out)
    else:
        render.emit_text("\n".join(f"{k:>16}: {v}" for k, v in out.items()))


_TYPE_OPT = typer.Option("sysext", "--type", "-t", help="sysext, confext or portable.")
_COMPRESS_OPT = typer.Option("none", "--compress", help="none (as repart), lz4, lz4hc, lzma, zstd, deflate "
                                                         "(what mkfs.erofs supports).")
_SEED_OPT = typer.Option(None, "--seed", help="UUID the partition/file-system UUIDs and the salt derive from "
                                              "(as systemd-repart --seed; default: random).")
_EPOCH_OPT = typer.Option(None, "--source-date-epoch", help="Clamp timestamps (default: $SOURCE_DATE_EPOCH, else 0).")
_RELEASE_OPT = typer.Option(None, "--release", metavar="KEY=VALUE",
                            help="Write extension-release.NAME from these fields (repeatable; the tree must not "
                                 "have one), e.g. --release ID=_any --release SYSEXT_LEVEL=1.0.")


@app.command()
def build(
    src: Path = typer.Argument(..., metavar="SRC_DIR", help="The extension's tree (usr/… for a sysext, etc/… for a confext)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="NAME.raw"),
    key: str = typer.Option(..., "--key", "-k", help="file:PATH, a pkcs11: URI, or 'offline' (then use ddi prepare)."),
    cert: Optional[str] = typer.Option(None, "--cert", "--certificate", "-c",
                                       help="The signer's X.509 certificate (PEM or DER; default: the token's, for pkcs11: keys)."),
    kind: str = _TYPE_OPT,
    compress: str = _COMPRESS_OPT,
    seed: Optional[str] = _SEED_OPT,
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture of the partition types (default: this machine's)."),
    epoch: Optional[int] = _EPOCH_OPT,
    release: Optional[List[str]] = _RELEASE_OPT,
    force: bool = typer.Option(False, "--force", help="Replace an existing output file."),
) -> None:
    """Build a signed sysext/confext/portable DDI: erofs + dm-verity + verity-sig, GPT as systemd-repart --make-ddi."""
    from pcrtool import fileio
    from pcrtool.errors import UsageError
    from pcrtool.sign import load_signer
    from pcrtool.verity.roothash_pkcs7 import sign_root_hash

    with load_signer(key, certificate=cert) as signer:
        if signer.is_offline:
            raise UsageError("--key offline cannot sign here", hint="use pcrtool ddi prepare, then ddi attach")
        certificate = signer.certificate()
        if certificate is None:
            raise UsageError("a DDI signature needs the signer's X.509 certificate",
                             hint="pass --cert CERT (the verity-sig partition names the signer by it)")
        _check_output(output, force)
        built, the_arch = _build(kind, src, output, compress, seed, arch, epoch, release)
        der = sign_root_hash(signer, certificate, built.root_hash)
    sig = built.sig_partition(der, certificate)
    with fileio.atomic_writer(output, overwrite=force, what="image") as f:
        built.write(f, sig)
    _summary(built, output, the_arch, {"signed": True})


@app.command()
def prepare(
    src: Path = typer.Argument(..., metavar="SRC_DIR"),
    output: Path = typer.Option(..., "--output", "-o", metavar="NAME.raw",
                                help="The image (its verity-sig partition left empty) and NAME.sign-request.json next to it."),
    cert: Optional[str] = typer.Option(None, "--cert", "--certificate", "-c", help="Bind the request to this certificate's key."),
    kind: str = _TYPE_OPT,
    compress: str = _COMPRESS_OPT,
    seed: Optional[str] = _SEED_OPT,
    arch: Optional[str] = typer.Option(None, "--arch"),
    epoch: Optional[int] = _EPOCH_OPT,
    release: Optional[List[str]] = _RELEASE_OPT,
    force: bool = typer.Option(False, "--force", help="Replace existing output files."),
) -> None:
    """Build the image unsigned and write a verity-roothash signing request for the offline host."""
    from pcrtool import fileio
    from pcrtool.sign.api import require_key
    from pcrtool.sign.keyfile import load_certificate
    from pcrtool.sign.offline import RequestKind, default_tbs_name, new_request, write_request
    from pcrtool.verity.sig_partition import roothash_tbs
    from pcrtool.verity.roothash_pkcs7 import CONSUMER

    certificate = load_certificate(cert) if cert else None
    if certificate is not None:
        require_key(certificate.public_key(), consumer=CONSUMER)
    _check_output(output, force)
    built, the_arch = _build(kind, src, output, compress, seed, arch, epoch, release)
    req_path = output.with_name(output.name[:-4] + ".sign-request.json")
    if not force and req_path.exists():
        raise fileio.InputFileError(f"request {req_path} exists already; refusing to overwrite it",
                                    hint="remove it or pass --force")
    with fileio.atomic_writer(output, overwrite=force, what="image") as f:
        built.write(f, bytes(built.layout.sig_size))
    tbs_name = default_tbs_name(req_path, "roothash")
    item = ("roothash", tbs_name, roothash_tbs(built.root_hash), {"root_hash_algorithm": "sha256"})
    request, blobs = new_request(RequestKind.VERITY_ROOTHASH, [item],
                                 key=certificate, extra={"root_hash": built.root_hash.hex(), "image": output.name})
    write_request(req_path, request, blobs)
    _summary(built, output, the_arch, {"signed": False, "request": str(req_path),
                                       "tbs": str(req_path.parent / tbs_name)})


@app.command()
def attach(
    request: Path = typer.Argument(..., metavar="REQUEST", help="NAME.sign-request.json written by ddi prepare."),
    image: Path = typer.Argument(..., metavar="NAME.raw", help="The image prepare wrote (its verity-sig is filled in place)."),
    cert: str = typer.Option(..., "--cert", "--certificate", "-c", help="The signer's certificate."),
    signature: Optional[Path] = typer.Option(None, "--signature", "-s",
                                             help="Raw signature, DER/PEM PKCS#7 or JSON response "
                                                  "(default: <tbs file>.sig next to the request)."),
) -> None:
    """Check a signature made offline and write it into the image's verity-sig partition."""
    from pcrtool import fileio, render
    from pcrtool.ddi import dps
    from pcrtool.ddi.files import MappedImage
    from pcrtool.ddi.image import dissect
    from pcrtool.errors import FormatError, SignatureError
    from pcrtool.sign.api import certificate_fingerprint, public_key_fingerprint
    from pcrtool.sign.keyfile import load_certificate
    from pcrtool.sign.offline import RequestKind, read_request, read_signatures
    from pcrtool.verity.sig_partition import VeritySig, build_sig_partition, parse_root_hash
    from pcrtool.verity.roothash_pkcs7 import attach_signature

    req, blobs = read_request(request)
    if req.kind is not RequestKind.VERITY_ROOTHASH:
        raise FormatError(f"{request} is a {req.kind.value} request, not verity-roothash")
    root = parse_root_hash(blobs[0], source=f"{request} tbs")
    certificate = load_certificate(cert)
    if req.key is not None and req.key.fingerprint != public_key_fingerprint(certificate.public_key()):
        raise SignatureError("the request was prepared for another key", hint="give the signer's certificate")
    [sig] = read_signatures(request, req, signature)
    attached = attach_signature(sig, certificate, blobs[0], hash_alg=req.hash_alg, padding=req.padding)
    with MappedImage(image) as img:
        d = dissect(img, arch=_image_arch(img), read_release=False)
        des = d.data_designator
        sp = d.used.get(dps.SIG_OF[des]) if des else None
        if sp is None:
            raise FormatError(f"{image} has no verity-sig partition")
        data_p = d.used[des]
        if data_p.uuid.bytes != root[:16]:
            raise SignatureError(f"{image}'s data partition is not the one the request covers "
                                 f"(UUID {data_p.uuid}, request root hash {root.hex()[:32]}…)",
                                 hint="attach to the image prepare wrote")
        blob = build_sig_partition(VeritySig(root, bytes.fromhex(certificate_fingerprint(certificate)),
                                             attached.der), sp.size)
        content = bytearray(img[:])
        content[sp.offset:sp.offset + sp.size] = blob
    fileio.write_atomic(image, bytes(content), what="image")
    out = {"image": str(image), "rootHash": root.hex(),
           "input": "raw signature (wrapped)" if attached.wrapped else "PKCS#7 (kept as given)"}
    if render.json_mode():
        render.emit_json(out)
    else:
        render.emit_text("\n".join(f"{k:>10}: {v}" for k, v in out.items()))


def _image_arch(img) -> str:
    """The architecture of the first DPS root/usr partition of an image."""
    from pcrtool.ddi import dps
    from pcrtool.gpt import read_gpt
    for e in read_gpt(img).entries:
        t = dps.classify(e.type_guid)
        if t and t.designator in ("root", "usr") and t.arch:
            return t.arch
    from pcrtool.errors import FormatError
    raise FormatError("the image has no root or usr partition")
