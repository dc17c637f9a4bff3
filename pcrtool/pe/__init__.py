"""PE/COFF images: layout, the Authenticode digest as EDK2 computes it, UKI sections.

Contract used by prediction: ``PeImage.parse(data).sections`` (``.name``, ``.virtual_address``,
``.virtual_size``, ``.raw_offset``, ``.raw_size``, ``.data``, ``.loaded``) and
``authenticode_digest(data, HashAlg)``.
"""

from pcrtool.pe.digest import (append_certificate, authenticode_digest, hash_ranges, image_digest,
                                     pe_checksum, signing_digest, signing_image)
from pcrtool.pe.image import PeImage, Section, WinCertificate

__all__ = ["PeImage", "Section", "WinCertificate", "append_certificate", "authenticode_digest",
           "hash_ranges", "image_digest", "pe_checksum", "signing_digest", "signing_image"]
