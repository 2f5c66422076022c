"""``cinefuse export FORMAT``. Only argparse and the format names here; the handler imports the stage."""

from __future__ import annotations

import argparse
import json

from cinefuse.choices import EXPORT_FORMATS as FORMATS
from cinefuse.helptext import HelpFormatter

DESCRIPTION = """\
Write feature sets of a store (raw sets such as text/minilm, or fused/<model> sets that
`cinefuse evaluate` wrote into the workdir's embeddings store) and, with --workdir, that fuse run's
split (split.json) and ratings (its config's file, or --ratings), in the format of another
framework, into the new folder --out (swapped in whole when complete; an earlier export there is
replaced, any other non-empty folder refused). Each export holds export.json (provenance: store
config hashes, workdir and its config hash, split fingerprint, feature sets, cinefuse version,
time, every file's sha256) and README.txt (how to load it; printed too).

formats:
  cornac   features/<modality>/<name>.npz (ids, features) per set, interactions/{train,val,test}.tsv,
           and the lines building cornac.data.FeatureModality / ImageModality and a BaseMethod
  recbole  <name>/<name>.{train,valid,test}.inter (benchmark_filename), .item, .itememb (float_seq
           per set, for preload_weight) and recbole.yaml
  mmrec    <name>/<name>.inter (userID itemID rating [timestamp] x_label 0/1/2), <modality>_feat.npy
           row-aligned with itemID, i_id_mapping.csv, u_id_mapping.csv, <name>.yaml (needs --workdir)
  elliot   <modality>/<name>/<item id>.npy per item (Ducho's layout), {train,val,test}.tsv
  parquet  features.parquet (id, part, one nullable vector column per set), interactions.parquet
  npz      features.npz (ids, part, per set rows with NaN where invalid, <set>/valid, <set>/lengths),
           interactions.npz

Items without a valid row (missing, marked invalid, NaN or infinite values) are never written as
zeros: parquet and npz keep them with a mask; the other formats, whose rows carry no mask, leave out
items not valid in every set, and their ratings. Every count left out is printed and recorded.
"""


def register(subparsers) -> None:
    ex = subparsers.add_parser(
        "export",
        help="write store feature sets and a fuse run's split for Cornac, RecBole, MMRec, Elliot, Parquet or NPZ",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    ex.add_argument("format", metavar="FORMAT", choices=FORMATS, help=f"one of {', '.join(FORMATS)}")
    ex.add_argument("--sets", required=True,
                    help="comma-separated feature sets, e.g. text/minilm,fused/distill-full (fused/<model>: from "
                    "the workdir's embeddings store when the store lacks it)")
    ex.add_argument("--out", required=True, help="the export folder to write (new, empty, or an earlier export)")
    ex.add_argument("--store", help="feature store, local folder or s3://bucket/prefix (default: the one named in "
                    "the workdir's config.json)")
    ex.add_argument("--workdir", help="a fuse workdir: export its split and ratings too (default: features only; "
                    "mmrec needs it)")
    ex.add_argument("--ratings", help="ratings file or MovieLens folder, read with the run's recorded options "
                    "(default: the one named in the workdir's config.json)")
    ex.add_argument("--name", default="cinefuse", help="dataset name of a recbole or mmrec export")
    ex.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// store")
    ex.add_argument("--json", action="store_true", help="print the result as JSON instead of text")
    ex.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cinefuse.export.run import export

    result = export(args.format, args.out, args.sets, store=args.store, workdir=args.workdir, ratings=args.ratings,
                    endpoint_url=args.endpoint_url, name=args.name)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
        return 0
    ratings = (f", {sum(result.interactions.values())} ratings ("
               + ", ".join(f"{part} {n}" for part, n in result.interactions.items()) + ")"
               if result.interactions is not None else "")
    print(f"exported {result.items} items{ratings} as {result.format} to {result.out}: "
          f"{len(result.files)} files, provenance in export.json")
    print()
    print(result.readme, end="")  # what was left out, and how to load it
    return 0
