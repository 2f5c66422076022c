"""``cinefuse store info | verify | import | push | pull | merge | compact``."""

from __future__ import annotations

import argparse
import json
import sys

ENDPOINT_HELP = "S3-compatible endpoint, e.g. http://127.0.0.1:9000 (default: AWS, or $CINEFUSE_S3_ENDPOINT_URL)"


def register(subparsers) -> None:
    store = subparsers.add_parser(
        "store",
        help="inspect, verify and move feature stores",
        description="Inspect, verify and move cinefuse feature stores (a local folder or s3://bucket/prefix).",
    )
    sub = store.add_subparsers(dest="store_command", metavar="STORE_COMMAND", required=True)

    for name, help_text, description, handler in (
        ("info", "shards, rows and feature sets of a store",
         "Print a store's shards, rows, ids and feature sets with shapes, valid counts and backbones.", _info),
        ("verify", "check every shard against the manifest (exit 1 on damage)",
         "Check every shard against the manifest: presence, size, sha256, readable HDF5 datasets, row "
         "counts. Exits 1 and names each damaged shard and why.", _verify),
    ):
        command = sub.add_parser(name, help=help_text, description=description)
        command.add_argument("store", help="local folder or s3://bucket/prefix")
        command.add_argument("--json", action="store_true", help="print JSON instead of text")
        command.add_argument("--endpoint-url", help=ENDPOINT_HELP)
        command.set_defaults(handler=handler)

    _register_import(sub)

    push = sub.add_parser("push", help="upload a local store to S3",
                          description="Upload a local store to s3://bucket/prefix: shards first (multipart, "
                          "retried, skipped when already there with the same sha256), the manifest last.")
    push.add_argument("store", help="local store folder")
    push.add_argument("uri", help="s3://bucket/prefix")
    push.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    push.add_argument("--multipart-mb", type=int, default=64, help="part size in MiB (default 64)")
    push.add_argument("--attempts", type=int, default=3, help="tries per object (default 3)")
    push.set_defaults(handler=_push)

    pull = sub.add_parser("pull", help="download a store from S3",
                          description="Download s3://bucket/prefix into a local folder; each shard is "
                          "checked against the manifest's sha256, the manifest is written last.")
    pull.add_argument("uri", help="s3://bucket/prefix")
    pull.add_argument("store", help="local folder to write")
    pull.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    pull.add_argument("--attempts", type=int, default=3, help="tries per object (default 3)")
    pull.set_defaults(handler=_pull)

    merge = sub.add_parser(
        "merge", help="copy the shards of several stores into one",
        description="Copy every shard of SRC... (local folders or s3://bucket/prefix) into the new local store DEST, "
        "with one manifest; each shard keeps its sha256. Stores whose configs conflict for a feature set are "
        "refused. An id in several sources: the last SRC named wins (a later shard wins, as in every store).")
    merge.add_argument("sources", nargs="+", metavar="SRC", help="a source store: local folder or s3://bucket/prefix")
    merge.add_argument("dest", metavar="DEST", help="the new store folder (absent or empty)")
    merge.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    merge.set_defaults(handler=_merge)

    compact = sub.add_parser(
        "compact", help="rewrite many small shards into few",
        description="Rewrite runs of small shards (same config, feature sets and provenance) into shards of up "
        "to --shard-mb MiB, in place or into the new store DEST. Each new shard is read back and compared row by "
        "row before one manifest write swaps it in; readers see the same rows before and after.")
    compact.add_argument("store", help="local folder (or s3://bucket/prefix with DEST)")
    compact.add_argument("dest", nargs="?", help="new store folder (default: compact in place)")
    compact.add_argument("--shard-mb", type=float, default=512, help="largest shard to write, MiB (default 512)")
    compact.add_argument("--endpoint-url", help=ENDPOINT_HELP)
    compact.set_defaults(handler=_compact)


def _register_import(sub) -> None:
    command = sub.add_parser(
        "import", help="bring precomputed per-item features into a store as a feature set",
        description="Import precomputed per-item features (CSV/TSV, NPY + ids, NPZ, Parquet, JSON, a folder of "
        "<id>.json) into a local store as the feature set --name, one row per store item: items the file lacks "
        "are valid=false ('missing: not in FILE'), NaN/Inf rows are invalid. Committed atomically with its "
        "sha256 and provenance; importing the same file again changes nothing, a changed file replaces the set. "
        "File ids that are not store items are skipped (--unknown-ids error refuses the file). A new store "
        "needs --ids-from: its items are the ids of that file.")
    command.add_argument("store", help="local store folder")
    command.add_argument("source", help="the feature file, or a folder of <id>.json files")
    command.add_argument("--name", required=True, help="feature set name <modality>/<name>, e.g. visual/mmtf_aesthetic")
    command.add_argument("--description", default="", help="what the features are, kept as provenance")
    command.add_argument("--format", choices=["csv", "tsv", "npy", "npz", "parquet", "json", "json-dir"],
                         help="the file's format (default: from its extension)")
    command.add_argument("--id-column", help="CSV/TSV/Parquet: the id column (default: the first); JSON records: the id field")
    command.add_argument("--vector-column", help="the column (or JSON field) holding each item's delimited vector")
    command.add_argument("--columns", help="comma-separated dimension columns (default: every numeric column)")
    command.add_argument("--delimiter", help="CSV field delimiter (default ',' for .csv, tab for .tsv)")
    command.add_argument("--ids", help="NPY: the ids, one a line in row order (or an .npy of ids)")
    command.add_argument("--ids-key", default="ids", help="NPZ: the array of ids (default 'ids')")
    command.add_argument("--data-key", help="NPZ: the feature array (default: the one other array)")
    command.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored dtype (default float32)")
    command.add_argument("--unknown-ids", choices=["skip", "error"], default="skip",
                         help="file ids that are not store items: skip them (default) or refuse the file")
    command.add_argument("--ids-from", metavar="PATH",
                         help="a new store's items: the imported file itself, or a text file of ids, one a line")
    command.add_argument("--json", action="store_true", help="print the result as JSON")
    command.set_defaults(handler=_import)


def _import(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cinefuse.store.import_formats import ReadOptions
    from cinefuse.store.importer import import_features

    options = ReadOptions(format=args.format, id_column=args.id_column, vector_column=args.vector_column,
                          columns=[c.strip() for c in args.columns.split(",")] if args.columns else None,
                          delimiter=args.delimiter, ids=args.ids, ids_key=args.ids_key, data_key=args.data_key)
    result = import_features(args.store, args.source, args.name, args.description, options, dtype=args.dtype,
                             unknown_ids=args.unknown_ids, ids_from=args.ids_from)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    source = args.source.rstrip("/").rsplit("/", 1)[-1]
    if not result.changed:
        print(f"{result.name} in {result.store} is already imported from {source} (sha256 {result.source_sha256[:12]}, "
              f"same options): nothing changed")
        return 0
    print(f"imported {result.name} from {source} (sha256 {result.source_sha256[:12]}, {result.format}: "
          f"{_layout_text(result.layout)}) "
          f"into {result.shard}: {result.dimension} dims, {result.dtype}"
          + (f"; replaced {', '.join(result.replaced)}" if result.replaced else "")
          + (f"; new store, its items the {result.items} ids of {result.items_from}" if result.created_store else ""))
    print(f"  coverage: {result.valid} of {result.items} store items hold a valid row ({_pct(result.valid, result.items)}); "
          f"{result.items - result.matched} not in the file, {result.invalid_rows} with NaN or Inf")
    if result.unknown_ids:
        print(f"  {result.unknown_ids} of the file's {result.file_rows} ids are not store items: skipped "
              "(--unknown-ids error refuses such a file)")
    if result.ignored_columns:
        print(f"  columns not used: {', '.join(result.ignored_columns)}")
    return 0


def _layout_text(layout: dict) -> str:
    """``{"id_column": "itemId", "columns": ["f1", ..., "f7"]}`` -> ``id column itemId, columns f1..f7``."""
    parts = []
    for key, value in layout.items():
        if isinstance(value, list):
            value = ",".join(value) if len(value) < 5 else f"{value[0]}..{value[-1]}"
        parts.append(f"{key.replace('_', ' ')} {value!r}" if key == "delimiter" else f"{key.replace('_', ' ')} {value}")
    return ", ".join(parts)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _info(args: argparse.Namespace) -> int:
    from cinefuse.store import open_store
    from cinefuse.store.importer import import_provenance, store_items

    store = open_store(args.store, endpoint_url=args.endpoint_url)
    sets = store.feature_sets()
    ids = store.ids() if store.manifest.shards else []
    items = len(store_items(store))
    summary = {
        "location": store.location,
        "format_version": store.manifest.format_version,
        "shards": len(store.manifest.shards),
        "rows": store.manifest.total_rows,
        "ids": len(ids),
        "items": items,
        "configs": sorted(store.manifest.configs),
        "feature_sets": {},
        "coverage": {},
        "imported": import_provenance(store.manifest),
    }
    for name, info in sets.items():
        valid = store.count_valid(name)
        summary["feature_sets"][name] = {
            "shape": list(info.shape), "dtype": info.dtype, "kind": info.kind, "rows": info.rows,
            "valid": valid, "backbone": info.attrs.get("backbone", ""),
        }
        summary["coverage"][name] = {"valid": valid, "items": items, "fraction": round(valid / items, 6) if items else 0.0}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"store    {summary['location']}  (format v{summary['format_version']})")
    print(f"shards   {summary['shards']}   rows {summary['rows']}   ids {summary['ids']}   items {items}   "
          f"configs {len(summary['configs'])}")
    if not sets:
        print("feature sets: none")
        return 0
    width = max(len(n) for n in sets)
    print(f"{'feature set':<{width}}  {'shape':<14} {'dtype':<8} {'rows':>7} {'valid':>7} {'coverage':>8}  backbone")
    for name, row in summary["feature_sets"].items():
        shape = "x".join(str(x) for x in row["shape"])
        print(f"{name:<{width}}  {shape:<14} {row['dtype']:<8} {row['rows']:>7} {row['valid']:>7} "
              f"{_pct(row['valid'], items):>8}  {row['backbone']}")
    for name, source in summary["imported"].items():
        print(f"imported {name}: {source['source']} (sha256 {source['source_sha256'][:12]}, {source['format']}, "
              f"{source['dtype']})" + (f": {source['description']}" if source.get("description") else ""))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from cinefuse.store.verify import verify_store

    report = verify_store(args.store, endpoint_url=args.endpoint_url)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        if report.manifest_error:
            print(f"DAMAGED  manifest: {report.manifest_error}")
        for check in report.shards:
            print(f"{'ok     ' if check.ok else 'DAMAGED'}  {check.name}: {check.reason}")
        for name in report.leftovers:
            print(f"note     {name}: not in the manifest (left by an interrupted writer; not part of the store)")
        verdict = "clean" if report.ok else f"{len(report.damaged) + bool(report.manifest_error)} problem(s)"
        print(f"{report.location}: {len(report.shards)} shards, {verdict}", file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, disable=None)


def _push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cinefuse.store.manifest import read_manifest
    from cinefuse.store.s3 import push

    total = sum(shard.bytes for shard in read_manifest(Path(args.store)).shards)
    with _progress_bar(total, "push") as bar:
        result = push(args.store, args.uri, args.endpoint_url, multipart_bytes=args.multipart_mb << 20,
                      attempts=args.attempts, progress=bar.update)
    print(f"pushed {args.store} -> {args.uri}: {result['uploaded']} shards uploaded, {result['skipped']} already there")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from cinefuse.store.s3 import pull

    with _progress_bar(0, "pull") as bar:
        result = pull(args.uri, args.store, args.endpoint_url, attempts=args.attempts, progress=bar.update)
    print(f"pulled {args.uri} -> {args.store}: {result['downloaded']} shards downloaded, {result['skipped']} already there")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from cinefuse.store.combine import merge_stores

    dest = args.dest
    result = merge_stores(args.sources, dest, endpoint_url=args.endpoint_url)
    print(f"merged {result['sources']} store(s) -> {dest}: {result['shards']} shards, {result['rows']} rows")
    for name, count in sorted(result["repeated_rows"].items()):
        print(f"  {name}: {count} row(s) repeat an id of another shard; the later shard (last source) wins")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from cinefuse.store.combine import compact_store

    result = compact_store(args.store, args.dest, target_mb=args.shard_mb, endpoint_url=args.endpoint_url)
    dropped = result["rows_before"] - result["rows"]
    print(f"compacted {args.store}{' -> ' + args.dest if args.dest else ''}: {result['shards_before']} shards -> "
          f"{result['shards_after']}, {result['rows']} rows"
          + (f" ({dropped} rows hidden by a later row of the same id dropped)" if dropped else ""))
    return 0
