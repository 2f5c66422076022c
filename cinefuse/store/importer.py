"""``cinefuse store import``: precomputed per-item features into a store, as one feature set.

The set gets one shard of its own holding a row for every item of the store, in the store's
item order: the file's vector where the file has the item (``valid``, status ``ok``), zeros with
``valid = false`` and status ``missing: not in <file>`` where it has not, and ``invalid: NaN or
Inf in <file>`` where the file's row is not finite. The shard is committed like extract's
(``cinefuse.store.writer``): written whole under a temporary name, fsynced, renamed and listed in
the manifest under one lock, so a killed import leaves the store as it was.

- **Items.** The store's items are the ids of its shards other than ``fused/*`` (the embeddings
  evaluate writes). File ids that are not store items are skipped and counted (the sensible
  default when a published file covers a larger catalogue); ``unknown_ids="error"`` refuses the
  file instead. A store that does not exist yet (or holds no items) needs ``ids_from``: the
  imported file itself, or a text file of ids (one a line), whose ids become the store's items.
- **Identity.** The set's config (``{"import": {...}}`` in the manifest) holds the file's
  sha256, how it was read, the dtype, the description and the sha256 of the store's item list;
  its hash is the shard's ``config_hash``. Importing a file whose config hash is the one already
  committed for the set changes nothing (not a byte); anything else writes a new shard that
  replaces the set's old one in the same manifest write.
- **Provenance.** The set's HDF5 attributes: ``source`` (file name), ``source_path``,
  ``source_sha256``, ``description``, ``dimension``, ``dtype``, ``format``, ``layout`` and the
  counts (``file_rows``, ``matched``, ``unknown_ids``, ``invalid_rows``).
A set that extract wrote cannot be replaced by an import (import it under another name).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.errors import CinefuseError, StoreError
from cinefuse.faults import fault_point
from cinefuse.store.import_formats import ParsedFile, ReadOptions, check_unique, read_features, read_id_list
from cinefuse.store.location import is_s3_uri
from cinefuse.store.manifest import MANIFEST_NAME, Manifest, ShardRecord, config_hash, manifest_lock, read_manifest
from cinefuse.store.shard import FeatureBlock, check_feature_set_name, validate_block, write_shard_file
from cinefuse.store.writer import StagedShard, commit_shards, discard, prepare_root, remove_leftovers, store_lock

DTYPES = ("float32", "float16")
UNKNOWN_IDS = ("skip", "error")


@dataclass
class ImportResult:
    name: str
    store: str
    changed: bool                 # False: the same import was committed already, nothing written
    shard: str                    # the shard holding the set
    items: int                    # store items (rows of the set)
    valid: int                    # rows holding a finite vector from the file
    file_rows: int
    matched: int                  # file rows whose id is a store item
    unknown_ids: int              # file rows whose id is not (skipped)
    invalid_rows: int             # matched rows holding NaN or Inf
    dimension: int
    dtype: str
    source_sha256: str
    format: str
    layout: dict[str, Any]
    ignored_columns: list[str] = field(default_factory=list)
    created_store: bool = False   # a new store, its items named by ``items_from``
    items_from: str = ""
    replaced: list[str] = field(default_factory=list)


def is_import_config(config: Any) -> bool:
    return isinstance(config, dict) and isinstance(config.get("import"), dict)


def store_items(store) -> np.ndarray:
    """The store's items: ids of every shard that holds a set other than ``fused/*``, each once,
    in the order they first appear in the manifest."""
    names = [r.name for r in store.manifest.shards
             if any(not n.startswith("fused/") for n in r.feature_sets)]
    if not names:
        return np.zeros(0, dtype=str)
    ids = store.shard_ids(names)
    _, first = np.unique(ids, return_index=True)
    return ids[np.sort(first)]


def items_digest(items: np.ndarray) -> str:
    return hashlib.sha256("\n".join(items.tolist()).encode("utf-8")).hexdigest()


def _check_request(root: str, name: str, dtype: str, unknown_ids: str) -> None:
    if is_s3_uri(root):
        raise StoreError(f"cannot import into {root}: import into a local store, then `cinefuse store push LOCAL {root}`")
    check_feature_set_name(name)
    if name.startswith("fused/"):
        raise CinefuseError(f"feature set names under fused/ are the embeddings evaluate writes; choose another name than {name!r}")
    if dtype not in DTYPES:
        raise CinefuseError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if unknown_ids not in UNKNOWN_IDS:
        raise CinefuseError(f"--unknown-ids must be one of {', '.join(UNKNOWN_IDS)}, got {unknown_ids!r}")


def resolve_items(root: Path, manifest: Manifest, source: Path, parsed: ParsedFile,
                  ids_from: str | None) -> tuple[np.ndarray, bool]:
    """(the store's items, whether they come from ``ids_from`` for a new store)."""
    items = np.zeros(0, dtype=str)
    if manifest.shards:
        from cinefuse.store import open_store

        items = store_items(open_store(root))
    if len(items):
        if ids_from is not None:
            raise CinefuseError(f"store {root} already has {len(items)} items; --ids-from only names the items of a new store")
        return items, False
    if ids_from is None:
        what = "does not exist" if not (root / MANIFEST_NAME).exists() else "holds no items"
        raise StoreError(
            f"store {root} {what}: `--ids-from {source}` creates it with the ids of that file as its items "
            "(or name a text file of ids, one a line)")
    if Path(ids_from).resolve() == source.resolve():
        return parsed.ids, True
    items = read_id_list(Path(ids_from))
    if not len(items):
        raise CinefuseError(f"{Path(ids_from).name} holds no ids: a store needs at least one item")
    check_unique(items, Path(ids_from).name)
    return items, True


def _holders(root: Path, manifest: Manifest, name: str) -> list[ShardRecord]:
    """The shards holding ``name``; each must be an import's own shard (replaceable)."""
    holders = [r for r in manifest.shards if name in r.feature_sets]
    for record in holders:
        config = manifest.configs.get(record.config_hash)
        if not is_import_config(config) or set(record.feature_sets) != {name}:
            raise CinefuseError(
                f"feature set {name} of store {root} was not written by `store import` (shard {record.name}, "
                f"config {record.config_hash}); import under another name")
    return holders


def build_rows(parsed: ParsedFile, items: np.ndarray, source_name: str, dtype: str):
    """The set's rows over ``items``: (data, valid, status, matched mask of the file rows)."""
    import pandas as pd

    at = pd.Index(items).get_indexer(parsed.ids)
    known = at >= 0
    values = parsed.data[known]
    finite = np.isfinite(values).all(axis=1)
    with np.errstate(over="ignore"):
        cast = values.astype(dtype)
    overflow = finite & ~np.isfinite(cast).all(axis=1)
    if overflow.any():
        item_id = parsed.ids[known][overflow][0]
        raise CinefuseError(f"{source_name}: the values of id {str(item_id)!r} exceed the {dtype} range; "
                            "import with --dtype float32")
    data = np.zeros((len(items), parsed.data.shape[1]), dtype=dtype)
    rows = at[known]
    data[rows[finite]] = cast[finite]
    valid = np.zeros(len(items), dtype=bool)
    valid[rows[finite]] = True
    status = np.full(len(items), f"missing: not in {source_name}", dtype=object)
    status[rows[finite]] = "ok"
    status[rows[~finite]] = f"invalid: NaN or Inf in {source_name}"
    return data, valid, status.tolist(), known, int((~finite).sum())


def import_features(store: str | os.PathLike, source: str | os.PathLike, name: str, description: str = "",
                    options: ReadOptions | None = None, dtype: str = "float32", unknown_ids: str = "skip",
                    ids_from: str | None = None) -> ImportResult:
    """Import ``source`` into ``store`` as feature set ``name`` (see the module docstring)."""
    _check_request(str(store), name, dtype, unknown_ids)
    root, source = Path(store), Path(source)
    if root.exists() and not root.is_dir():
        raise StoreError(f"store path {root} exists and is not a folder")
    parsed = read_features(source, options)
    manifest = read_manifest(root) if root.is_dir() else Manifest()
    items, created = resolve_items(root, manifest, source, parsed, ids_from)
    holders = _holders(root, manifest, name)
    config = {"import": {
        "feature_set": name, "source": source.name, "source_sha256": parsed.sha256, "format": parsed.format,
        "layout": parsed.layout, "dtype": dtype, "description": description, "items": len(items),
        "items_sha256": items_digest(items),
    }}
    digest = config_hash(config)
    data, valid, status, known, invalid = build_rows(parsed, items, source.name, dtype)
    unknown = parsed.ids[~known]
    if len(unknown) and unknown_ids == "error":
        raise CinefuseError(
            f"{source.name}: {len(unknown)} id(s) are not items of store {root} (first: {str(unknown[0])!r}); "
            "--unknown-ids skip imports the others")
    result = ImportResult(
        name=name, store=str(root), changed=False, shard="", items=len(items), valid=int(valid.sum()),
        file_rows=len(parsed.ids), matched=int(known.sum()), unknown_ids=len(unknown), invalid_rows=invalid,
        dimension=int(parsed.data.shape[1]), dtype=dtype, source_sha256=parsed.sha256, format=parsed.format,
        layout=parsed.layout, ignored_columns=parsed.ignored, created_store=created,
        items_from=Path(ids_from).name if created and ids_from else "",
    )
    if len(holders) == 1 and holders[0].config_hash == digest:
        result.shard = holders[0].name
        return result
    attrs = {
        "source": source.name, "source_path": str(source.resolve()), "source_sha256": parsed.sha256,
        "description": description, "dimension": result.dimension, "dtype": dtype, "format": parsed.format,
        "layout": parsed.layout, "file_rows": result.file_rows, "matched": result.matched,
        "unknown_ids": result.unknown_ids, "invalid_rows": invalid, "backbone": f"imported: {source.name}",
    }
    block = FeatureBlock(data, valid, status, attrs=attrs)
    record = commit_import(root, items, name, block, digest, config, [r.name for r in holders])
    result.changed, result.shard, result.replaced = True, record.name, [r.name for r in holders]
    return result


def commit_import(root: Path, items: np.ndarray, name: str, block: FeatureBlock, digest: str, config: dict,
                  replace: list[str]) -> ShardRecord:
    """Write the set's shard under a temporary name and commit it in place of ``replace`` (one
    manifest write: the old set or the new one, never neither)."""
    validate_block(name, block, len(items))
    root = prepare_root(root)
    with store_lock(root, "cinefuse store import"):
        with manifest_lock(root):
            remove_leftovers(root)
        staged = StagedShard.create(root, len(items), digest, {})
        try:
            staged.feature_sets = write_shard_file(staged.target, items.tolist(), {name: block}, digest)
            staged.seal()
            fault_point("shard-temp-written")
            (record,) = commit_shards(root, [staged], {digest: config}, replace=replace)
        except BaseException:
            discard([staged])
            raise
    return record


def import_provenance(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Feature set -> its import config (source, sha256, format, dtype, description), for every
    set the store holds from ``store import``; read from the manifest alone."""
    out = {}
    for record in manifest.shards:
        config = manifest.configs.get(record.config_hash)
        if is_import_config(config):
            for set_name in record.feature_sets:
                out[set_name] = dict(config["import"])
    return dict(sorted(out.items()))
