#!/bin/bash
# dracut module for pcrtool's clevis pin (clevis-decrypt-pcrtool), written by
# `pcrtool clevis install --dracut` as modules.d/60clevis-pin-pcrtool/module-setup.sh. It adds
# the pin, its Python interpreter, the stdlib modules it loads, pcrtool, tpm2-pytss, cryptography
# and libtss2 (the list: python -m pcrtool.clevis.initramfs files).

check() {
    return 0
}

depends() {
    echo clevis
    return 0
}

installkernel() {
    hostonly='' instmods tpm_crb tpm_tis
}

install() {
    local pin list kind src dst
    pin=$(mktemp) || return 1
    list=$(mktemp) || return 1
    if ! @GENERATOR@ files --pin-script "$pin" @ARGS@ >"$list"; then
        derror "pcrtool-clevis: cannot list the pin's files"
        rm -f "$pin" "$list"
        return 1
    fi
    while IFS=$'\t' read -r kind src dst; do
        case "$kind" in
        exec) inst_binary "$src" "$dst" || inst_simple "$src" "$dst" ;;
        file) inst_simple "$src" "$dst" ;;
        esac
    done <"$list"
    rm -f "$pin" "$list"
}
