"""``cinefuse fuse``: train fusion Siamese networks over a store (argparse and the protocol names only at import time)."""

from __future__ import annotations

from cinefuse.choices import (
    DISTANCES,
    HEADS,
    LOSSES,
    MINERS,
    OBJECTIVES,
    ON_BAD_RATINGS,
    SPLIT_PROTOCOLS,
)
from cinefuse.helptext import HelpFormatter
from cinefuse.runlog import logged

DESCRIPTION = """\
Train an intermodal fusion Siamese network over the features in a store, from MovieLens ratings
and a cold-item split (items 70/15/15; `--protocol cold-item-time`: the newest items are cold and
only earlier ratings train). The objective (`--objective`, [objective] in --config) says what it
learns, all from the training ratings: `distill` (default: the content embedding pulled to an EASE /
PureSVD teacher's item vectors and similarity rows), `co-like` (items the same users like,
popularity-corrected, multi-positive InfoNCE), `history` (users' likes reconstructed through the
fused embeddings, beeFormer/ELSA style), or `thesis` (the thesis's genre-filtered pairs with the
pair or triplet loss). A prior head learns each item's likely popularity from its content; its
weight is chosen on the validation items. Validation measures item-to-item nDCG@10 and
user-to-item Recall@20 / nDCG@10; the kept model is the one with the best validation metric of
[selection] task (default item-to-item nDCG@10). `--seeds 0,1,2` trains every model once per seed
(<model>@seed<N>). Checkpoints and parameters carry sha256 manifests, checked before use. Writes W/config.json, W/split.json, W/pairs.npz and W/runs/<model>/ (metrics.jsonl,
curves.png, checkpoints/, params/, summary.json), TensorBoard event files per model in
W/tensorboard/<model>/ (`tensorboard --logdir W/tensorboard`) and this run's log in
W/logs/fuse-<UTC time>.log. Run the same command again to resume.

Modalities follow what the store holds: each modality prefix of its feature sets with valid rows
(visual, audio, text, meta, ...) stands for its per-item vector sets, `full` for all of them;
[data.modality_sets] in --config replaces single modalities and keeps the others. The run says in
one line what it chose.

--grid trains the ablation grid: grid.objectives (default: the [objective] alone) x the modalities
added one at a time (a store with visual, audio and text: visual, visual+audio, full; a text-only
one: text, full; grid.modalities chooses others), the thesis objective also x {pair, triplet} x
{cosine, euclidean}, plus the other fusion heads, and prints a results table. Configurations that
share a tower (same objective, modality set and head) train together as one program.
"""

EPILOG = """\
examples:
  cinefuse fuse --store store/ --ratings ml-latest-small --movies ml-latest-small --workdir runs/a
  cinefuse fuse --store store/ --ratings ml-100k/u.data --movies ml-100k/u.item --workdir runs/b \\
      --config fuse.toml --loss pair --distance euclidean --modalities visual+audio
  cinefuse fuse --store store/ --ratings ml/ --movies ml/ --workdir runs/c --modalities text/minilm,meta/year
  cinefuse fuse --store store/ --ratings ml-latest-small --movies ml-latest-small --workdir runs/g --grid
"""


class ConfigDefault:
    """The default of one fuse config key (``"loss.kind"``), read from the config dataclasses
    when the help is shown: the config module imports jax, which ``cinefuse --help`` must not."""

    def __init__(self, key: str):
        self.key = key

    def __str__(self) -> str:
        from cinefuse.fuse.config import SECTIONS

        section, name = self.key.split(".")
        return str(getattr(SECTIONS[section](), name))


def _config_option(parser, flag: str, key: str, help: str = "", **kwargs) -> None:
    """An option that overrides config key ``key``; its help shows the config's default."""
    action = parser.add_argument(flag, help=f"{key}{': ' + help if help else ''}", **kwargs)
    action.shown_default = ConfigDefault(key)


def register(subparsers) -> None:
    p = subparsers.add_parser("fuse", help="train fusion Siamese networks over a store",
                              description=DESCRIPTION, epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--store", help="store folder or s3://bucket/prefix (data.store)")
    p.add_argument("--ratings", help="a ratings file (CSV/TSV/.dat/u.data, recognised by content) or a MovieLens "
                   "folder (data.ratings)")
    p.add_argument("--movies", help="movies.csv | u.item | movies.dat, or a MovieLens folder (data.movies)")
    p.add_argument("--ratings-sep", metavar="SEP", help="the ratings file's separator (',', tab, '::', ';', '|', "
                   "spaces; data.ratings_sep; default: recognised from the content)")
    p.add_argument("--ratings-columns", metavar="USER,ITEM,RATING[,TIMESTAMP]",
                   help="the ratings file's header names (or 1-based column numbers without a header) for user, "
                   "item, rating and timestamp (data.ratings_columns; the timestamp only cold-item-time needs)")
    p.add_argument("--on-bad-ratings", choices=ON_BAD_RATINGS,
                   help="non-finite, negative or too large ratings and pairs rated differently: error stops with "
                   "counts and examples, drop removes them, keep-last keeps a pair's latest (data.on_bad_ratings; "
                   "default error)")
    p.add_argument("--workdir", required=True, help="run folder: written, and resumed from when it exists")
    p.add_argument("--config", help="fuse.toml (see `cinefuse.fuse.config` for every key); options override it")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// store")
    p.add_argument("--grid", action="store_true", help="train the ablation grid and print a results table")
    _config_option(p, "--objective", "objective.kind", choices=list(OBJECTIVES))
    _config_option(p, "--loss", "loss.kind", choices=list(LOSSES))
    _config_option(p, "--distance", "loss.distance", choices=list(DISTANCES))
    _config_option(p, "--mining", "loss.mining", choices=list(MINERS))
    _config_option(p, "--head", "model.head", choices=list(HEADS))
    _config_option(p, "--modalities", "model.modalities",
                   "visual | visual+audio | text+meta | full (every modality the store holds), or feature "
                   "sets, comma-separated: text/minilm,meta/year")
    _config_option(p, "--protocol", "split.protocol", choices=list(SPLIT_PROTOCOLS))
    action = p.add_argument("--steps", type=int, help="train.steps: a multiple of train.steps_per_call (%(per_call)s)")
    action.shown_default, action.per_call = ConfigDefault("train.steps"), ConfigDefault("train.steps_per_call")
    _config_option(p, "--batch-size", "train.batch_size", type=int)
    _config_option(p, "--seed", "train.seed", type=int)
    _config_option(p, "--seeds", "train.seeds", type=seeds_option,
                   help="several seeds, comma-separated (0,1,2): every model trained once per seed, "
                        "named <model>@seed<N>")
    _config_option(p, "--patience", "train.patience", type=int,
                   help="stop a model after this many validations without improvement and keep its best step "
                        "(0: never stop early)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="TensorBoard event files, one folder per model: training loss, learning rate, steps/s and "
                   "validation metrics at every validation; hyper-parameters, final metrics and the prior weight "
                   "scan in <model>/final (view with `tensorboard --logdir DIR`; default: W/tensorboard)")
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", help="write no TensorBoard events")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON instead of the table")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    dist = p.add_argument_group("several processes (jax.distributed; README \"Scaling out\")")
    dist.add_argument("--distributed", action="store_true",
                      help="train.distributed: start jax.distributed (alone: detect SLURM / Open MPI)")
    dist.add_argument("--coordinator", help="HOST:PORT of process 0 (env CINEFUSE_COORDINATOR)")
    dist.add_argument("--num-processes", type=int, help="how many processes (env CINEFUSE_NUM_PROCESSES)")
    dist.add_argument("--process-id", type=int,
                      help="this process, 0..N-1 (env CINEFUSE_PROCESS_ID or JOB_COMPLETION_INDEX)")
    p.set_defaults(handler=handle)


def seeds_option(value: str) -> list[int]:
    """``--seeds 0,1,2``: the list of distinct seeds."""
    import argparse

    try:
        seeds = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of integers like 0,1,2") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed, like 0,1,2")
    return seeds


def tensorboard_folder(args):
    """``--tensorboard DIR`` as a path, W/tensorboard without it, None with ``--no-tensorboard``."""
    from pathlib import Path

    if args.tensorboard is False:
        return None
    return Path(args.tensorboard) if args.tensorboard else Path(args.workdir) / "tensorboard"


def modalities_option(value: str | None):
    """``--modalities``: a modality spec ("visual+audio", "full") as it is, feature sets
    ("text/minilm,meta/year") as the list the config takes."""
    if value is None or "/" not in value:
        return value
    return [s.strip() for s in value.split(",") if s.strip()]


@logged("fuse", creates_workdir=True)
def handle(args) -> int:
    import sys

    from cinefuse.fuse.config import load_config
    from cinefuse.fuse.distributed import resolve_process_group
    from cinefuse.fuse.train import run_fuse

    overrides = {
        "data": {"store": args.store, "ratings": args.ratings, "movies": args.movies, "endpoint_url": args.endpoint_url,
                 "ratings_sep": args.ratings_sep, "ratings_columns": args.ratings_columns,
                 "on_bad_ratings": args.on_bad_ratings},
        "objective": {"kind": args.objective},
        "loss": {"kind": args.loss, "distance": args.distance, "mining": args.mining},
        "model": {"head": args.head, "modalities": modalities_option(args.modalities)},
        "split": {"protocol": args.protocol},
        "train": {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "seeds": args.seeds,
                  "patience": args.patience,
                  "distributed": True if args.distributed else None},
    }
    config = load_config(args.config, overrides)
    processes = resolve_process_group(args.coordinator, args.num_processes, args.process_id)
    summary = run_fuse(config, args.workdir, grid=args.grid, progress=args.progress, processes=processes,
                       tensorboard=tensorboard_folder(args))
    if args.json:
        import json

        print(json.dumps(summary, indent=2, default=str))
    else:
        print(summary["table"])
    print(f"workdir: {args.workdir}", file=sys.stderr)
    return 0
