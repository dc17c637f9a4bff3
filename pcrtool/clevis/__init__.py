"""The clevis pin (``clevis-encrypt-pcrtool`` / ``clevis-decrypt-pcrtool``) and what puts it into an
initramfs. ``pin`` is the pin itself; its decrypt path imports no CLI code (no typer, no rich), so
an initramfs needs only the interpreter, a pruned stdlib, pcrtool's core and tpm adapter,
tpm2-pytss, cryptography, cffi and libtss2 (``initramfs`` lists exactly those files)."""
