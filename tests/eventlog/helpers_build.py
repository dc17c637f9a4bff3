"""Build synthetic event logs with pcrtool.tcg's construct definitions (TCG PFP §10.2)."""

from __future__ import annotations

from pcrtool.model import HashAlg
from pcrtool.tcg import structs
from pcrtool.tcg.constants import SPEC_ID_SIGNATURE

DEFAULT_ALGS = ((HashAlg.SHA1.value, 20), (HashAlg.SHA256.value, 32))


def spec_id_record(algs=DEFAULT_ALGS, *, uintn_size=2, vendor_info=b"") -> bytes:
    spec = structs.TCG_EfiSpecIDEvent.build(dict(
        signature=SPEC_ID_SIGNATURE, platform_class=0, spec_version_minor=0, spec_version_major=2,
        spec_errata=0, uintn_size=uintn_size,
        digest_sizes=[dict(algorithm_id=a, digest_size=s) for a, s in algs], vendor_info=vendor_info))
    return structs.TCG_PCR_EVENT.build(dict(pcr_index=0, event_type=3, digest=bytes(20), event=spec))


def event2(pcr: int, event_type: int, data: bytes, digests: dict[int, bytes] | None = None,
           algs=DEFAULT_ALGS) -> bytes:
    """A TCG_PCR_EVENT2; ``digests`` defaults to the real hashes of ``data`` in every alg."""
    if digests is None:
        digests = {a: HashAlg(a).digest(data) for a, _ in algs}
    sizes = dict(algs)
    return structs.TCG_PCR_EVENT2.build(
        dict(pcr_index=pcr, event_type=event_type,
             digests=[dict(hash_alg=a, digest=d) for a, d in digests.items()], event=data),
        digest_sizes=sizes)


def agile_log(*events: bytes, algs=DEFAULT_ALGS) -> bytes:
    return spec_id_record(algs) + b"".join(events)


def sha1_event(pcr: int, event_type: int, data: bytes, digest: bytes | None = None) -> bytes:
    return structs.TCG_PCR_EVENT.build(dict(pcr_index=pcr, event_type=event_type,
                                            digest=digest if digest is not None else HashAlg.SHA1.digest(data),
                                            event=data))
