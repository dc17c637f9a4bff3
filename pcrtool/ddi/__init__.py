"""Discoverable Disk Images: system/configuration extensions and portable images.

Pure core: ``dps`` (partition types), ``policy`` (systemd.image-policy(7)), ``release``
(os-release and merge rules), ``erofs`` (reader), ``image`` (dissect), ``verify`` (would systemd
merge it?), ``layout`` (systemd-repart's --make-ddi layout and derivations). Adapters: ``files``
(images, verity.d, fsck.erofs/unsquashfs) and ``build`` (mkfs.erofs).
"""
