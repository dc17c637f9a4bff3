"""`pcrtool policy digest | approve | prepare | attach | show`: signed PCR policies (.pcrsig)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Compute policy digests and sign release approvals (.pcrsig).")

_RELEASES_HELP = ("Releases JSON ({\"releases\": [{name, version, svn, measurements|predicted}]}) "
                  "or a predictions file from `pcrtool predict release`.")


def _targets(releases_path: Path, bank_names: str, pcrs: Optional[str], *, svn: bool, all_releases: bool):
    from pcrtool import fileio
    from pcrtool.model import HashAlg
    from pcrtool.policy.approvals import ApprovalTarget
    from pcrtool.policy.releases_file import parse_releases, selected_pcrs

    releases, doc = parse_releases(fileio.read_text(releases_path, what="releases"), source=str(releases_path))
    banks = [HashAlg.from_name(b) for b in bank_names.split(",") if b.strip()]
    targets = []
    for bank in banks:
        chosen = selected_pcrs(releases, bank, [int(p) for p in pcrs.split(",")] if pcrs else None)
        for r in releases:
            if not r.allowed and not all_releases:
                continue
            for values in r.all_predicted:
                sel = _select(values, bank, chosen)
                if sel is not None:
                    targets.append(ApprovalTarget(sel, r.svn if svn else None, r.label))
    if not targets:
        raise _nothing_to_approve(releases, releases_path, banks, all_releases)
    return targets, banks, doc


def _nothing_to_approve(releases, releases_path, banks, all_releases):
    """"nothing to approve" with the reason (exit 1: an error in the inputs, not in the usage)."""
    from pcrtool.errors import PcrtoolError

    if not releases:
        return PcrtoolError(f"nothing to approve: {releases_path} lists no releases",
                            hint="predict releases first: pcrtool predict release MANIFEST… -o FILE")
    excluded = [r.label for r in releases if not r.allowed]
    if len(excluded) == len(releases) and not all_releases:
        return PcrtoolError(f"nothing to approve: all {len(releases)} release(s) in {releases_path} are marked "
                            f"not allowed ({', '.join(excluded[:5])}{'…' if len(excluded) > 5 else ''})",
                            hint="check the allowlist (name, version and svn must all match; `pcrtool "
                                 "predict release` warns about entries that match nothing), or pass --all")
    names = ",".join(b.bank_name for b in banks)
    return PcrtoolError(f"nothing to approve: no release in {releases_path} has predicted PCR values in "
                        f"bank(s) {names}", hint="choose --banks the predictions carry")


def _select(values, bank, pcrs):
    from pcrtool.model import PcrValues

    if bank not in values.values:
        return None
    out = PcrValues()
    for p in pcrs:
        v = values.get(bank, p)
        out.set(bank, p, v if v is not None else bank.zero)
    return out


def _write_or_print(data: str, output: Optional[Path]) -> None:
    from pcrtool import fileio, render

    if output is None:
        render.emit_text(data)
    else:
        fileio.write_atomic(output, data, what="approvals")
        if not fileio.is_stdout(output):
            render.info(f"pcrtool: wrote {output}")


def _check_output(output: Optional[Path], *, append: bool, force: bool, what: str = "approvals file") -> None:
    """Approvals files are release state: refuse to replace one silently (before any signing)."""
    from pcrtool import fileio
    from pcrtool.errors import InputFileError, UsageError

    if append and force:
        raise UsageError("--append and --force contradict each other", hint="--append merges, --force replaces")
    if output is None:
        if append:
            raise UsageError("--append needs --output (the file to merge into)")
        return
    if append and (fileio.is_stdout(output) or str(output).startswith("/dev/")):
        raise UsageError("--append needs a file to merge into, not a stream")
    if not append and not force:
        try:
            fileio.check_new_output(output, what=what)
        except InputFileError as e:
            raise InputFileError(e.message, hint="pass --append to add these entries to it, or --force "
                                                 "to replace it") from None


def _merge(approvals, output: Optional[Path], append: bool):
    from pcrtool import fileio
    from pcrtool.errors import PcrtoolError
    from pcrtool.policy.approvals import Approvals

    if not append or output is None or not output.exists():
        return approvals
    old = Approvals.parse(fileio.read_text(output, what="approvals"), source=str(output))
    old_keys = {e.pkfp for e in old.entries}
    new_keys = {e.pkfp for e in approvals.entries}
    if old_keys and new_keys and old_keys != new_keys:
        raise PcrtoolError(f"{output} holds approvals signed by key pkfp {', '.join(sorted(k.hex()[:16] for k in old_keys))}"
                           f"…, these are signed by {', '.join(sorted(k.hex()[:16] for k in new_keys))}…; "
                           "refusing to mix two keys in one file",
                           hint="one approvals file per signing key: write to another --output")
    return old.merged(approvals.entries)


def _check_key_for_tpm(public_key, *, ecdsa: bool) -> None:
    """Explain at approve time what the TPM will refuse at unlock time (PolicyAuthorize loads the
    approval key with TPM2_LoadExternal). TCG PC Client Platform TPM Profile (PTP) for TPM 2.0:
    RSA-2048 and ECC NIST P-256 are mandatory, RSA-3072 and P-384 optional, RSA-4096 absent;
    systemd (cryptsetup, measure) verifies RSA approvals only."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from pcrtool import render
    from pcrtool.errors import UnsupportedError

    caps_hint = "check `pcrtool tpm caps` on your devices"
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits > 3072:
            raise UnsupportedError(
                f"an RSA-{bits} approval key cannot be loaded by TPM 2.0 devices: the TCG PC Client "
                "TPM profile mandates RSA-2048 and allows RSA-3072, nothing larger (unlock would fail "
                "in TPM2_LoadExternal with TPM_RC_VALUE)",
                hint="sign approvals with an RSA-2048 key (or RSA-3072 where every device supports it)")
        if bits == 3072:
            render.warn(f"RSA-3072 is optional in the TCG PC Client TPM profile (RSA-2048 is mandatory): "
                        f"{caps_hint} before shipping these approvals")
        elif bits < 2048:
            raise UnsupportedError(f"an RSA-{bits} approval key is too small for TPM 2.0 devices",
                                   hint="use an RSA-2048 key")
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        name = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(public_key.curve.name, public_key.curve.name)
        if not ecdsa:
            return  # require_rsa refuses it with its own reason
        if name == "P-384":
            render.warn(f"ECC {name} is optional in the TCG PC Client TPM profile (P-256 is mandatory): {caps_hint}")
        render.warn(f"ECDSA {name} approvals are verified by pcrtool's unlock only: systemd-cryptsetup and "
                    "systemd-measure verify RSA approvals (PolicyAuthorize with RSASSA) only")


@app.command()
def digest(
    pcr_values: Optional[str] = typer.Option(None, "--pcr-values", metavar="VALUES|FILE",
                                             help="PCR values: 11:sha256=<hex>,… or a file (any format "
                                                  "`pcrtool` reads)."),
    releases: Optional[Path] = typer.Option(None, "--releases", "-r", help=_RELEASES_HELP),
    pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs to bind with --releases, e.g. 7,11."),
    bank: str = typer.Option("sha256", "--bank", help="Bank for --releases."),
    public_key: Optional[str] = typer.Option(None, "--public-key", "-k", metavar="FILE",
                                             help="Also show PolicyAuthorize with this key (what a "
                                                  "systemd-cryptenroll --tpm2-public-key object is sealed to)."),
) -> None:
    """Show PolicyPCR digests (per bank), an allowlist PolicyOR root, or a PolicyAuthorize digest."""
    from pcrtool import fileio, render
    from pcrtool.errors import UsageError
    from pcrtool.model import PcrValues
    from pcrtool.policy import digests

    out: dict = {}
    if pcr_values:
        text = fileio.read_text(pcr_values, what="PCR values") if Path(pcr_values).is_file() \
            else pcr_values.replace(",", "\n")
        values = PcrValues.parse(text, source="--pcr-values")
        out["policy_pcr"] = {alg.bank_name: digests.policy_pcr(PcrValues({alg: dict(v)})).hex()
                             for alg, v in values.values.items()}
    if releases:
        from pcrtool.policy.allowlist import build_allowlist_policy
        targets, _, _ = _targets(releases, bank, pcrs, svn=True, all_releases=False)
        policy = build_allowlist_policy([(t.label, t.values) for t in targets])
        out["allowlist"] = {"releases": len(targets), "leaves": len(policy.leaves),
                            "depth": len(policy.tree.levels) - 1, "root": policy.root.hex(),
                            "leaf_digests": {t.label: policy.leaves[policy.leaf_of[t.label]].hex()
                                             for t in targets}}
    if public_key:
        from pcrtool.sign.keyfile import load_public_key_file
        key = load_public_key_file(public_key)
        out["key_name"] = digests.public_key_name(key).hex()
        out["pkfp"] = digests.public_key_fingerprint(key).hex()
        out["policy_authorize"] = digests.policy_authorize(digests.public_key_name(key)).hex()
    if not out:
        raise UsageError("nothing to compute", hint="give --pcr-values, --releases or --public-key")
    lines = []
    for bank_name, d in out.get("policy_pcr", {}).items():
        lines.append(f"policy-pcr {bank_name} {d}")
    if "allowlist" in out:
        a = out["allowlist"]
        lines.append(f"allowlist-root {a['root']} ({a['leaves']} leaves, depth {a['depth']})")
    if "policy_authorize" in out:
        lines.append(f"key-name {out['key_name']}")
        lines.append(f"policy-authorize {out['policy_authorize']}")
    render.emit(out, text="\n".join(lines))


@app.command()
def approve(
    releases: Path = typer.Option(..., "--releases", "-r", help=_RELEASES_HELP),
    key: str = typer.Option(..., "--key", "-k", help="Signing key: file:PATH, PATH or a pkcs11: URI."),
    certificate: Optional[str] = typer.Option(None, "--certificate", help="Certificate for the key."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the .pcrsig JSON here."),
    append: bool = typer.Option(False, "--append", help="Merge into an existing --output file (same key only)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output file."),
    pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs to bind, e.g. 11 (default: all "
                                                           "PCRs the releases set)."),
    banks: str = typer.Option("sha256", "--banks", help="Comma-separated banks (sha1,sha256,sha384,sha512)."),
    no_svn: bool = typer.Option(False, "--no-svn", help="Plain systemd entries without policyRef "
                                                        "(no downgrade protection)."),
    all_releases: bool = typer.Option(False, "--all", help="Also approve releases marked not allowed."),
    product: str = typer.Option("", "--product", help="Product/channel id the approvals are for (enters the "
                                "policyRef: a device enrolled for another product refuses them)."),
    ecdsa: bool = typer.Option(False, "--ecdsa", help="Allow an ECDSA P-256 key: pcrtool's unlock "
                                                      "verifies it, systemd (<= 259) cannot."),
) -> None:
    """Sign approvals for every allowlisted release, phase and bank (RSASSA-PKCS1-v1_5/SHA-256 over
    approvedPolicy || policyRef, where policyRef carries the svn)."""
    from pcrtool.policy.approvals import Approvals, build_entries, sign_entries, signer_callable, verify_entry
    from pcrtool.sign import load_signer
    from pcrtool.errors import UsageError

    _check_output(output, append=append, force=force)
    with load_signer(key, certificate=certificate) as signer:
        if getattr(signer, "is_offline", False):
            raise UsageError("an offline key cannot sign here", hint="use `pcrtool policy prepare` and `attach`")
        if not ecdsa:
            # systemd-cryptsetup/-measure verify RSA approvals only: refuse what they cannot check.
            signer.require_rsa(consumer="systemd signed PCR policy (pass --ecdsa for pcrtool-only approvals)")
        _check_key_for_tpm(signer.public_key(), ecdsa=ecdsa)
        targets, bank_list, _ = _targets(releases, banks, pcrs, svn=not no_svn, all_releases=all_releases)
        entries = sign_entries(build_entries(targets, signer.public_key(), bank_list, product=product),
                               signer_callable(signer))
        for e in entries:
            verify_entry(e, signer.public_key())
    doc = _merge(Approvals(tuple(entries)), output, append)
    _write_or_print(doc.dumps(pretty=False), output)


@app.command()
def prepare(
    releases: Path = typer.Option(..., "--releases", "-r", help=_RELEASES_HELP),
    public_key: str = typer.Option(..., "--public-key", "-k", help="Public key or certificate of the signing key."),
    output: Path = typer.Option(..., "--output", "-o", help="Unsigned .pcrsig JSON (entries carry tbs)."),
    request: Optional[Path] = typer.Option(None, "--request", help="Also write a pcrtool signing request "
                                           "(one tbs file per entry) for `pcrtool sign-request sign`."),
    pcrs: Optional[str] = typer.Option(None, "--pcrs", help="PCRs to bind."),
    banks: str = typer.Option("sha256", "--banks", help="Comma-separated banks."),
    no_svn: bool = typer.Option(False, "--no-svn", help="Entries without policyRef."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output file."),
    product: str = typer.Option("", "--product", help="Product/channel id the approvals are for."),
) -> None:
    """Offline signing, step 1: write the unsigned approvals; every entry's ``tbs`` is signed as-is."""
    from pcrtool import fileio, render
    from pcrtool.policy.approvals import Approvals, build_entries
    from pcrtool.sign.keyfile import load_public_key_file

    _check_output(output, append=False, force=force, what="unsigned approvals")
    key = load_public_key_file(public_key)
    _check_key_for_tpm(key, ecdsa=True)
    targets, bank_list, _ = _targets(releases, banks, pcrs, svn=not no_svn, all_releases=False)
    doc = Approvals(tuple(build_entries(targets, key, bank_list, product=product)))
    written = [output]
    if request is not None:
        from pcrtool.sign.offline import default_tbs_name, new_request, write_request
        from pcrtool.model import PcrValues
        from pcrtool.policy.digests import policy_pcr
        # The signing host recomputes each tbs from the PCR values, bank and ref: carry them.
        values = {}
        for t in targets:
            for bank, pcrs in t.values.values.items():
                single = PcrValues({bank: dict(pcrs)})
                values[(bank, policy_pcr(single))] = {str(i): v.hex() for i, v in sorted(pcrs.items())}
        items = [(f"{e.bank.bank_name} {e.pol.hex()[:16]} {e.ref or ''}".strip(),
                  default_tbs_name(request, f"{i}.tbs"), e.tbs,
                  {"bank": e.bank.bank_name, "pcrs": values[(e.bank, e.pol)], "ref": e.ref})
                 for i, e in enumerate(doc.entries)]
        req, blobs = new_request("pcr-policy", items, key=key)
        written += [request] + [request.parent / it.file for it in req.items]
    from pcrtool.cli.common import NewFilesOnly
    with NewFilesOnly(written):  # all or nothing: the approvals file is written last
        if request is not None:
            write_request(request, req, blobs)
        fileio.write_atomic(output, doc.dumps(pretty=True), what="unsigned approvals")
    render.info(f"pcrtool: wrote {output} ({len(doc.entries)} entries to sign)")


@app.command()
def attach(
    unsigned: Path = typer.Argument(..., help="The unsigned .pcrsig from `prepare`."),
    public_key: str = typer.Option(..., "--public-key", "-k", help="Public key or certificate."),
    request: Optional[Path] = typer.Option(None, "--request", help="The signing request from `prepare`."),
    response: Optional[Path] = typer.Option(None, "--response", help="JSON response (default: "
                                            "<tbs file>.sig next to the request)."),
    signatures: Optional[Path] = typer.Option(None, "--signatures", help="Or a JSON map {tbs hex: base64 sig}."),
    output: Path = typer.Option(..., "--output", "-o", help="Signed .pcrsig to write."),
    append: bool = typer.Option(False, "--append", help="Merge into an existing --output file (same key only)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --output file."),
) -> None:
    """Offline signing, step 2: fill every entry's ``sig``; each signature is verified first."""
    import base64
    import json

    from pcrtool import fileio
    from pcrtool.errors import FormatError, UsageError
    from pcrtool.policy.approvals import Approvals, attach_signatures
    from pcrtool.sign.keyfile import load_public_key_file

    _check_output(output, append=append, force=force)
    key = load_public_key_file(public_key)
    doc = Approvals.parse(fileio.read_text(unsigned, what="unsigned approvals"), source=str(unsigned))
    sigs: dict[bytes, bytes] = {}
    if request is not None:
        from pcrtool.sign.offline import check_signatures, read_request, read_signatures
        req, blobs = read_request(request)
        got = read_signatures(request, req, response)
        check_signatures(req, got, key, blobs)
        sigs.update(zip(blobs, got))
    elif signatures is not None:
        try:
            raw = json.loads(fileio.read_text(signatures, what="signatures"))
            sigs.update({bytes.fromhex(k): base64.b64decode(v) for k, v in raw.items()})
        except (ValueError, AttributeError) as e:
            raise FormatError(f"{signatures}: expected {{\"<tbs hex>\": \"<base64>\"}}: {e}") from None
    else:
        raise UsageError("give --request (pcrtool signing request) or --signatures")
    signed = _merge(attach_signatures(doc, sigs, key), output, append)
    _write_or_print(signed.dumps(), output)


@app.command()
def show(
    approvals: Path = typer.Argument(..., help="A .pcrsig JSON (pcrtool or systemd-measure)."),
    public_key: Optional[str] = typer.Option(None, "--public-key", "-k",
                                             help="Verify every signature with this key (SHA-256)."),
) -> None:
    """List the entries of an approvals file (bank, PCRs, svn, pol) and check signatures."""
    from pcrtool import fileio, render
    from pcrtool.errors import PcrtoolError, SignatureError
    from pcrtool.policy.approvals import Approvals, verify_entry
    from pcrtool.render import Table

    from pcrtool.policy.approvals import MAX_APPROVALS_BYTES
    # bounded read: a huge file is refused by its size, never loaded whole
    doc = Approvals.parse(fileio.read_bytes(approvals, what="approvals", limit=MAX_APPROVALS_BYTES + 1),
                          source=str(approvals))
    key = None
    if public_key:
        from pcrtool.sign.keyfile import load_public_key_file
        key = load_public_key_file(public_key)
    rows, bad = [], 0
    for e in doc.entries:
        status = "unsigned" if e.sig is None else "signed"
        if key is not None and e.sig is not None:
            try:
                verify_entry(e, key)
                status = "valid"
            except PcrtoolError:
                status, bad = "INVALID", bad + 1
        rows.append({"bank": e.bank.bank_name, "pcrs": list(e.pcrs), "svn": e.svn, "ref": e.ref,
                     "pol": e.pol.hex(), "pkfp": e.pkfp.hex(), "signature": status})
    t = Table(["bank", "pcrs", "svn", "pol", "pkfp", "signature"])
    for r in rows:
        t.add(r["bank"], ",".join(map(str, r["pcrs"])), "-" if r["svn"] is None else r["svn"], r["pol"],
              r["pkfp"], r["signature"])
    render.emit({"entries": rows}, table=t)
    if bad:
        from pcrtool.policy.digests import public_key_fingerprint
        want = public_key_fingerprint(key).hex()
        signed_by = sorted({r["pkfp"] for r in rows} - {want})
        if signed_by:
            raise SignatureError(f"{bad} signature(s) do not verify: the approvals are signed by key pkfp "
                                 f"{', '.join(signed_by)}, {public_key} has pkfp {want}",
                                 hint="give the public key of the signing key (`pcrtool key fingerprint` "
                                      "prints a key's pkfp)")
        raise SignatureError(f"{bad} signature(s) do not verify with {public_key}")
