"""``cinefuse fuse``: train fusion Siamese networks over a store (argparse and the protocol names only at import time)."""

from __future__ import annotations

import argparse

from cinefuse.protocols import SPLIT_PROTOCOLS

DESCRIPTION = """\
Train an intermodal fusion Siamese network over the features in a store, with pairs and triplets
built from MovieLens ratings (positives: co-liked, genre-similar; negatives: disagreed-on,
genre-dissimilar) and a cold-item split (items 70/15/15). Writes W/config.json, W/split.json,
W/pairs.npz and W/runs/<model>/ (metrics.jsonl, curves.png, distances.png, checkpoints/, params/,
summary.json). Run the same command again to resume from the last checkpoint.

--grid trains the ablation grid {pair, triplet} x {cosine, euclidean} x {visual, visual+audio,
full}, plus the other fusion heads, and prints a results table. Configurations that share a tower
(same modality set and head) train together as one program: 3 programs for the 12 configurations.
"""

EPILOG = """\
examples:
  cinefuse fuse --store store/ --ratings ml-latest-small --movies ml-latest-small --workdir runs/a
  cinefuse fuse --store store/ --ratings ml-100k/u.data --movies ml-100k/u.item --workdir runs/b \\
      --config fuse.toml --loss pair --distance euclidean --modalities visual+audio
  cinefuse fuse --store store/ --ratings ml-latest-small --movies ml-latest-small --workdir runs/g --grid
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("fuse", help="train fusion Siamese networks over a store",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", help="store folder or s3://bucket/prefix (data.store)")
    p.add_argument("--ratings", help="ratings.csv | u.data | ratings.dat, or a MovieLens folder (data.ratings)")
    p.add_argument("--movies", help="movies.csv | u.item | movies.dat, or a MovieLens folder (data.movies)")
    p.add_argument("--workdir", required=True, help="run folder: written, and resumed from when it exists")
    p.add_argument("--config", help="fuse.toml (see `cinefuse.fuse.config` for every key)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// store")
    p.add_argument("--grid", action="store_true", help="train the ablation grid and print a results table")
    p.add_argument("--loss", choices=["pair", "triplet", "infonce"], help="loss.kind")
    p.add_argument("--distance", choices=["cosine", "euclidean"], help="loss.distance")
    p.add_argument("--mining", choices=["semi-hard", "batch-hard", "none"], help="loss.mining")
    p.add_argument("--head", choices=["concat-mlp", "ln-linear", "cross-attention", "gated"], help="model.head")
    p.add_argument("--modalities", help="model.modalities: visual | visual+audio | full | audio+text ...")
    p.add_argument("--protocol", choices=list(SPLIT_PROTOCOLS), help="split.protocol")
    p.add_argument("--steps", type=int, help="train.steps")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--seed", type=int, help="train.seed")
    dist = p.add_argument_group("several processes (jax.distributed; README \"Scaling out\")")
    dist.add_argument("--distributed", action="store_true",
                      help="train.distributed: start jax.distributed (alone: detect SLURM / Open MPI)")
    dist.add_argument("--coordinator", help="HOST:PORT of process 0 (env CINEFUSE_COORDINATOR)")
    dist.add_argument("--num-processes", type=int, help="how many processes (env CINEFUSE_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=int,
                      help="this process, 0..N-1 (env CINEFUSE_PROCESS_ID or JOB_COMPLETION_INDEX)")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    import sys

    from cinefuse.fuse.config import load_config
    from cinefuse.fuse.distributed import resolve_process_group
    from cinefuse.fuse.train import run_fuse

    overrides = {
        "data": {"store": args.store, "ratings": args.ratings, "movies": args.movies, "endpoint_url": args.endpoint_url},
        "loss": {"kind": args.loss, "distance": args.distance, "mining": args.mining},
        "model": {"head": args.head, "modalities": args.modalities},
        "split": {"protocol": args.protocol},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
                  "distributed": True if args.distributed else None},
    }
    config = load_config(args.config, overrides)
    processes = resolve_process_group(args.coordinator, args.num_processes, args.process_id)
    summary = run_fuse(config, args.workdir, grid=args.grid, processes=processes)
    print(summary["table"])
    print(f"workdir: {args.workdir}", file=sys.stderr)
    return 0
