"""Test support: a throw-away SoftHSM2 token in a private temp dir.

    with SoftHsm.start(label="pcrtool-test") as hsm:
        hsm.import_key("rsa.pem", label="release", key_id=b"\\x01", certificate="rsa.crt")
        signer = load_signer(hsm.uri("release"))

``start`` points ``$SOFTHSM2_CONF`` at its own configuration for as long as it runs (child
processes such as ``pkcs11-tool`` inherit it) and re-initialises the module if python-pkcs11 had
loaded it already, because SoftHSM reads its configuration and token list at C_Initialize.
The PIN lives in a 0600 file referenced by ``pin-source=file:…``; URIs never contain it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pcrtool import fileio
from pcrtool.errors import ToolError
from pcrtool.tools import run

TEMP_PREFIX = "pcrtool-softhsm-"


def softhsm_module() -> str:
    from pcrtool.sign.pkcs11 import DEFAULT_MODULES
    for cand in DEFAULT_MODULES:
        if os.path.exists(cand):
            return cand
    raise ToolError("SoftHSM2 module not found", hint="apt-get install softhsm2")


def reload_module(module: str) -> None:
    """Make an already-loaded module re-read its configuration (open sessions become invalid)."""
    import pkcs11
    lib = pkcs11._loaded.get(module)  # python-pkcs11's own cache of loaded modules
    if lib is not None and lib.initialized:
        lib.reinitialize()


class SoftHsm:
    def __init__(self, directory: Path, label: str, pin: str, so_pin: str) -> None:
        self.directory = directory
        self.label = label
        self.pin = pin
        self.so_pin = so_pin
        self.module = softhsm_module()
        self.conf = directory / "softhsm2.conf"
        self.pin_file = directory / "user.pin"
        self._old_conf: str | None = None
        self._active = False

    @classmethod
    def start(cls, *, label: str = "pcrtool-test", pin: str = "123456",
              so_pin: str = "12345678") -> "SoftHsm":
        # A test that needs a token needs both halves: skip without them (fail under CI=true).
        from tests.support import need_module, need_tool
        need_tool("softhsm2-util")
        need_module("pkcs11")
        directory = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
        hsm = cls(directory, label, pin, so_pin)
        try:
            (directory / "tokens").mkdir()
            fileio.write_atomic(hsm.conf, f"directories.tokendir = {directory / 'tokens'}\n"
                                          "objectstore.backend = file\nlog.level = ERROR\n"
                                          "slots.removable = false\n")
            fileio.write_private(hsm.pin_file, pin, what="PIN file")
            hsm._old_conf = os.environ.get("SOFTHSM2_CONF")
            os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
            hsm._active = True
            run(["softhsm2-util", "--init-token", "--free", "--label", label,
                 "--pin", pin, "--so-pin", so_pin])
            reload_module(hsm.module)
        except BaseException:
            hsm.stop()
            raise
        return hsm

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def import_key(self, key_pem: "str | os.PathLike", *, label: str, key_id: bytes,
                   certificate: "str | os.PathLike | None" = None, public: bool = True) -> None:
        """Import a private key (any PEM/DER the ``cryptography`` loader reads) and optionally its
        certificate, with softhsm2-util and pkcs11-tool."""
        from cryptography.hazmat.primitives import serialization
        data = fileio.read_bytes(key_pem, what="key file")
        loader = (serialization.load_pem_private_key if b"-----BEGIN" in data
                  else serialization.load_der_private_key)
        key = loader(data, password=None)
        p8 = self.directory / f"import-{label}.p8"
        fileio.write_atomic(p8, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), mode=0o600)
        try:
            argv = ["softhsm2-util", "--import", str(p8), "--token", self.label, "--label", label,
                    "--id", key_id.hex(), "--pin", self.pin]
            if not public:
                argv.append("--no-public-key")
            run(argv)
        finally:
            p8.unlink(missing_ok=True)
        if certificate is not None:
            from cryptography import x509
            cdata = fileio.read_bytes(certificate, what="certificate")
            cert = (x509.load_pem_x509_certificate(cdata) if b"-----BEGIN" in cdata
                    else x509.load_der_x509_certificate(cdata))
            der = self.directory / f"import-{label}.crt.der"
            fileio.write_atomic(der, cert.public_bytes(serialization.Encoding.DER))
            run(["pkcs11-tool", "--module", self.module, "--token-label", self.label, "--login",
                 "--pin", self.pin, "--write-object", str(der), "--type", "cert",
                 "--id", key_id.hex(), "--label", label])
        reload_module(self.module)

    def uri(self, label: str | None = None, *, key_id: bytes | None = None, prehashed: bool = False,
            pin_source: bool = True) -> str:
        """An RFC 7512 URI for an object of this token (PIN by reference to the PIN file)."""
        from urllib.parse import quote
        path = [f"token={quote(self.label, safe='')}"]
        if label is not None:
            path.append(f"object={quote(label, safe='')}")
        if key_id is not None:
            path.append("id=" + "".join(f"%{b:02x}" for b in key_id))
        query = [f"module-path={self.module}"]
        if pin_source:
            query.insert(0, f"pin-source=file:{self.pin_file}")
        if prehashed:
            query.append("x-prehashed=yes")
        return "pkcs11:" + ";".join(path) + "?" + "&".join(query)

    def stop(self) -> None:
        if self._active:
            if self._old_conf is None:
                os.environ.pop("SOFTHSM2_CONF", None)
            else:
                os.environ["SOFTHSM2_CONF"] = self._old_conf
            self._active = False
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "SoftHsm":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
