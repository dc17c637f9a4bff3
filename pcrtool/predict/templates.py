"""Annotated templates of the release format (``pcrtool predict template``).

Each template is valid TOML that ``parse_manifest`` / ``parse_allowlist`` accept once the files it
names exist; every optional key is shown, commented out, with what it means. README.md
"Release format reference" documents the same keys.
"""

from __future__ import annotations

UKI = '''\
# pcrtool release manifest: a UKI release (systemd-boot or the firmware boots the UKI).
# Paths are relative to this file. Predict with:
#   pcrtool predict release THIS.toml [MORE.toml…] --allowlist allow.toml -o predictions.json

name = "fooos"              # required: [A-Za-z0-9._+-]{1,64}; the same for every release of the OS
version = "2.1"             # required: UAPI version, ordered as `systemd-analyze compare-versions`
                            #   (2.1~rc1 < 2.1 < 2.1.1 < 2.10)
svn = 3                     # required: security version 0…2**32-1; raise it with every release that
                            #   fixes a vulnerability: `tpm advance-floor --to SVN` then revokes all
                            #   releases with a lower svn on enrolled devices
# banks = ["sha256"]        # PCR banks to predict (sha1 sha256 sha384 sha512)
# pcrs = [7, 11]            # PCRs to predict (default: every PCR the sections below produce)
# phases = ["enter-initrd"] # PCR 11 phase paths; "enter-initrd" is where unlock runs;
                            #   ":" = the UKI only, "enter-initrd:leave-initrd" = later phases
# description = "fooos 2.1 (security update)"   # free text

[uki]                       # PCR 11 as systemd-stub measures the UKI's sections
path = "fooos-2.1.efi"      # the UKI (ukify build …)
# profile = 0               # multi-profile UKI: which profile (PCR 12 gets the profile tag if > 0)
# stub = 257                # systemd-stub version (default: from the UKI's .sdmagic)
# linux_stub = true         # also predict the kernel EFI stub's PCR 9 events (.cmdline, .initrd)
# [uki.sections]            # … instead of `path`: the section files, e.g.
# linux = "vmlinuz"         #   linux, osrel, cmdline, initrd, ucode, splash, dtb, uname, sbat, pcrpkey
# initrd = {sha256 = "<64 hex>"}   # or a section's precomputed digest (one per bank)

# [boot]                    # PCR 4: EFI applications in load order (their Authenticode digests)
# chain = ["systemd-bootx64.efi", "uki", "uki.linux"]
#                           # "uki" = the [uki] file, "uki.linux" = its kernel (LoadImage()d by the
#                           # stub); {sha256 = "<64 hex>"} = a precomputed Authenticode digest
# separator = "00000000"    # EV_SEPARATOR data (00000000 = no firmware error)

# [secureboot]              # PCR 7: see `pcrtool predict template secureboot`

# [cmdline]                 # PCR 12 (stub) and PCR 9 (Linux EFI stub)
# stub = "console=ttyS0 rw" # boot entry LoadOptions the stub measures (used instead of .cmdline
#                           #   when Secure Boot is off or the UKI has no .cmdline)
# kernel = "console=ttyS0 rw"   # LoadOptions the Linux EFI stub measures into PCR 9 (replaces the
#                           #   [uki]-derived event)
# initrd = "initrd.img"     # initrd the Linux EFI stub measures into PCR 9
# nul = true                # measure the trailing NUL (systemd does)

# reference_log = "tpm-eventlog.bin"   # the target's firmware event log (binary_bios_measurements):
#                           # predicted events replace theirs, the others are kept (substitution)

# [values]                  # precomputed PCR values, override the sources: PCR → bank → hex
# "0" = {sha256 = "<64 hex>"}
# [values.phase."enter-initrd"]
# "11" = {sha256 = "<64 hex>"}
'''

SHIM_GRUB = '''\
# pcrtool release manifest: a shim → GRUB → kernel release (Secure Boot on).
# PCR 4 (boot chain) and PCR 7 (Secure Boot policy and the authorities that verified each image)
# are predicted today; shim's and GRUB's own PCR 8/9 measurements ([shim], [grub]) are being
# added: see `pcrtool predict release --help` of your version.

name = "fooos"
version = "2.1"
svn = 3
pcrs = [4, 7]

[boot]
chain = ["shimx64.efi", "grubx64.efi", "vmlinuz-2.1"]   # load order: shim, GRUB, the kernel

[secureboot]
SecureBoot = 1
PK = "PK.auth"              # ESL, .auth, efivarfs dump or a certificate (.crt/.pem/.der)
KEK = "KEK.esl"
db = ["db.esl", "distro-ca.crt"]   # several files: their signature lists are concatenated
dbx = "dbx.esl"
# owner = "<guid>"          # SignatureOwner for variables given as certificates (default all-zero)
# the db entry that verified shim (firmware measures it as EV_EFI_VARIABLE_AUTHORITY):
authorities = [{owner = "77fa9abd-0359-4d32-bd60-28f4e78f784b", certificate = "uefi-ca.crt"}]

# reference_log = "tpm-eventlog.bin"   # substitute into the target's firmware log (recommended:
#                           # PCR 7 then keeps the firmware's own events and MokList measurements)
'''

SECUREBOOT = '''\
# The [secureboot] table of a release manifest: PCR 7 as the firmware measures it.
# Each of SecureBoot, PK, KEK, db, dbx is measured as EV_EFI_VARIABLE_DRIVER_CONFIG (absent =
# empty), then EV_SEPARATOR, then one EV_EFI_VARIABLE_AUTHORITY per db entry that verified an image.

name = "fooos"
version = "2.1"
svn = 3
pcrs = [7]

[secureboot]
SecureBoot = 1              # 0 or 1, or a file (efivarfs dump of SecureBoot)
PK = "PK.esl"               # each variable: an ESL (sbsiglist), an authenticated update (.auth,
KEK = "KEK.auth"            #   sbvarsign), an efivarfs dump (/sys/firmware/efi/efivars/db-…),
db = "db.crt"               #   or a certificate (.crt/.pem/.der → one EFI_CERT_X509 list), or a list
# dbx = "dbx.esl"           #   of these, concatenated
# dbt = "dbt.esl"           # optional: measured only when given
# dbr = "dbr.esl"
# owner = "<guid>"          # SignatureOwner for certificates above (default all-zero)
# separator = "00000000"
authorities = [{owner = "00000000-0000-0000-0000-000000000000", certificate = "db.crt"}]
'''

ALLOWLIST = '''\
# pcrtool allowlist: which predicted releases may unlock (`predict release --allowlist`).
# A release is allowed when an entry's name and version match it and, if given, its svn too.
# `predict release` warns when an entry matches nothing or names a release with another svn
# (`--strict` makes every such warning an error).

[[allow]]
name = "fooos"
version = "2.1"             # exact version (UAPI-equal), or "*" for every version
svn = 3                     # optional: must equal the manifest's svn

[[allow]]
name = "fooos"
version = "2.0"
'''

TEMPLATES = {"uki": UKI, "shim-grub": SHIM_GRUB, "secureboot": SECUREBOOT, "allowlist": ALLOWLIST}
