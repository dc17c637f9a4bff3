"""Keys and sealed objects: SRK, seal/unseal, external verification keys (TPM 2.0 Part 3 §12, §17, §20, §24, §28).

Blobs are the marshalled TPM2B_PUBLIC / TPM2B_PRIVATE, the same bytes tpm2-tools writes to
``.pub`` / ``.priv`` files (``tpm2_load -u … -r …`` accepts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Union

from tpm2_pytss.constants import ESYS_TR, TPM2_RH, TPM2_ST, TPMA_SESSION
from tpm2_pytss.types import (TPM2B_PRIVATE, TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE, TPMT_PUBLIC,
                              TPMT_SIGNATURE, TPMT_TK_VERIFIED)

from pcrtool.errors import KeyError_, TpmError, UsageError
from pcrtool.model import HashAlg
from pcrtool.tpm.marshal import (MAX_SEALED_SIZE, SRK_PERSISTENT_HANDLE, TPM_ALG_ECDSA,
                                 TPM_ALG_RSAPSS, TPM_ALG_RSASSA, marshal_signature,
                                 sealed_object_template, sensitive_create, srk_template, tpm2b)

PERSISTENT_FIRST = 0x81000000


@dataclass(slots=True)
class KeyHandle:
    """A loaded object: its ESYS_TR, Name and public area; ``transient`` ones must be flushed."""

    handle: object  # ESYS_TR
    name: bytes
    public: bytes  # marshalled TPM2B_PUBLIC
    transient: bool = True


class SealedBlob(NamedTuple):
    """A sealed object as ``(public, private)``: marshalled TPM2B_PUBLIC and TPM2B_PRIVATE."""

    public: bytes
    private: bytes


Parent = Union[KeyHandle, int, None]


class ObjectsMixin:
    """Key/object methods of ``Tpm`` (needs ``self.esys`` and ``self._call``)."""

    # -- primary keys (Part 3 §24.1 CreatePrimary)
    def create_primary_srk(self, noda: bool = True, *, alg: str | None = None) -> KeyHandle:
        """TPM2_CreatePrimary (Part 3 §24.1) in the owner hierarchy with the TCG SRK template:
        ECC P-256 first, RSA-2048 if the TPM lacks P-256 (or ``alg="rsa"``)."""
        errors = []
        for candidate in ([alg] if alg else ["ecc", "rsa"]):
            template = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC.unmarshal(srk_template(candidate, noda=noda))[0])
            try:
                handle, public, *_ = self._call("TPM2_CreatePrimary", self.esys.create_primary,
                                                TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.OWNER,
                                                context=f"SRK {candidate}")
            except TpmError as e:
                errors.append(e)
                continue
            return KeyHandle(handle, bytes(self.esys.tr_get_name(handle)), public.marshal(), True)
        raise errors[-1]

    def load_persistent(self, handle: int) -> KeyHandle:
        """A persistent object (e.g. the SRK at 0x81000001) via Esys_TR_FromTPMPublic (TPM2_ReadPublic)."""
        if not PERSISTENT_FIRST <= handle <= 0x81FFFFFF:
            raise UsageError(f"0x{handle:08x} is not a persistent handle", hint="use 0x81000000…0x81ffffff")
        tr = self._call("TPM2_ReadPublic", self.esys.tr_from_tpmpublic, handle,
                        context=f"persistent handle 0x{handle:08x}")
        public, name, _ = self._call("TPM2_ReadPublic", self.esys.read_public, tr)
        return KeyHandle(tr, bytes(name), public.marshal(), transient=False)

    def srk(self, persistent: int | None = SRK_PERSISTENT_HANDLE, *, noda: bool = True) -> KeyHandle:
        """The persistent SRK if one is at ``persistent`` (TPM2_ReadPublic), else a transient
        TPM2_CreatePrimary with the SRK template (same key: primaries are derived from the seed)."""
        if persistent is not None and persistent in self.persistent_handles():
            return self.load_persistent(persistent)
        return self.create_primary_srk(noda=noda)

    def persist(self, key: KeyHandle, handle: int = SRK_PERSISTENT_HANDLE) -> KeyHandle:
        """TPM2_EvictControl (Part 3 §28.5, owner auth): make a transient key persistent at
        ``handle`` (0x81000000…0x81ffffff). The transient copy stays loaded; flush it yourself."""
        if not PERSISTENT_FIRST <= handle <= 0x81FFFFFF:
            raise UsageError(f"0x{handle:08x} is not a persistent handle", hint="use 0x81000000…0x81ffffff")
        tr = self._call("TPM2_EvictControl", self.esys.evict_control, ESYS_TR.OWNER, key.handle, handle,
                        context=f"persistent handle 0x{handle:08x}")
        return KeyHandle(tr, key.name, key.public, transient=False)

    def evict(self, handle: int) -> None:
        """TPM2_EvictControl (Part 3 §28.5) removing the persistent object at ``handle``."""
        key = self.load_persistent(handle)
        self._call("TPM2_EvictControl", self.esys.evict_control, ESYS_TR.OWNER, key.handle, handle,
                   context=f"persistent handle 0x{handle:08x}")

    def persistent_handles(self) -> list[int]:
        """Persistent object handles (TPM2_GetCapability, TPM_CAP_HANDLES from 0x81000000)."""
        from tpm2_pytss.constants import TPM2_CAP

        return [int(h) for h in self._get_capability(TPM2_CAP.HANDLES, PERSISTENT_FIRST, 254, "handles")
                if PERSISTENT_FIRST <= int(h) <= 0x81FFFFFF]

    def flush(self, key: KeyHandle | object) -> None:
        """TPM2_FlushContext (Part 3 §28.4) for transient objects/sessions; persistent ones are only
        closed in ESAPI (Esys_TR_Close)."""
        if isinstance(key, KeyHandle):
            if key.transient:
                self._call("TPM2_FlushContext", self.esys.flush_context, key.handle)
            else:
                self.esys.tr_close(key.handle)
        else:
            self._call("TPM2_FlushContext", self.esys.flush_context, key)

    def _parent(self, parent: Parent) -> tuple[KeyHandle, bool]:
        """(parent, created_here): a KeyHandle as given, a persistent handle, or a transient SRK."""
        if isinstance(parent, KeyHandle):
            return parent, False
        if isinstance(parent, int):
            return self.load_persistent(parent), False
        return self.srk(), True

    # -- sealing (Part 3 §12.1 Create, §12.2 Load, §12.7 Unseal)
    def seal(self, secret: bytes, policy_digest: bytes, parent: Parent = None, *,
             user_with_auth: bool = False, auth_value: bytes = b"") -> SealedBlob:
        """TPM2_Create (Part 3 §12.1) of a sealed data object with authPolicy ``policy_digest``.

        Without ``parent`` the object is created under the SRK (persistent 0x81000001 if present,
        else a transient primary from the SRK template)."""
        if not 0 < len(secret) <= MAX_SEALED_SIZE:
            raise UsageError(f"secret has {len(secret)} bytes; a sealed object holds 1…{MAX_SEALED_SIZE}")
        key, created = self._parent(parent)
        try:
            template = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC.unmarshal(
                sealed_object_template(policy_digest, user_with_auth=user_with_auth))[0])
            sensitive = TPM2B_SENSITIVE_CREATE.unmarshal(tpm2b(sensitive_create(secret, auth_value)))[0]
            private, public, *_ = self._call("TPM2_Create", self.esys.create, key.handle, sensitive, template)
            return SealedBlob(public.marshal(), private.marshal())
        finally:
            if created:
                self.flush(key)

    def load_sealed(self, blob: SealedBlob | tuple[bytes, bytes], parent: Parent = None) -> KeyHandle:
        """TPM2_Load (Part 3 §12.2) of a (public, private) blob under ``parent`` (default: SRK)."""
        public_bytes, private_bytes = blob
        try:
            public = TPM2B_PUBLIC.unmarshal(public_bytes)[0]
            private = TPM2B_PRIVATE.unmarshal(private_bytes)[0]
        except Exception:  # noqa: BLE001 - tpm2-pytss raises various errors on garbage
            raise UsageError("sealed blob is not a marshalled TPM2B_PUBLIC/TPM2B_PRIVATE pair") from None
        key, created = self._parent(parent)
        try:
            handle = self._call("TPM2_Load", self.esys.load, key.handle, private, public)
        finally:
            if created:
                self.flush(key)
        return KeyHandle(handle, bytes(self.esys.tr_get_name(handle)), public_bytes, True)

    def unseal(self, blob: SealedBlob | tuple[bytes, bytes], session, parent: Parent = None) -> bytes:
        """TPM2_Load then TPM2_Unseal (Part 3 §12.7) authorized by a policy ``session``
        (a PolicySession after its assertions; None = password session, for userWithAuth objects).

        A salted session gets response encryption, so the secret never crosses the bus in clear.
        A refused policy raises TpmPolicyFailed (exit 4)."""
        obj = self.load_sealed(blob, parent)
        try:
            handle = ESYS_TR.PASSWORD if session is None else getattr(session, "handle", session)
            if getattr(session, "salted", False):
                self.esys.trsess_set_attributes(handle, TPMA_SESSION.ENCRYPT | TPMA_SESSION.CONTINUESESSION)
            data = self._call("TPM2_Unseal", self.esys.unseal, obj.handle, session1=handle)
            return bytes(data)
        finally:
            self.flush(obj)

    # -- external verification keys (Part 3 §12.3 LoadExternal, §20.1 VerifySignature)
    def load_external_public(self, key) -> KeyHandle:
        """TPM2_LoadExternal (Part 3 §12.3) of a public key into the OWNER hierarchy, so that
        TPM2_VerifySignature yields a ticket PolicyAuthorize accepts (NULL gives a NULL ticket).

        ``key``: PEM (bytes/str), a ``cryptography`` public key, or a marshalled TPMT_PUBLIC.
        The template is systemd's (decrypt|sign|userWithAuth, SHA-256 Name, ECC coordinates padded)."""
        tpmt = _tpmt_public_of(key)
        public = TPM2B_PUBLIC(publicArea=TPMT_PUBLIC.unmarshal(tpmt)[0])
        handle = self._call("TPM2_LoadExternal", self.esys.load_external, public, None, ESYS_TR.OWNER)
        return KeyHandle(handle, bytes(self.esys.tr_get_name(handle)), public.marshal(), True)

    def verify_signature(self, key: KeyHandle, digest: bytes, signature: bytes, *,
                         hash_alg: HashAlg = HashAlg.SHA256, scheme: str | None = None) -> TPMT_TK_VERIFIED:
        """TPM2_VerifySignature (Part 3 §20.1) → TPMT_TK_VERIFIED (its HMAC may be 64 bytes).

        ``signature`` is what the signer produced: RSASSA-PKCS1-v1_5 / PSS bytes for RSA keys, a
        DER ECDSA signature for EC keys. ``digest`` is H(data), e.g. H(approvedPolicy||policyRef)."""
        sig_alg, payload = _signature_parts(key.public, signature, scheme)
        tpmt = TPMT_SIGNATURE.unmarshal(marshal_signature(sig_alg, hash_alg, payload))[0]
        return self._call("TPM2_VerifySignature", self.esys.verify_signature, key.handle, digest, tpmt)


def null_ticket() -> TPMT_TK_VERIFIED:
    """A TPMT_TK_VERIFIED with hierarchy NULL: accepted by trial sessions only (Part 3 §23.16)."""
    return TPMT_TK_VERIFIED(tag=TPM2_ST.VERIFIED, hierarchy=TPM2_RH.NULL)


def ticket_bytes(ticket: TPMT_TK_VERIFIED) -> bytes:
    """Marshalled TPMT_TK_VERIFIED (tag, hierarchy, TPM2B digest)."""
    return ticket.marshal()


def _tpmt_public_of(key) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from pcrtool.policy.digests import public_key_tpmt

    if isinstance(key, (bytes, str)):
        data = key.encode() if isinstance(key, str) else key
        if b"-----BEGIN" in data:
            try:
                key = serialization.load_pem_public_key(data)
            except ValueError:
                from cryptography import x509
                try:
                    key = x509.load_pem_x509_certificate(data).public_key()
                except ValueError:
                    raise KeyError_("not a PEM public key or certificate",
                                    hint="pass the public key (openssl pkey -pubout)") from None
        else:
            return data  # a marshalled TPMT_PUBLIC
    if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        return public_key_tpmt(key)
    if hasattr(key, "public_key"):  # a private key or certificate: use its public half
        return public_key_tpmt(key.public_key())
    raise KeyError_(f"cannot use {type(key).__name__} as a verification key", hint="use an RSA-2048 key")


def _signature_parts(public_tpm2b: bytes, signature: bytes, scheme: str | None):
    key_type = int.from_bytes(public_tpm2b[2:4], "big")  # TPM2B size, then TPMT_PUBLIC.type
    if key_type == 0x0001:  # RSA
        return (TPM_ALG_RSAPSS if scheme == "pss" else TPM_ALG_RSASSA), signature
    if key_type == 0x0023:  # ECC
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            raise UsageError("ECDSA signature is not DER (SEQUENCE of r, s)") from None
        size = (max(r.bit_length(), s.bit_length()) + 7) // 8
        size = 32 if size <= 32 else 48 if size <= 48 else 66
        return TPM_ALG_ECDSA, (r.to_bytes(size, "big"), s.to_bytes(size, "big"))
    raise UsageError(f"unsupported key type 0x{key_type:04x} for VerifySignature")
