"""dm-verity: hash tree and superblock as veritysetup builds them, root-hash signatures, verity-sig.

Pure core: ``params`` (parameters, layout, repart salt/UUID derivation), ``superblock``, ``tree``
(hash maths), ``sig_partition`` (signed bytes, verity-sig JSON), ``roothash_pkcs7`` (sign with a Signer, or
check and wrap a signature made elsewhere; DER from ``pcrtool.sign.pkcs7``). ``io`` is the
streaming file adapter (mmap, parallel level 0, atomic or in-place writes).
"""

from pcrtool.verity.params import (HashType, TreeLayout, VerityParams, compute_layout, derive_salt,
                                   derive_uuid, partition_uuids)
from pcrtool.verity.tree import VerityTree, build_tree

__all__ = ["HashType", "TreeLayout", "VerityParams", "VerityTree", "build_tree", "compute_layout",
           "derive_salt", "derive_uuid", "partition_uuids"]
