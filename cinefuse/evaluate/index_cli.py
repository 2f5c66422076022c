"""``cinefuse index build``: a faiss index over a model's fused embeddings for ``cinefuse recommend``
(argparse only at import time)."""

from __future__ import annotations

import argparse

from cinefuse.choices import INDEX_KINDS
from cinefuse.runlog import logged

DESCRIPTION = """\
Build a nearest-neighbour index over a trained model's fused embeddings (W/embeddings when
evaluate wrote them, else embedded now) into W/index/<model>/ (index.faiss, ids.npy, index.json
with the kind and its parameters). --model NAME+prior indexes cos + w * prior exactly: the prior
is an extra dimension of each item's vector and the query carries w there. `cinefuse recommend` answers through it when present and says so.
--kind auto: exact (faiss IndexFlatIP) below 100k items, HNSW (M=32, efConstruction=40,
efSearch=128) from 100k. Evaluation always ranks exactly.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("index", help="nearest-neighbour index for recommend (faiss)", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="build W/index/<model> over the model's fused embeddings",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--workdir", required=True, help="the fuse workdir")
    b.add_argument("--model", help="which trained model, NAME or NAME+prior (cos + w * prior, the prior as an "
                                   "extra index dimension); default: the one validation chose, with or without prior")
    b.add_argument("--kind", choices=INDEX_KINDS, default="auto", help="index kind (default: by catalogue size)")
    b.add_argument("--json", action="store_true", help="print the index record (index.json) as one JSON object")
    b.set_defaults(handler=handle_build)


@logged("index")
def handle_build(args) -> int:
    import json

    from cinefuse.evaluate.index import describe_record
    from cinefuse.evaluate.recommend import build_recommend_index
    from cinefuse.fuse.workdir import Workdir

    record = build_recommend_index(args.workdir, args.model, args.kind)
    where = Workdir(args.workdir).index_dir(record["model"])
    if args.json:
        print(json.dumps({**record, "path": str(where)}, sort_keys=True))
        return 0
    print(f"{describe_record(record)} index over {record['n_items']} items ({record['dim']}-d) of model "
          f"{record['model']} in {record['build_seconds']:.2f} s: {where}")
    if record.get("why", "asked for") != "asked for":
        print(f"  ({record['why']})")
    return 0
