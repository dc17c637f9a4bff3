"""dm-verity: hash tree and superblock as veritysetup builds them, root-hash signatures, verity-sig.

Pure core: ``params`` (parameters, layout, repart salt/UUID derivation), ``superblock``, ``tree``
(hash maths), ``sig`` (verity-sig JSON). ``io`` is the streaming file adapter.
"""

from pcrtool.verity.params import (HashType, TreeLayout, VerityParams, compute_layout, derive_salt,
                                   derive_uuid, partition_uuids)
from pcrtool.verity.tree import VerityTree, build_tree

__all__ = ["HashType", "TreeLayout", "VerityParams", "VerityTree", "build_tree", "compute_layout",
           "derive_salt", "derive_uuid", "partition_uuids"]
