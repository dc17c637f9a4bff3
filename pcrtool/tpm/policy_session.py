"""Device-side building blocks for policy enrolment and unlock (tpm2-pytss ESAPI).

Each helper names the TPM command it issues (TPM 2.0 Part 3). ``CountingEsys`` wraps an ESAPI
context and counts the TPM commands sent, so unlock can report what it costs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from typing import Iterator, Mapping, Sequence

from pcrtool.errors import PcrtoolError, PolicyRefused, TpmError, TpmUnavailable
from pcrtool.model import HashAlg, PcrSelection, PcrValues
from pcrtool.policy import digests
from pcrtool.tpm.marshal import (chunk_selection, marshal_digest_values, marshal_pcr_selection,
                                 unmarshal_pcr_selection)
from pcrtool.tpm.rc import decode_rc, error_for_rc

if not os.environ.get("PCRTOOL_DEBUG"):  # libtss2 logs expected failures; pcrtool reports them
    os.environ.setdefault("TSS2_LOG", "all+none")

try:  # tpm2-pytss is an optional dependency; only pcrtool/tpm imports it
    from tpm2_pytss import ESAPI, TSS2_Exception
    from tpm2_pytss import types as tss_types
    from tpm2_pytss.constants import (ESYS_TR, TPM2_ALG, TPM2_EO, TPM2_SE, TPMA_OBJECT,
                                      TPMA_SESSION)
except ImportError as _e:  # pragma: no cover - exercised only without tpm2-pytss
    ESAPI = None
    _IMPORT_ERROR = _e
else:
    _IMPORT_ERROR = None

# ESAPI calls that do not send a TPM command
_LOCAL_CALLS = {"tr_close", "tr_deserialize", "tr_get_name", "tr_get_tpm_handle", "tr_serialize",
                "tr_set_auth", "trsess_get_attributes", "trsess_get_nonce_tpm", "trsess_set_attributes",
                "close", "get_tcti", "get_poll_handles", "set_timeout"}


class CountingEsys:
    """An ESAPI proxy that counts the TPM commands it sends (``commands``: names in order)."""

    def __init__(self, esys) -> None:
        self._esys = esys
        self.commands: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._esys, name)
        if callable(attr) and not name.startswith("_") and name not in _LOCAL_CALLS:
            def counted(*a, **kw):
                self.commands.append(name)
                return attr(*a, **kw)
            return counted
        return attr


@contextlib.contextmanager
def open_esys(tcti: str | None) -> Iterator[CountingEsys]:
    """An ESAPI context on ``tcti`` (e.g. ``swtpm:path=…``, ``device:/dev/tpmrm0``; default as
    ``pcrtool.tpm.resolve_tcti``: $PCRTOOL_TCTI, else device:/dev/tpmrm0)."""
    from pcrtool.tpm import resolve_tcti

    tcti = resolve_tcti(tcti)
    if ESAPI is None:
        raise TpmUnavailable(f"tpm2-pytss is not usable: {_IMPORT_ERROR}",
                             hint="install pcrtool[tpm] (tpm2-pytss 3.0.0) and libtss2-dev")
    try:
        esys = ESAPI(tcti)
    except Exception as e:  # noqa: BLE001 - TCTI load errors come in several types
        raise TpmUnavailable(f"cannot open TPM {tcti or '(default)'}: {e}",
                             hint="check the TCTI (swtpm:path=SOCK, device:/dev/tpmrm0) and permissions") from None
    try:
        yield CountingEsys(esys)
    finally:
        with contextlib.suppress(Exception):
            esys.close()


def tpm_call(what: str, fn, *args, hint: str | None = None, context: str | None = None, **kw):
    """Run one ESAPI call; a TSS2 failure becomes the pcrtool error ``rc.error_for_rc`` maps it to
    (the one mapping: policy refusal exit 4, TPM unavailable exit 5, else TpmError)."""
    try:
        return fn(*args, **kw)
    except TSS2_Exception as e:
        raise error_for_rc(what, e.rc, context=context, hint=hint) from None


# --- SRK ------------------------------------------------------------------------------------------

# The one definition is the core's (policy/digests); here as tpm2-pytss' TPMA_OBJECT.
SRK_ATTRIBUTES = TPMA_OBJECT(int(digests.SRK_ATTRIBUTES)) if ESAPI is not None else 0


def create_storage_primary(esys, hierarchy, session1=None):
    """TPM2_CreatePrimary (Part 3 §24.1) of the TCG "L-2" ECC P-256 storage key template (NODA,
    SRK_ATTRIBUTES) under ``hierarchy``: (handle, TPM2B_PUBLIC). The one CreatePrimary of pcrtool:
    the SRK (owner hierarchy) and the ephemeral key that salts the owner session (NULL)."""
    pub = tss_types.TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=SRK_ATTRIBUTES, nameAlg="sha256")
    handle, out_public, *_ = tpm_call("TPM2_CreatePrimary", esys.create_primary, None, pub, hierarchy,
                                      session1=ESYS_TR.PASSWORD if session1 is None else session1)
    return handle, out_public


def create_srk(esys, expected_name: bytes | None = None, owner_auth: bytes | None = None):
    """TPM2_CreatePrimary (Part 3 §24.1): the TCG "L-2" ECC P-256 storage key, with NODA.

    NODA matters: without it an unclean reset counts as a dictionary-attack failure and enough
    crashes lock every unlock out. Deterministic from the owner seed, so it is re-created per use.

    ``expected_name`` is the key's Name recorded at enrolment (``srk_name``). The session that
    carries the unsealed secret is salted to this key's public area as the TPM returned it; if
    that is not the enrolled key (another TPM, a cleared owner hierarchy, or a device between
    pcrtool and the TPM answering with a key of its own), the salt and so the secret would be
    readable by whoever holds that key. Both the Name pcrtool computes from the returned public
    area and the Name ESAPI keeps for the handle must equal it, else PolicyRefused (exit 4)
    before any session is started or object loaded.
    """
    set_owner_auth(esys, owner_auth)
    handle, out_public = create_storage_primary(esys, ESYS_TR.OWNER, session1=owner_session1(esys))
    if expected_name is not None:
        computed = digests.name_of(out_public.publicArea.marshal())
        kept = bytes(esys.tr_get_name(handle))
        if computed != expected_name or kept != expected_name:
            flush(esys, handle)
            raise PolicyRefused(
                f"the TPM's storage root key is not the enrolled one (Name {computed.hex()[:16]}…, "
                f"enrolled {expected_name.hex()[:16]}…); refusing to unseal through it",
                hint="another TPM, a cleared owner hierarchy, or someone between pcrtool and the TPM: "
                     "use the recovery key and enrol again on this TPM")
    return handle


SRK_HANDLE = 0x81000001   # the persistent SRK, as systemd uses it (TCG provisioning guidance)
_SRK_REQUIRED = ((TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
                  | TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT) if ESAPI is not None else 0)


class PersistentSrk:
    """The storage root key at SRK_HANDLE: its ESYS_TR, Name, and serialized ESYS_TR (recorded
    in the enrollment so unlock needs neither CreatePrimary nor owner authorization)."""

    def __init__(self, handle, name: bytes, serialized: bytes) -> None:
        self.handle, self.name, self.serialized = handle, name, serialized


def ensure_persistent_srk(esys, owner_auth: bytes | None = None,
                          expected_name: bytes | None = None) -> PersistentSrk:
    """The SRK at 0x81000001, created once (TPM2_CreatePrimary + TPM2_EvictControl, owner
    authorization) when absent. An existing key there is used only if it is a restricted
    decryption key generated inside this TPM (FIXEDTPM, FIXEDPARENT, SENSITIVEDATAORIGIN: nobody
    holds its private part) — systemd's SRK qualifies — and, for a re-seal, only if it is the
    pinned one (``expected_name``)."""
    handle = find_persistent(esys, SRK_HANDLE)
    if handle is None:
        opened = open_owner_session(esys, owner_auth) if not getattr(esys, "owner_session", None) else ()
        try:
            transient = create_srk(esys, None, owner_auth)
            try:
                set_owner_auth(esys, owner_auth)
                handle = tpm_call("TPM2_EvictControl", esys.evict_control, ESYS_TR.OWNER, transient, SRK_HANDLE,
                                  session1=owner_session1(esys),
                                  hint="making the SRK persistent needs owner authorization (--owner-auth-file)")
            finally:
                flush(esys, transient)
        finally:
            close_owner_session(esys, opened)
    pub, _, _ = tpm_call("TPM2_ReadPublic", esys.read_public, handle)
    attrs = int(pub.publicArea.objectAttributes)
    name = bytes(esys.tr_get_name(handle))
    if attrs & int(_SRK_REQUIRED) != int(_SRK_REQUIRED) or digests.name_of(pub.publicArea.marshal()) != name:
        raise PolicyRefused(f"the key at {SRK_HANDLE:#x} is not a storage root key generated in this TPM "
                            f"(attributes {attrs:#x})", hint="remove it (tpm2_evictcontrol) or ask the owner")
    if expected_name is not None and name != expected_name:
        raise PolicyRefused(f"the TPM's storage root key is not the enrolled one (Name {name.hex()[:16]}…, "
                            f"enrolled {expected_name.hex()[:16]}…); refusing to seal under it",
                            hint="another TPM or a cleared owner hierarchy: enrol afresh")
    return PersistentSrk(handle, name, bytes(esys.tr_serialize(handle)))


def find_persistent(esys, tpm_handle: int):
    """An ESYS_TR for a persistent object (TPM2_ReadPublic via Esys_TR_FromTPMPublic), or None
    when nothing is there (TPM_RC_HANDLE); any other failure — a TPM gone mid-use — is raised."""
    try:
        return esys.tr_from_tpmpublic(tpm_handle)
    except TSS2_Exception as e:
        if decode_rc(e.rc).base == "HANDLE":
            return None
        raise error_for_rc("TPM2_ReadPublic", e.rc, context=f"persistent handle {tpm_handle:#x}") from None


def pinned_persistent_srk(esys, serialized: bytes, expected_name: bytes):
    """The enrolled SRK, checked BEFORE anything authorizes to it: the serialized ESYS_TR of the
    enrollment must carry the pinned Name (the file is consistent), and TPM2_ReadPublic of the
    handle must return that Name — a key substituted at 0x81000001 (with a password, without
    NODA) never sees a failed authorization, so the dictionary-attack counter never moves. The
    salt of every session is encrypted to the pinned public area."""
    try:
        recorded = esys.tr_deserialize(serialized)
    except TSS2_Exception:
        raise PolicyRefused("the enrollment's SRK record is damaged", hint="enrol again") from None
    try:
        if bytes(esys.tr_get_name(recorded)) != expected_name:
            raise PolicyRefused("the storage root key is not the enrolled one: the enrollment's SRK record does "
                                "not have the pinned Name (the file was edited)", hint="enrol again")
        tpm_handle = int(esys.tr_get_tpm_handle(recorded))
    finally:
        with contextlib.suppress(Exception):
            esys.tr_close(recorded)
    handle = find_persistent(esys, tpm_handle)
    name = bytes(esys.tr_get_name(handle)) if handle is not None else b""
    if name != expected_name:
        raise PolicyRefused(f"the TPM's storage root key is not the enrolled one (Name {name.hex()[:16] or 'none'}…, "
                            f"enrolled {expected_name.hex()[:16]}…); refusing to unseal through it",
                            hint="another TPM, a cleared owner hierarchy, or someone between pcrtool and the TPM: "
                                 "use the recovery key and enrol again on this TPM")
    return handle


def srk_name(esys, handle) -> bytes:
    """The Name of a storage key handle (recorded at enrolment to pin the SRK; no TPM command)."""
    return bytes(esys.tr_get_name(handle))


# --- sealed objects --------------------------------------------------------------------------------

SEAL_ATTRIBUTES = (TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA) if ESAPI is not None else 0


def seal(esys, srk, secret: bytes, auth_policy: bytes, auth_value: bytes = b"") -> bytes:
    """TPM2_Create (Part 3 §12.1) of a keyed-hash data object, unsealable only through
    ``auth_policy`` (no USERWITHAUTH). Returns TPM2B_PRIVATE || TPM2B_PUBLIC (systemd's blob).

    ``auth_value`` (from a PIN): the object gets it as its authValue and loses NODA, as systemd
    does, so wrong PINs count against dictionary-attack protection; the policy then ends in
    PolicyAuthValue and TPM2_Unseal needs an HMAC keyed with it."""
    attrs = SEAL_ATTRIBUTES & ~TPMA_OBJECT.NODA if auth_value else SEAL_ATTRIBUTES
    pub = tss_types.TPM2B_PUBLIC(tss_types.TPMT_PUBLIC(
        type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, objectAttributes=attrs,
        authPolicy=auth_policy,
        parameters=tss_types.TPMU_PUBLIC_PARMS(keyedHashDetail=tss_types.TPMS_KEYEDHASH_PARMS(
            scheme=tss_types.TPMT_KEYEDHASH_SCHEME(scheme=TPM2_ALG.NULL)))))
    sens = tss_types.TPM2B_SENSITIVE_CREATE(tss_types.TPMS_SENSITIVE_CREATE(userAuth=tss_types.TPM2B_AUTH(auth_value),
                                                                            data=tss_types.TPM2B_SENSITIVE_DATA(secret)))
    # The secret is the command's first parameter: a session salted to the SRK with DECRYPT set
    # sends it AES-CFB encrypted, as unseal's response is (an HMAC session on the empty-auth SRK).
    session = start_session(esys, TPM2_SE.HMAC, srk)
    try:
        esys.trsess_set_attributes(session, TPMA_SESSION.CONTINUESESSION | TPMA_SESSION.DECRYPT)
        priv, pub_out, *_ = tpm_call("TPM2_Create", esys.create, srk, sens, pub, session1=session)
    finally:
        flush(esys, session)
    return priv.marshal() + pub_out.marshal()


def _aes128_cfb():
    return tss_types.TPMT_SYM_DEF(algorithm=TPM2_ALG.AES, keyBits=tss_types.TPMU_SYM_KEY_BITS(aes=128),
                                  mode=tss_types.TPMU_SYM_MODE(aes=TPM2_ALG.CFB))


def split_blob(blob: bytes):
    try:
        priv, off = tss_types.TPM2B_PRIVATE.unmarshal(blob)
        pub, off2 = tss_types.TPM2B_PUBLIC.unmarshal(blob[off:])
    except Exception:  # noqa: BLE001
        raise PcrtoolError("sealed blob is damaged (not TPM2B_PRIVATE || TPM2B_PUBLIC)") from None
    return priv, pub


def load_blob(esys, srk, blob: bytes):
    """TPM2_Load (Part 3 §12.2)."""
    priv, pub = split_blob(blob)
    return tpm_call("TPM2_Load", esys.load, srk, priv, pub,
                    hint="the blob belongs to another TPM or another SRK (TPM cleared?)")


def start_session(esys, session_type, salt_key=None):
    """TPM2_StartAuthSession (Part 3 §11.1), SHA-256, unbound: salted to ``salt_key`` with
    AES-128-CFB parameter encryption, or — only for a trial session, which authorizes nothing —
    unsalted without encryption. The one StartAuthSession of pcrtool."""
    if salt_key is None:
        if session_type != TPM2_SE.TRIAL:
            raise AssertionError("an authorizing session is always salted")  # pragma: no cover
        return tpm_call("TPM2_StartAuthSession", esys.start_auth_session, ESYS_TR.NONE, ESYS_TR.NONE,
                        session_type, tss_types.TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    return tpm_call("TPM2_StartAuthSession", esys.start_auth_session, salt_key, ESYS_TR.NONE,
                    session_type, _aes128_cfb(), TPM2_ALG.SHA256)


def start_policy_session(esys, srk):
    """A policy session salted to the SRK, so the unsealed secret travels encrypted."""
    return start_session(esys, TPM2_SE.POLICY, srk)


def start_trial_session(esys):
    return start_session(esys, TPM2_SE.TRIAL)


def unseal(esys, obj, session) -> bytes:
    """TPM2_Unseal (Part 3 §12.7) with response encryption on the policy session."""
    esys.trsess_set_attributes(session, TPMA_SESSION.ENCRYPT)  # the session ends with this command
    data = tpm_call("TPM2_Unseal", esys.unseal, obj, session1=session,
                    hint="the session's policy digest is not the object's authPolicy")
    return bytes(data)


def flush(esys, *handles) -> None:
    for h in handles:
        if h is not None:
            with contextlib.suppress(Exception):
                esys.flush_context(h)


# --- policy assertions ---------------------------------------------------------------------------

def pcr_selection(bank: HashAlg, pcrs: Sequence[int]):
    return tss_types.TPML_PCR_SELECTION.parse(f"{bank.bank_name}:{','.join(map(str, pcrs))}")


def read_pcr_selection(esys, selection: PcrSelection) -> PcrValues:
    """TPM2_PCR_Read (Part 3 §22.4), at most 8 PCRs per command (TPML_DIGEST holds 8); every
    requested PCR must come back (one the bank does not allocate is an error). The one PCR read:
    ``Tpm.read_pcrs`` and enrolment/unlock (``read_pcrs``) both use it."""
    values = PcrValues()
    for chunk in chunk_selection(selection):
        sel = tss_types.TPML_PCR_SELECTION.unmarshal(marshal_pcr_selection(chunk))[0]
        _, sel_out, digests_out = tpm_call("TPM2_PCR_Read", esys.pcr_read, sel)
        returned = [(alg_id, pcr) for alg_id, pcrs in unmarshal_pcr_selection(sel_out.marshal()) for pcr in pcrs]
        digest_list = [bytes(d) for d in digests_out]
        if len(returned) != len(digest_list):
            raise TpmError(f"TPM2_PCR_Read returned {len(digest_list)} digests for {len(returned)} selected PCRs")
        for (alg_id, pcr), value in zip(returned, digest_list):
            values.set(HashAlg(alg_id), pcr, value)
        for alg, pcrs in chunk.items():
            missing = [p for p in pcrs if values.get(alg, p) is None]
            if missing:
                raise TpmError(f"the TPM returned no {alg.bank_name} value for PCR {','.join(map(str, missing))}",
                               hint="the PCR is not allocated in that bank on this TPM (bank not active?)")
    return values


def read_pcrs(esys, bank: HashAlg, pcrs: Sequence[int]) -> PcrValues:
    """``read_pcr_selection`` of one bank."""
    return read_pcr_selection(esys, PcrSelection({bank: tuple(pcrs)}))


def policy_pcr(esys, session, bank: HashAlg, pcrs: Sequence[int]) -> None:
    """TPM2_PolicyPCR (Part 3 §23.7) over live PCR values (empty pcrDigest)."""
    tpm_call("TPM2_PolicyPCR", esys.policy_pcr, session, b"", pcr_selection(bank, pcrs))


def policy_auth_value(esys, session) -> None:
    """TPM2_PolicyAuthValue (Part 3 §23.17): the object's authValue (the PIN) keys the HMAC of the
    command the session authorizes; ESAPI adds it once the object's auth is set."""
    tpm_call("TPM2_PolicyAuthValue", esys.policy_auth_value, session)


def policy_digest(esys, session) -> bytes:
    """TPM2_PolicyGetDigest (Part 3 §23.19)."""
    return bytes(tpm_call("TPM2_PolicyGetDigest", esys.policy_get_digest, session))


def policy_or_path(esys, session, path: Sequence[Sequence[bytes]]) -> None:
    """TPM2_PolicyOR (Part 3 §23.6), once per tree level on the way to the root."""
    for group in path:
        lst = tss_types.TPML_DIGEST([tss_types.TPM2B_DIGEST(d) for d in group])
        tpm_call("TPM2_PolicyOR", esys.policy_or, session, lst,
                 hint="the running digest is not one of the enrolled branches")


def load_external_key(esys, tpmt_public: bytes):
    """TPM2_LoadExternal (Part 3 §12.3) of a public key into the OWNER hierarchy (a NULL-hierarchy
    key yields a NULL ticket that PolicyAuthorize rejects)."""
    pub, _ = tss_types.TPM2B_PUBLIC.unmarshal(digests.tpm2b(tpmt_public))
    return tpm_call("TPM2_LoadExternal", esys.load_external, pub, None, ESYS_TR.OWNER)


def verify_signature(esys, key, tbs: bytes, sig: bytes, public_key):
    """TPM2_VerifySignature (Part 3 §20.1) of SHA-256(tbs) by ``key``, the LoadExternal'd
    ``public_key`` (a ``cryptography`` key: RSASSA or ECDSA, from its type and curve): returns the
    TPMT_TK_VERIFIED ticket. Approvals are signed over SHA-256 whatever the key (policy/approvals)."""
    return tpm_call("TPM2_VerifySignature", esys.verify_signature, key, hashlib.sha256(tbs).digest(),
                    tpmt_signature(sig, public_key))


def tpmt_signature(sig: bytes, public_key):
    """TPMT_SIGNATURE (Part 2 §11.3.4) of an approval signature made by ``public_key``: RSASSA
    with SHA-256, or a DER ECDSA-SHA256 signature whose r and s are written at the size of the
    key's curve (32 bytes for P-256, 48 for P-384). A signature that cannot be one of that key
    is PolicyRefused (exit 4) here: it would not verify."""
    if digests.is_rsa_key(public_key):
        return tss_types.TPMT_SIGNATURE(sigAlg=TPM2_ALG.RSASSA, signature=tss_types.TPMU_SIGNATURE(
            rsassa=tss_types.TPMS_SIGNATURE_RSA(hash=TPM2_ALG.SHA256, sig=tss_types.TPM2B_PUBLIC_KEY_RSA(sig))))
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    _, size = digests.ecc_curve(public_key)
    try:
        r, s = decode_dss_signature(sig)
        r_bytes, s_bytes = r.to_bytes(size, "big"), s.to_bytes(size, "big")
    except (ValueError, OverflowError):
        raise PolicyRefused(f"the approval signature is not an ECDSA signature of a {size * 8}-bit curve key "
                            f"like the enrolled {public_key.curve.name} key", tpm_rc=None,
                            hint="it was made by another key: use the approvals of this device's release key") from None
    return tss_types.TPMT_SIGNATURE(sigAlg=TPM2_ALG.ECDSA, signature=tss_types.TPMU_SIGNATURE(
        ecdsa=tss_types.TPMS_SIGNATURE_ECC(hash=TPM2_ALG.SHA256,
                                           signatureR=tss_types.TPM2B_ECC_PARAMETER(r_bytes),
                                           signatureS=tss_types.TPM2B_ECC_PARAMETER(s_bytes))))


def policy_authorize(esys, session, approved: bytes, policy_ref: bytes, key_name: bytes, ticket) -> None:
    """TPM2_PolicyAuthorize (Part 3 §23.16)."""
    tpm_call("TPM2_PolicyAuthorize", esys.policy_authorize, session, approved_policy=approved,
             key_sign=key_name, check_ticket=ticket, policy_ref=policy_ref,
             hint="the live PCRs are not the approved ones, or the ticket is for other bytes")


# --- owner authorization -----------------------------------------------------------------------

def set_owner_auth(esys, owner_auth: bytes | None) -> None:
    """The owner hierarchy's authorization value for the next owner-authorized command (no TPM
    command; never logged). With an owner password, ``open_owner_session`` makes those commands
    use a salted HMAC session: the password itself never crosses the bus."""
    esys.tr_set_auth(ESYS_TR.OWNER, owner_auth or b"")


def owner_session1(esys):
    return getattr(esys, "owner_session", None) or ESYS_TR.PASSWORD


def open_owner_session(esys, owner_auth: bytes | None, salt_key=None):
    """With an owner password: a salted HMAC session (TPM2_StartAuthSession) that every later
    owner-authorized command of ``esys`` uses, so the bus carries an HMAC keyed with a secret
    salt, never the password (nor anything to guess it offline). ``salt_key``: the pinned SRK;
    None: an ephemeral NULL-hierarchy primary (no authorization needed) salts it. Returns the
    handles to pass to ``close_owner_session``; nothing without a password."""
    if not owner_auth:
        return ()
    temp = None
    if salt_key is None:
        temp, _ = create_storage_primary(esys, ESYS_TR.NULL)
        salt_key = temp
    session = start_session(esys, TPM2_SE.HMAC, salt_key)
    esys.trsess_set_attributes(session, TPMA_SESSION.CONTINUESESSION)
    esys.owner_session = session
    return (session, temp)


def close_owner_session(esys, handles) -> None:
    if handles:
        esys.owner_session = None
        flush(esys, *handles)


# --- PolicyNV on the floor/epoch counter (the NV commands themselves: tpm/nv.py) ---------------------

def policy_nv_le(esys, session, handle, bound: int) -> None:
    """TPM2_PolicyNV (Part 3 §23.9): counter ≤ bound (UNSIGNED_LE), read with the index's auth."""
    tpm_call("TPM2_PolicyNV", esys.policy_nv, handle, handle, session,
             tss_types.TPM2B_OPERAND(struct.pack(">Q", bound)), TPM2_EO.UNSIGNED_LE, 0,
             session1=ESYS_TR.PASSWORD,
             hint="the floor counter is above this release's bound: the release is revoked")


def test_parms_rsa(esys, bits: int) -> bool:
    """TPM2_TestParms (Part 3 §9.3): can this TPM use an RSA key of ``bits`` bits?"""
    parms = tss_types.TPMT_PUBLIC_PARMS(type=TPM2_ALG.RSA, parameters=tss_types.TPMU_PUBLIC_PARMS(rsaDetail=tss_types.TPMS_RSA_PARMS(
        symmetric=tss_types.TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL), scheme=tss_types.TPMT_RSA_SCHEME(scheme=TPM2_ALG.NULL),
        keyBits=bits, exponent=0)))
    return _test_parms(esys, parms)


def test_parms_ecc(esys, curve_name: str) -> bool:
    """TPM2_TestParms for an ECC key on ``curve_name`` (secp256r1, secp384r1, secp521r1)."""
    curve = {"secp256r1": 0x0003, "secp384r1": 0x0004, "secp521r1": 0x0005}.get(curve_name)
    if curve is None:
        return False
    parms = tss_types.TPMT_PUBLIC_PARMS(type=TPM2_ALG.ECC, parameters=tss_types.TPMU_PUBLIC_PARMS(eccDetail=tss_types.TPMS_ECC_PARMS(
        symmetric=tss_types.TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL), scheme=tss_types.TPMT_ECC_SCHEME(scheme=TPM2_ALG.NULL),
        curveID=curve, kdf=tss_types.TPMT_KDF_SCHEME(scheme=TPM2_ALG.NULL))))
    return _test_parms(esys, parms)


def _test_parms(esys, parms) -> bool:
    try:
        esys.test_parms(parms)
    except TSS2_Exception:
        return False
    return True


def extend_pcr(esys, pcr: int, digests_by_bank: Mapping[HashAlg, bytes]) -> None:
    """TPM2_PCR_Extend (Part 3 §22.2): one digest per bank (banks left out stay untouched). The
    one PCR extend: ``Tpm.extend`` and ``extend_pcrs`` both use it."""
    values = tss_types.TPML_DIGEST_VALUES.unmarshal(marshal_digest_values(digests_by_bank))[0]
    tpm_call("TPM2_PCR_Extend", esys.pcr_extend, ESYS_TR.PCR0 + pcr, values, session1=ESYS_TR.PASSWORD,
             context=f"PCR {pcr}")


def extend_pcrs(esys, values: PcrValues) -> None:
    """Each value extended once, in order (used to emulate a boot)."""
    for v in values:
        extend_pcr(esys, v.pcr, {v.alg: v.value})
