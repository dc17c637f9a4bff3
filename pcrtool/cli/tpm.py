"""`pcrtool tpm`: PCRs, NV indices, boot emulation (owned by the TPM layer).

Device-side policy commands (enroll, unlock, advance-floor, status) live in
``pcrtool.cli.tpm_enroll`` and are registered at the bottom of this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from pcrtool.cli.common import new_app

app = new_app("Talk to a TPM: PCRs, NV, enrol, unlock, advance the floor.")
nv_app = new_app("NV indices: define, read, write, increment, set bits, undefine, list.")
app.add_typer(nv_app, name="nv")

TCTI_HELP = "TCTI of the TPM (default: $PCRTOOL_TCTI, else device:/dev/tpmrm0), e.g. swtpm:path=/tmp/…/tpm.sock"


def _tcti_option():
    return typer.Option(None, "--tcti", "-T", help=TCTI_HELP, metavar="TCTI")


def _parse_int(text: str, what: str) -> int:
    from pcrtool.errors import UsageError

    try:
        return int(text, 0)
    except ValueError:
        raise UsageError(f"{what} is not a number: {text!r}", hint="e.g. 0x01800000 or 25165824") from None


def _parse_nv_attrs(text: str) -> int:
    """``ownerread|ownerwrite|authread|no_da|nt=counter`` or a number."""
    from pcrtool.errors import UsageError
    from pcrtool.policy.digests import TPMA_NV

    text = text.strip()
    if text[:1].isdigit():
        return _parse_int(text, "NV attributes")
    value = 0
    for part in text.replace(",", "|").split("|"):
        part = part.strip().lower()
        if not part:
            continue
        if part.startswith("nt="):
            nt = {"ordinary": 0, "counter": TPMA_NV.TPM_NT_COUNTER, "bits": TPMA_NV.TPM_NT_BITS,
                  "extend": TPMA_NV.TPM_NT_EXTEND}.get(part[3:])
            if nt is None:
                raise UsageError(f"unknown NV type {part[3:]!r}", hint="nt=ordinary|counter|bits|extend")
            value |= int(nt)
            continue
        try:
            value |= int(TPMA_NV[part.upper()])
        except KeyError:
            raise UsageError(f"unknown NV attribute {part!r}",
                             hint="e.g. ownerread|ownerwrite|authread|authwrite|no_da|nt=counter") from None
    return value


@app.command("pcrread")
def pcrread(
    selection: str = typer.Argument("sha256:all", help="PCR selection as tpm2-tools writes it: sha256:0,7+sha1:7"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Read PCRs (TPM2_PCR_Read) and print N:bank=hex lines (JSON with --json)."""
    from pcrtool import render
    from pcrtool.model import PcrSelection
    from pcrtool.tpm import open_tpm

    sel = PcrSelection.parse(selection)
    with open_tpm(tcti) as tpm:
        values = tpm.read_pcrs(sel)
    render.emit(values.to_json(), text=values.to_text())


@app.command("extend")
def extend(
    pcr: int = typer.Argument(..., help="PCR index 0…23"),
    digest: List[str] = typer.Option([], "--digest", "-d", metavar="BANK=HEX",
                                     help="digest per bank, e.g. sha256=ab…; repeatable"),
    data: Optional[str] = typer.Option(None, "--data", metavar="TEXT",
                                       help="hash TEXT (UTF-8) for every active bank, like systemd-pcrextend"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Extend a PCR (TPM2_PCR_Extend) and print its new values."""
    from pcrtool import render
    from pcrtool.errors import UsageError
    from pcrtool.model import HashAlg, PcrSelection, parse_hex, parse_pcr_index
    from pcrtool.tpm import open_tpm

    index = parse_pcr_index(str(pcr))
    if bool(digest) == (data is not None):
        raise UsageError("give either --digest BANK=HEX (repeatable) or --data TEXT")
    digests: dict[HashAlg, bytes] = {}
    for item in digest:
        bank, sep, hexval = item.partition("=")
        if not sep:
            raise UsageError(f"--digest {item!r} is not BANK=HEX", hint="e.g. sha256=0123…")
        alg = HashAlg.from_name(bank)
        digests[alg] = parse_hex(hexval, what=f"{alg.bank_name} digest", size=alg.digest_size)
    with open_tpm(tcti) as tpm:
        if data is not None:
            tpm.extend_data(index, data.encode())
            banks = tpm.banks()
        else:
            tpm.extend(index, digests)
            banks = list(digests)
        values = tpm.read_pcrs(PcrSelection({alg: (index,) for alg in banks}))
    render.emit(values.to_json(), text=values.to_text())


@app.command("caps")
def caps(tcti: Optional[str] = _tcti_option()) -> None:
    """Show the TPM: vendor, firmware, PCR banks, policy commands it implements."""
    from pcrtool import render
    from pcrtool.model import HashAlg
    from pcrtool.tpm import open_tpm

    policy_commands = {"PolicyPCR": 0x17F, "PolicyAuthorize": 0x16A, "PolicyAuthorizeNV": 0x192,
                       "PolicyNV": 0x149, "PolicyOR": 0x171, "PolicyCommandCode": 0x16C,
                       "PolicyAuthValue": 0x16B, "PolicySigned": 0x160}
    with open_tpm(tcti) as tpm:
        info = tpm.info()
        banks = [b.bank_name for b in tpm.banks()]
        algs = tpm.algorithms()
        commands = tpm.commands()
    hashes = [a.bank_name for a in HashAlg if int(a) in algs]
    data = {**info, "banks": banks, "hash_algorithms": hashes,
            "ecc": 0x0023 in algs, "rsa": 0x0001 in algs,
            "commands": {name: code in commands for name, code in policy_commands.items()},
            "command_count": len(commands)}
    table = render.Table(["property", "value"])
    for key in ("manufacturer", "vendor", "firmware", "spec_revision"):
        table.add(key, data[key])
    table.add("pcr banks", ", ".join(banks))
    table.add("hash algorithms", ", ".join(hashes))
    table.add("rsa / ecc", f"{'yes' if data['rsa'] else 'no'} / {'yes' if data['ecc'] else 'no'}")
    for name, ok in data["commands"].items():
        table.add(name, "yes" if ok else "NO")
    render.emit(data, table=table)


@app.command("replay-log")
def replay_log(
    log: Path = typer.Argument(..., help="binary event log (e.g. a copy of binary_bios_measurements)"),
    tcti: Optional[str] = _tcti_option(),
    bank: List[str] = typer.Option([], "--bank", "-b", help="replay only these banks (default: the log's)"),
) -> None:
    """Emulate a boot: extend every event of LOG into a freshly started TPM.

    One TPM2_PCR_Extend per event, then the TPM's PCRs are compared with the pure replay. PCRs that
    cannot be reproduced (PCR 0 of StartupLocality 3 / H-CRTM logs, events without a digest) are
    listed, not faked. Exit 3 if the TPM ends up anywhere else.
    """
    from pcrtool import render
    from pcrtool.errors import ReplayMismatch
    from pcrtool.eventlog import parse_event_log
    from pcrtool.fileio import read_bytes
    from pcrtool.model import HashAlg
    from pcrtool.tpm import open_tpm
    from pcrtool.tpm.replay import replay_log_into_tpm

    parsed = parse_event_log(read_bytes(log, what="event log"))
    banks = [HashAlg.from_name(b) for b in bank] or None
    with open_tpm(tcti) as tpm:
        report = replay_log_into_tpm(tpm, parsed, banks=banks)
    for (alg, pcr), reason in sorted(report.unreproducible.items()):
        render.warn(f"PCR {pcr} ({alg.bank_name}) cannot be reproduced: {reason}")
    if any(pcr == 0 for _, pcr in report.unreproducible) and report.startup_locality == 3 and not report.hcrtm:
        render.info("hint: on swtpm, `pcrtool swtpm reboot --startup-locality 3` before the replay "
                    "makes PCR 0 reproducible")
    for alg in report.missing_banks:
        render.warn(f"the TPM has no active {alg.bank_name} bank; not replayed")
    table = render.Table(["pcr", "bank", "value", "status"])
    for v in report.actual:
        status = "unreproducible" if (v.alg, v.pcr) in report.unreproducible else (
            "ok" if report.expected.get(v.alg, v.pcr) == v.value else "MISMATCH")
        table.add(v.pcr, v.alg.bank_name, v.value.hex(), status)
    render.emit(report.to_json(), table=table)
    mismatches = report.mismatches()
    if mismatches:
        raise ReplayMismatch(f"{len(mismatches)} PCR(s) differ from the replay after extending: "
                             + ", ".join(f"{p}:{a.bank_name}" for a, p in mismatches),
                             hint="was the TPM freshly started?", pcrs=tuple(p for _, p in mismatches))


# --- NV ------------------------------------------------------------------------------------------
def _nv_row(pub) -> dict:
    return {"index": f"0x{pub.index:08x}", "type": pub.type_name, "size": pub.size,
            "attributes": f"0x{pub.attributes:08x}", "written": pub.written,
            "name": pub.name.hex(), "auth_policy": pub.auth_policy.hex()}


@nv_app.command("define")
def nv_define(
    index: str = typer.Argument(..., help="NV index, e.g. 0x01800000"),
    size: int = typer.Option(8, "--size", help="data size in bytes (counters and bits: 8)"),
    attributes: str = typer.Option("ownerread|ownerwrite|authread|authwrite|no_da", "--attributes",
                                   help="TPMA_NV names joined by | plus nt=ordinary|counter|bits|extend, or a number"),
    policy: Optional[str] = typer.Option(None, "--policy", help="authPolicy digest (hex)"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Define an NV index in the owner hierarchy (TPM2_NV_DefineSpace)."""
    from pcrtool import render
    from pcrtool.model import parse_hex
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        pub = tpm.nv_define(_parse_int(index, "NV index"), size, _parse_nv_attrs(attributes),
                            policy=parse_hex(policy, what="policy digest") if policy else b"")
    row = _nv_row(pub)
    render.emit(row, text=f"defined {row['index']} ({row['type']}, {row['size']} bytes), name {row['name']}")


@nv_app.command("undefine")
def nv_undefine(index: str = typer.Argument(...), tcti: Optional[str] = _tcti_option()) -> None:
    """Delete an NV index (TPM2_NV_UndefineSpace, owner authorization)."""
    from pcrtool import render
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        tpm.nv_undefine(_parse_int(index, "NV index"))
    render.emit({"index": index, "undefined": True}, text=f"undefined {index}")


@nv_app.command("read")
def nv_read(
    index: str = typer.Argument(...),
    size: Optional[int] = typer.Option(None, "--size", help="bytes to read (default: whole index)"),
    offset: int = typer.Option(0, "--offset"),
    owner: bool = typer.Option(False, "--owner", help="authorize with the owner hierarchy (OWNERREAD)"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Read an NV index (TPM2_NV_Read) as hex; counters/bits also as a number."""
    from pcrtool import render
    from pcrtool.tpm import open_tpm

    idx = _parse_int(index, "NV index")
    with open_tpm(tcti) as tpm:
        pub = tpm.nv_read_public(idx)
        data = tpm.nv_read(idx, size, offset, auth="owner" if owner else "index")
    out = {"index": f"0x{idx:08x}", "type": pub.type_name, "data": data.hex()}
    if pub.type_name in ("counter", "bits") and len(data) == 8:
        out["value"] = int.from_bytes(data, "big")
    render.emit(out, text=str(out["value"]) if "value" in out else data.hex())


@nv_app.command("write")
def nv_write(
    index: str = typer.Argument(...),
    hex_data: str = typer.Argument(..., metavar="HEX", help="data to write, as hex"),
    offset: int = typer.Option(0, "--offset"),
    owner: bool = typer.Option(False, "--owner", help="authorize with the owner hierarchy (OWNERWRITE)"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Write an ordinary NV index (TPM2_NV_Write)."""
    from pcrtool import render
    from pcrtool.model import parse_hex
    from pcrtool.tpm import open_tpm

    data = parse_hex(hex_data, what="NV data")
    with open_tpm(tcti) as tpm:
        tpm.nv_write(_parse_int(index, "NV index"), data, offset, auth="owner" if owner else "index")
    render.emit({"index": index, "written": len(data)}, text=f"wrote {len(data)} bytes to {index}")


@nv_app.command("increment")
def nv_increment(
    index: str = typer.Argument(...),
    owner: bool = typer.Option(False, "--owner", help="authorize with the owner hierarchy (OWNERWRITE)"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """Increment a counter index (TPM2_NV_Increment) and print the new value."""
    from pcrtool import render
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        value = tpm.nv_increment(_parse_int(index, "NV index"), auth="owner" if owner else "index")
    render.emit({"index": index, "value": value}, text=str(value))


@nv_app.command("setbits")
def nv_setbits(
    index: str = typer.Argument(...),
    bits: str = typer.Argument(..., help="bits to set, e.g. 0x5"),
    owner: bool = typer.Option(False, "--owner"),
    tcti: Optional[str] = _tcti_option(),
) -> None:
    """OR bits into a bit-field index (TPM2_NV_SetBits) and print the new value."""
    from pcrtool import render
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        value = tpm.nv_set_bits(_parse_int(index, "NV index"), _parse_int(bits, "bits"),
                                auth="owner" if owner else "index")
    render.emit({"index": index, "value": value}, text=f"0x{value:x}")


@nv_app.command("list")
def nv_list(tcti: Optional[str] = _tcti_option()) -> None:
    """List NV indices with type, size, attributes and Name (TPM2_GetCapability + TPM2_NV_ReadPublic)."""
    from pcrtool import render
    from pcrtool.tpm import open_tpm

    with open_tpm(tcti) as tpm:
        rows = [_nv_row(tpm.nv_read_public(i)) for i in tpm.nv_indices()]
    table = render.Table(["index", "type", "size", "attributes", "name"])
    for r in rows:
        table.add(r["index"], r["type"], r["size"], r["attributes"], r["name"])
    render.emit(rows, table=table)


# --- keep this at the end: device-side policy commands (pcrtool/cli/tpm_enroll.py) ---
from pcrtool.cli.tpm_enroll import register as _register_enroll  # noqa: E402

_register_enroll(app)
from pcrtool.cli.tpm_boot import register as _register_boot  # noqa: E402

_register_boot(app)
