"""`pcrtool sign-request`: inspect, sign (on the signing host) and check offline signing requests.

``show`` and ``sign`` print the same decoded summary (``pcrtool.sign.request``): what the bytes to
sign say, checked against the context the request carries, never the build host's labels alone.
``sign`` reads every file once, asks for confirmation on a terminal and otherwise needs
``--expect DIGEST`` (the summary digest ``show`` printed); it writes all outputs or none and
appends one audit-log line per signature.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Inspect and sign offline signing requests.")

_IMAGE_HELP = "Authenticode: the PE image; its digest is recomputed and must equal the one being signed."


def _image_digest(image: Optional[Path], req) -> bytes | None:
    if image is None:
        return None
    from pcrtool.errors import UsageError
    from pcrtool.pe.sign import prepare_for_pkcs7
    from pcrtool.sign.host_files import read_regular
    from pcrtool.sign.request.limits import MAX_IMAGE_BYTES

    if req.kind.value != "authenticode":
        raise UsageError("--image applies to authenticode requests only")
    data = read_regular(str(image), MAX_IMAGE_BYTES, what="PE image")
    return prepare_for_pkcs7(data, req.hash_alg).image_digest


def _summary(request: Path, key_fingerprint: str | None, image: Optional[Path]):
    from pcrtool.sign.offline import read_request, summarize_request

    req, blobs = read_request(request)
    summary = summarize_request(req, blobs, key_fingerprint, image_digest=_image_digest(image, req))
    return req, blobs, summary


def _load_policy(policy: Optional[Path]):
    import os

    if policy is None and os.environ.get("PCRTOOL_SIGNING_HOST_POLICY"):
        policy = Path(os.environ["PCRTOOL_SIGNING_HOST_POLICY"])
    if policy is None:
        return None
    from pcrtool import render
    from pcrtool.sign.host_files import read_regular
    from pcrtool.sign.request.host_policy import parse_host_policy
    from pcrtool.sign.request.limits import MAX_MANIFEST_BYTES, quote

    doc = parse_host_policy(read_regular(str(policy), MAX_MANIFEST_BYTES, what="signing-host policy"),
                            source=quote(str(policy)))
    for w in doc.warnings():
        render.warn(w)
    return doc


@app.command()
def show(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
    key: Optional[str] = typer.Option(None, "--key", "-k", metavar="KEY",
                                      help="The key that will sign (public key, certificate or key reference): "
                                           "the summary digest covers it."),
    image: Optional[Path] = typer.Option(None, "--image", metavar="PE", help=_IMAGE_HELP),
    policy: Optional[Path] = typer.Option(None, "--policy", metavar="PATH",
                                          help="Signing-host policy to check the request against "
                                               "(default $PCRTOOL_SIGNING_HOST_POLICY, if set)."),
) -> None:
    """Decode every item, check it against the request's context and show what would be signed."""
    from pcrtool import render

    fp = None
    if key is not None:
        from pcrtool.sign import load_key_material
        from pcrtool.sign.api import public_key_fingerprint
        material = load_key_material(key)
        material.close()
        fp = public_key_fingerprint(material.public_key)
    req, _, summary = _summary(request, fp, image)
    host_policy = _load_policy(policy)
    if host_policy is not None:
        host_policy.check(summary)
    data = {"valid": True, "digest": summary.digest(), "summary": summary.canonical()}
    if render.json_mode():
        render.emit_json(data)
    else:  # straight to the terminal: no pager between the summary and the person approving it
        sys.stdout.write(summary.text(str(request)))
        sys.stdout.flush()


def _confirm(summary, expect: Optional[str]) -> None:
    from pcrtool.errors import MismatchError, UsageError

    digest = summary.digest()
    if expect is not None:
        if expect.strip().lower() != digest:
            raise MismatchError("the request's decoded summary is not the one approved (--expect differs): "
                                "it changed since 'show', or another request was given",
                                hint="run 'pcrtool sign-request show' again and check what it shows")
        return
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("signing without a terminal needs --expect DIGEST",
                         hint="the summary digest 'pcrtool sign-request show REQUEST --key KEY' prints")
    n = len(summary.items)
    sys.stderr.write(f"Sign these {n} item{'s' if n != 1 else ''} with key {summary.key_fingerprint}? "
                     "Type 'yes' to sign: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if answer.strip() != "yes":
        raise UsageError("not confirmed: nothing was signed")


def _refuse_output_over_inputs(request: Path, req, output: Optional[Path]) -> None:
    """``-o`` must not name the manifest or one of its files (nor their signatures)."""
    if output is None:
        return
    import os

    from pcrtool.errors import UsageError
    from pcrtool.sign.request.limits import quote
    names = {request.name} | {it.file for it in req.items} | {it.file + ".sig" for it in req.items}
    try:
        same_dir = os.path.samefile(output.parent if str(output.parent) else ".",
                                    request.parent if str(request.parent) else ".")
    except OSError:
        same_dir = False
    if same_dir and output.name in names:
        raise UsageError(f"--output {quote(str(output))} would overwrite a file of the request",
                         hint="write the response elsewhere")


@app.command()
def sign(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
    key: str = typer.Option(..., "--key", "-k", metavar="KEY",
                            help="file:PATH or a pkcs11: URI (passphrases/PINs from files or env only)."),
    certificate: Optional[str] = typer.Option(None, "--certificate", "--cert", "-c", metavar="PATH",
                                              help="Certificate to include in the response."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="RESPONSE",
                                          help="Write a JSON response here; without it, write one raw "
                                               "signature <tbs file>.sig per item next to the request."),
    expect: Optional[str] = typer.Option(None, "--expect", metavar="DIGEST",
                                         help="The summary digest 'show' printed; required without a terminal."),
    image: Optional[Path] = typer.Option(None, "--image", metavar="PE", help=_IMAGE_HELP),
    policy: Optional[Path] = typer.Option(None, "--policy", metavar="PATH",
                                          help="Signing-host policy: which key may sign which kinds, products, svns "
                                               "(default $PCRTOOL_SIGNING_HOST_POLICY, if set)."),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", metavar="PATH",
                                             help="Append-only audit log (default $PCRTOOL_AUDIT_LOG or "
                                                  "$XDG_STATE_HOME/pcrtool/signing-audit.jsonl)."),
) -> None:
    """Sign every item of a request (run this on the air-gapped signing host)."""
    from pcrtool import render
    from pcrtool.sign import load_signer
    from pcrtool.sign.api import public_key_fingerprint
    from pcrtool.sign.host_files import OutputSet, append_audit, audit_kinds, default_audit_log, now_utc
    from pcrtool.sign.offline import (read_request, sign_request, summarize_request, write_raw_signatures,
                                      write_response)

    audit_path = audit_log if audit_log is not None else default_audit_log()
    host_policy = _load_policy(policy)
    req, blobs = read_request(request)          # every file read once; signed from these bytes
    _refuse_output_over_inputs(request, req, output)
    image_digest = _image_digest(image, req)
    with load_signer(key, certificate=certificate) as signer:
        if signer.is_offline:
            from pcrtool.errors import UsageError
            raise UsageError("cannot answer a signing request with the 'offline' key reference",
                             hint="give --key file:… or a pkcs11: URI")
        fp = public_key_fingerprint(signer.public_key())
        summary = summarize_request(req, blobs, fp, image_digest=image_digest)
        req.consumer_check(signer.public_key())
        if host_policy is not None:
            host_policy.check(summary)
        other_kinds = audit_kinds(audit_path, fp) - {req.kind.value}
        if other_kinds:
            render.warn(f"key {fp} signed {', '.join(sorted(other_kinds))} requests before; use one key per kind")
        sys.stderr.write(summary.text(str(request)))
        sys.stderr.flush()
        _confirm(summary, expect)
        response = sign_request(req, blobs, signer)
    digest = summary.digest()
    with OutputSet() as outputs:
        if output is not None:
            written = write_response(output, response, outputs)
        else:
            written = write_raw_signatures(request, response, outputs)
        when = now_utc()
        append_audit(audit_path, [
            {"time": when, "kind": req.kind.value, "key": fp, "request_digest": digest,
             "request": str(request), "request_version": req.version, "item": it.index,
             "count": len(summary.items), "tbs_sha256": it.sha256, "decoded": dict(it.decoded.values),
             "label_unverified": it.label}
            for it in summary.items])
        outputs.commit()
    data = {"kind": req.kind.value, "key": response.key.to_json(), "digest": digest,
            "written": [str(p) for p in written], "items": [it.label for it, _ in response.signatures],
            "audit_log": str(audit_path)}
    from pcrtool.sign.request.limits import escape
    if render.json_mode():
        render.emit_json(data)
    else:  # no pager: a long list of outputs must not stand between the signature and its report
        sys.stdout.write("".join(escape(str(p)) + "\n" for p in written) +
                         f"signed {len(summary.items)} item(s) with key {fp}\n")
        sys.stdout.flush()


@app.command()
def check(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
    key: str = typer.Option(..., "--key", "-k", metavar="KEY",
                            help="Public key, certificate, or any key reference whose public half to use."),
    response: Optional[Path] = typer.Option(None, "--response", metavar="PATH",
                                            help="JSON response or raw signature (default: <tbs file>.sig)."),
) -> None:
    """Check that the response's signatures cover exactly the request's bytes with this key."""
    from pcrtool import render
    from pcrtool.sign import load_key_material
    from pcrtool.sign.api import public_key_fingerprint
    from pcrtool.sign.offline import check_signatures, read_request, read_signatures

    req, blobs = read_request(request)
    material = load_key_material(key)
    material.close()
    public = material.public_key
    sigs = read_signatures(request, req, response)
    check_signatures(req, sigs, public, blobs)
    data = {"valid": True, "kind": req.kind.value, "key": public_key_fingerprint(public),
            "items": [it.label for it in req.items]}
    render.emit(data, text=f"OK: {len(sigs)} signature(s) by key {data['key']}")
