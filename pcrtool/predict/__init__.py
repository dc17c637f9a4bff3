"""PCR prediction: what will a release measure, per PCR, per bank and per boot phase.

Each module knows one event family and turns artefacts into :class:`~pcrtool.predict.events.Measurement`
lists (pcr-oracle's model: every event can *rehash* itself from a future artefact):

- ``uki``        PCR 11: systemd-stub's UKI section measurements and systemd-pcrextend boot phases
- ``pe``         PCR 4: Authenticode digests of the boot chain, EV_EFI_ACTION, EV_SEPARATOR
- ``secureboot`` PCR 7: SecureBoot/PK/KEK/db/dbx as UEFI_VARIABLE_DATA, separator, authorities
- ``cmdline``    PCR 12 (systemd-stub / sd-boot) and PCR 9 (Linux EFI stub) command lines, initrds
- ``gpt``        PCR 5: EV_EFI_GPT_EVENT from a disk image
- ``substitute`` a reference event log with some events recomputed for a new release
- ``manifest``   release manifests, allowlists and the predictions file the policy code consumes
- ``versions``   UAPI version ordering (``systemd-analyze compare-versions``)
"""
