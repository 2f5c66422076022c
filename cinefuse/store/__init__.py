"""The feature store: HDF5 shards plus ``manifest.json`` (format version 1).

No torch and no jax here: extract writes with :class:`StoreWriter`, fuse reads with
:func:`open_store`, and any HDF5 tool can read a shard (layout in ``cinefuse.store.shard``).
"""

from cinefuse.store.manifest import FORMAT_VERSION, Manifest, ShardRecord, config_hash
from cinefuse.store.reader import FeatureArray, FeatureSetInfo, Store, Table, open_store
from cinefuse.store.shard import FeatureBlock
from cinefuse.store.writer import StoreWriter

__all__ = [
    "FORMAT_VERSION",
    "FeatureArray",
    "FeatureBlock",
    "FeatureSetInfo",
    "Manifest",
    "ShardRecord",
    "Store",
    "StoreWriter",
    "Table",
    "config_hash",
    "open_store",
]
