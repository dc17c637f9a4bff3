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

# [shim]                    # shim → GRUB → kernel releases instead of a UKI:
# [grub]                    #   see `pcrtool predict template shim-grub`
'''

SHIM_GRUB = '''\
# pcrtool release manifest: a shim → GRUB → kernel release (Debian/Ubuntu signed chain).
# PCR 4 (shim, GRUB, the kernel twice with Secure Boot on), PCR 7 (shim's SbatLevel and the vendor
# certificate that verified GRUB; the firmware's part from [secureboot] or the reference log),
# PCR 8 (GRUB's commands), PCR 9 (the files GRUB read), PCR 14 (MokList, MokListX, MokListTrusted).

name = "fooos"
version = "2.1"
svn = 3
pcrs = [4, 7, 8, 9, 14]
reference_log = "tpm-eventlog.bin"   # the target's firmware log (PCR 4's firmware actions, PCR 7's
                            #   variables and db authority are kept from it)

[shim]
path = "shimx64.efi"        # the signed shim (its .vendor_cert and .sbatlevel are read)
# sbat_level = "previous"   # previous (shim's default) | latest | the SbatLevel text itself
# MokList = "MokList-605dab50-e046-4300-abb6-3dd810dd8b23"   # efivarfs dumps of the machine's MOK
# MokListX = "MokListX.bin" #   variables (absent = not set: shim's defaults)
# MokListTrusted = "MokListTrusted.bin"
# SbatLevel = "SbatLevel.bin"   # the machine's current SbatLevel (kept when newer than shim's)
# vendor_authority = "MokListRT"   # MokListRT (shim >= 15.3), Shim (older shims) or none

[grub]
path = "grubx64.efi"        # the signed GRUB (PCR 4; its embedded memdisk config and prefix)
device = "hd0"              # GRUB's name of the ESP disk, as the log shows it ("(hd0,gpt1)" → "hd0,gpt1")
config = "grub.cfg"         # the grub.cfg GRUB sources from $prefix (interpreted; conditionals on
                            #   files, set, menuentry + default; search/load_env/loops are not:
                            #   drop `config` to keep those events from the reference log)
files = {"/boot/vmlinuz-2.1" = "vmlinuz-2.1", "/boot/initrd.img-2.1" = "initrd.img-2.1"}
                            # the files grub.cfg names → local files (the `linux` one is the kernel)
# … without `config`: the reference log's GRUB events with these substituted
# kernel = "vmlinuz-2.1"
# kernel_path = "/boot/vmlinuz-2.1"
# cmdline = "root=UUID=… ro quiet"
# initrd = "initrd.img-2.1"
# initrd_path = "/boot/initrd.img-2.1"

# [secureboot]              # PCR 7 from the variables instead of the reference log:
# SecureBoot = 1            #   see `pcrtool predict template secureboot`
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
