"""A clevis pin: ``clevis-encrypt-pcrtool`` / ``clevis-decrypt-pcrtool``.

clevis pins are executables: ``clevis-encrypt-PIN CONFIG < PLAINTEXT > JWE`` and
``clevis-decrypt-PIN < JWE > PLAINTEXT`` (compact JWE, RFC 7516). ``clevis luks bind -d DEV pcrtool
CONFIG`` then enrols a LUKS2 keyslot, and clevis' unlock paths (``clevis luks unlock``/``pass``,
its initramfs and dracut hooks) call ``clevis-decrypt-pcrtool``.

Encrypt: 32 random bytes are sealed with ``pcrtool tpm enroll`` in signed mode (PolicyAuthorize
by the release key, the TPM floor counter: downgrade protection); those bytes are the JWE's
content key (``"alg": "dir"``, ``"enc": "A256GCM"``), the same raw 32-byte secret
``pcrtool tpm unlock -o`` writes and ``--recovery-key`` would hold (hex). The enrollment (sealed
object, counter index, pinned SRK Name) travels in the JWE protected header under
``clevis.pcrtool``, with where to find the approvals at unlock time.
Decrypt: the unlock of ``pcrtool tpm unlock`` (``pcrtool.tpm.enroll.unlock``) in this process with
that enrollment and the approvals file; exit 4 when the booted release is not approved or is below
the floor. Decrypt imports no CLI module (no typer/rich): it is what runs in an initramfs.

CONFIG (JSON): ``public_key`` (PEM text or a file: the release signing key, required),
``approvals`` (path of the .pcrsig on the device at unlock time, default
/etc/pcrtool/approvals.pcrsig), ``floor`` (0), ``window`` (16), ``pcrs`` ("11" or [11]),
``bank`` ("sha256"), ``tcti`` (default: $PCRTOOL_TCTI, else device:/dev/tpmrm0),
``counter_index`` (hex), ``enrollment`` (also write the enrollment here, 0600: what
``pcrtool tpm advance-floor``/``status`` take), and ``product``, ``owner_auth_file`` (passed to
``tpm enroll`` as ``--product``/``--owner-auth-file``), ``pin_file`` (``--pin-file`` at enrol
and unlock: the file must be there at unlock time).
"""

from __future__ import annotations

import base64
import json
import os
import sys

PIN = "pcrtool"
DEFAULT_APPROVALS = "/etc/pcrtool/approvals.pcrsig"
SUMMARY = "Encrypts using a TPM2 signed PCR policy with pcrtool's downgrade floor"
_CONFIG_KEYS = {"public_key", "approvals", "floor", "window", "pcrs", "bank", "tcti", "counter_index",
                "enrollment", "product", "owner_auth_file", "pin_file"}
_MAX_PIN = 256  # as `pcrtool tpm unlock --pin-file`


class PinError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise PinError("the JWE is not base64url") from None


def jwe_encrypt(header: dict, key: bytes, plaintext: bytes) -> str:
    """Compact JWE with ``alg: dir``, ``enc: A256GCM`` (RFC 7516 §7.1, RFC 7518 §5.3): the AAD is
    the ASCII base64url of the protected header, the encrypted key is empty."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    protected = _b64url(json.dumps({"alg": "dir", "enc": "A256GCM", **header}, separators=(",", ":")).encode())
    iv = os.urandom(12)
    sealed = AESGCM(key).encrypt(iv, plaintext, protected.encode())
    return ".".join((protected, "", _b64url(iv), _b64url(sealed[:-16]), _b64url(sealed[-16:])))


def jwe_header(compact: str) -> dict:
    parts = compact.strip().split(".")
    if len(parts) != 5:
        raise PinError(f"not a compact JWE ({len(parts)} parts, expected 5)")
    try:
        header = json.loads(_unb64url(parts[0]))
    except ValueError:
        raise PinError("the JWE protected header is not JSON") from None
    if not isinstance(header, dict):
        raise PinError("the JWE protected header is not a JSON object")
    return header


def jwe_decrypt(compact: str, key: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = jwe_header(compact)
    if header.get("alg") != "dir" or header.get("enc") != "A256GCM":
        raise PinError(f"unsupported JWE alg/enc {header.get('alg')}/{header.get('enc')} (expected dir/A256GCM)")
    protected, ek, iv, ct, tag = compact.strip().split(".")
    if ek:
        raise PinError("a dir JWE has an empty encrypted key")
    try:
        return AESGCM(key).decrypt(_unb64url(iv), _unb64url(ct) + _unb64url(tag), protected.encode())
    except (InvalidTag, ValueError):
        raise PinError("the JWE does not decrypt with the unsealed key (corrupted, or another enrollment)") from None


def _relay(proc, what: str) -> None:
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise PinError(f"{what} failed: " + (msg[-1].removeprefix("pcrtool: error: ") if msg else f"exit {proc.returncode}"),
                       proc.returncode)


def _config(text: str) -> dict:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as e:
        raise PinError(f"configuration is not JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(cfg, dict):
        raise PinError("configuration must be a JSON object")
    unknown = sorted(set(cfg) - _CONFIG_KEYS)
    if unknown:
        raise PinError(f"unknown configuration key {unknown[0]!r} (known: {', '.join(sorted(_CONFIG_KEYS))})")
    if not cfg.get("public_key"):
        raise PinError("configuration needs \"public_key\" (PEM text or a file: the release signing key)")
    return cfg


def encrypt(config_text: str, plaintext: bytes) -> str:
    """Enrol with ``pcrtool tpm enroll`` (run as a subprocess: the device CLI's checks and flags are
    the contract) and wrap ``plaintext`` in a JWE keyed by the sealed secret."""
    import subprocess
    import tempfile
    from pathlib import Path

    cfg = _config(config_text)
    pcrs = cfg.get("pcrs", "11")
    pcrs = ",".join(map(str, pcrs)) if isinstance(pcrs, list) else str(pcrs)
    with tempfile.TemporaryDirectory(prefix="pcrtool-clevis-") as tmp:
        d = Path(tmp)
        key = os.urandom(32)
        fd = os.open(d / "secret", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        pub = str(cfg["public_key"])
        if pub.lstrip().startswith("-----BEGIN"):
            (d / "pub.pem").write_text(pub)
            pub = str(d / "pub.pem")
        args = ["tpm", "enroll", "-k", pub, "--floor", str(int(cfg.get("floor", 0))),
                "--window", str(int(cfg.get("window", 16))), "--pcrs", pcrs, "--bank", str(cfg.get("bank", "sha256")),
                "--secret", str(d / "secret"), "-o", str(d / "enrollment.json")]
        if cfg.get("tcti"):
            args += ["--tcti", str(cfg["tcti"])]
        if cfg.get("counter_index"):
            args += ["--counter-index", str(cfg["counter_index"])]
        for opt in ("product", "owner_auth_file", "pin_file"):  # only when given (`tpm enroll --help`)
            if cfg.get(opt):
                args += [f"--{opt.replace('_', '-')}", str(cfg[opt])]
        _relay(subprocess.run([sys.executable, "-m", "pcrtool", *args], capture_output=True), "pcrtool tpm enroll")
        enrollment_text = (d / "enrollment.json").read_text()
        if cfg.get("enrollment"):
            from pcrtool import fileio
            fileio.write_atomic(cfg["enrollment"], enrollment_text, mode=0o600, what="enrollment copy")
    node = {"enrollment": json.loads(enrollment_text), "approvals": str(cfg.get("approvals", DEFAULT_APPROVALS))}
    for opt in ("tcti", "pin_file"):
        if cfg.get(opt):
            node[opt] = str(cfg[opt])
    return jwe_encrypt({"clevis": {"pin": PIN, PIN: node}}, key, plaintext)


def _read_pin(path: str) -> bytes:
    from pcrtool import fileio

    data = fileio.read_bytes(path, what="PIN", limit=_MAX_PIN + 1)
    data = data[:-1] if data.endswith(b"\n") else data
    if not data or len(data) > _MAX_PIN:
        raise PinError(f"the PIN file must hold 1…{_MAX_PIN} bytes", 2)
    return data


def unseal_jwe_key(node: dict) -> bytes:
    """The 32-byte JWE key: ``pcrtool tpm unlock`` of the enrollment in ``node`` (in-process)."""
    from pcrtool import fileio
    from pcrtool.policy.approvals import MAX_APPROVALS_BYTES, Approvals
    from pcrtool.tpm.enroll import unlock
    from pcrtool.tpm.enrollment_file import Enrollment

    enrollment = Enrollment.parse(json.dumps(node["enrollment"]), source="the JWE's clevis.pcrtool.enrollment")
    if getattr(enrollment, "mode", "signed") != "signed":
        raise PinError("the JWE's enrollment is not a signed-mode one")
    path = os.environ.get("PCRTOOL_CLEVIS_APPROVALS") or node.get("approvals") or DEFAULT_APPROVALS
    approvals = Approvals.parse(fileio.read_bytes(path, what="approvals", limit=MAX_APPROVALS_BYTES + 1),
                                source=str(path))
    pin = _read_pin(str(node["pin_file"])) if node.get("pin_file") else None
    secret = unlock(node.get("tcti") or None, enrollment, approvals, pin=pin).secret
    if len(secret) != 32:
        raise PinError(f"the unsealed secret has {len(secret)} bytes, expected the 32-byte JWE key")
    return secret


def decrypt(compact: str) -> bytes:
    header = jwe_header(compact)
    clevis = header.get("clevis") if isinstance(header.get("clevis"), dict) else {}
    if clevis.get("pin") != PIN:
        raise PinError(f"JWE pin mismatch: {clevis.get('pin')!r} is not {PIN!r}")
    node = clevis.get(PIN)
    if not isinstance(node, dict) or not isinstance(node.get("enrollment"), dict):
        raise PinError("JWE is missing clevis.pcrtool.enrollment")
    return jwe_decrypt(compact, unseal_jwe_key(node))


def _run(fn) -> int:
    from pcrtool.errors import PcrtoolError

    try:
        fn()
    except PinError as e:
        print(f"clevis-pcrtool: {e}", file=sys.stderr)
        return e.code
    except PcrtoolError as e:  # pcrtool's one-line errors and exit codes (4: policy refused, 5: no TPM)
        print(f"clevis-pcrtool: {e.message}" + (f" (hint: {e.hint})" if e.hint else ""), file=sys.stderr)
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - a pin reports one line, never a traceback
        print(f"clevis-pcrtool: internal error: {type(e).__name__}: {e} (a bug in pcrtool; please report it)",
              file=sys.stderr)
        return 1
    return 0


def encrypt_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--summary"]:
        print(SUMMARY)
        return 0
    argv = [a for a in argv if a != "-y"]  # clevis luks bind -y passes it on (tang: trust the keys)
    if sys.stdin.isatty() or len(argv) != 1:
        print("Usage: clevis encrypt pcrtool CONFIG < PLAINTEXT > JWE\n\n" + SUMMARY + "\n\n" + __doc__.split(
            "CONFIG (JSON): ")[1].split("\n\n")[0], file=sys.stderr)
        return 2

    def run() -> None:
        sys.stdout.write(encrypt(argv[0], sys.stdin.buffer.read()))
        sys.stdout.flush()
    return _run(run)


def decrypt_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--summary"]:
        print("Decrypts using pcrtool's signed PCR policy with downgrade floor")
        return 0
    if sys.stdin.isatty() or argv:
        print("Usage: clevis decrypt pcrtool < JWE > PLAINTEXT", file=sys.stderr)
        return 2

    def run() -> None:
        plaintext = decrypt(sys.stdin.read())
        sys.stdout.buffer.write(plaintext)
        sys.stdout.flush()
    return _run(run)


def console_encrypt() -> None:  # console script clevis-encrypt-pcrtool
    sys.exit(encrypt_main())


def console_decrypt() -> None:  # console script clevis-decrypt-pcrtool
    sys.exit(decrypt_main())


if __name__ == "__main__":
    verb, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if verb == "encrypt":
        sys.exit(encrypt_main(rest))
    if verb == "decrypt":
        sys.exit(decrypt_main(rest))
    print("usage: python -m pcrtool.clevis.pin encrypt CONFIG | decrypt", file=sys.stderr)
    sys.exit(2)
