"""`pcrtool sign-request`: inspect, sign (on the signing host) and check offline signing requests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Inspect and sign offline signing requests.")


@app.command()
def show(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
) -> None:
    """Validate a request (every tbs file against its sha256) and show what would be signed."""
    from pcrtool import render
    from pcrtool.sign.offline import read_request

    req, blobs = read_request(request)
    data = req.to_json() | {"valid": True}
    table = render.Table(["field", "value"], title=str(request))
    table.add("kind", req.kind.value)
    table.add("hash", req.hash_alg.bank_name)
    table.add("padding", req.padding.value)
    table.add("key", f"{req.key.type or '?'} {req.key.fingerprint}" if req.key else "(any)")
    for i, (it, blob) in enumerate(zip(req.items, blobs)):
        table.add(f"tbs[{i}]", f"{it.label}: {it.file} ({len(blob)} bytes) sha256={it.sha256}")
    for name, digest in req.inputs.items():
        table.add(f"input {name}", digest)
    for name, value in req.extra.items():
        table.add(f"extra {name}", value)
    if req.created_by:
        table.add("created by", req.created_by)
    pss = " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest" if req.padding.value == "pss" else ""
    for it in req.items:
        table.add("sign with", f"openssl dgst -{req.hash_alg.bank_name}{pss} -sign KEY "
                               f"-out {it.file}.sig {it.file}")
    render.emit(data, table=table)


@app.command()
def sign(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
    key: str = typer.Option(..., "--key", "-k", metavar="KEY",
                            help="file:PATH or a pkcs11: URI (passphrases/PINs from files or env only)."),
    certificate: Optional[str] = typer.Option(None, "--certificate", "-c", metavar="PATH",
                                              help="Certificate to include in the response."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="RESPONSE",
                                          help="Write a JSON response here; without it, write one raw "
                                               "signature <tbs file>.sig per item next to the request."),
) -> None:
    """Sign every item of a request (run this on the air-gapped signing host)."""
    from pcrtool import render
    from pcrtool.sign import load_signer
    from pcrtool.sign.offline import read_request, sign_request, write_raw_signatures, write_response

    req, blobs = read_request(request)
    with load_signer(key, certificate=certificate) as signer:
        response = sign_request(req, blobs, signer)
    if output is not None:
        write_response(output, response)
        written = [str(output)]
    else:
        written = [str(p) for p in write_raw_signatures(request, response)]
    data = {"kind": req.kind.value, "key": response.key.to_json(), "written": written,
            "items": [it.label for it, _ in response.signatures]}
    render.emit(data, text="\n".join(written))


@app.command()
def check(
    request: Path = typer.Argument(..., metavar="REQUEST", help="The request manifest (JSON)."),
    key: str = typer.Option(..., "--key", "-k", metavar="KEY",
                            help="Public key, certificate, or any key reference whose public half to use."),
    response: Optional[Path] = typer.Option(None, "--response", "-r", metavar="PATH",
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
