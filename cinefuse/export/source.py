"""What an export writes, gathered once for every format: the asked feature sets read from the
store (and ``fused/<model>`` sets from a workdir's embeddings store), aligned by item id, and a
fuse run's split with the ratings divided by it.

Rows a format must not use are never passed on as if real: a row that is missing from the
store, marked invalid there, or holding a NaN or infinite value is invalid here (``valid`` False
and the row NaN), with the reason counted. :func:`aligned` keeps the items valid in every set,
for the formats whose files are row-aligned without a mask (Cornac, RecBole, MMRec, Elliot).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from cinefuse.errors import CinefuseError

PARTS = ("train", "val", "test")


@dataclass
class ExportSet:
    """One feature set, rows aligned with :attr:`ExportInput.ids` (float32; NaN where invalid)."""

    name: str
    data: np.ndarray                 # (N, D), or (N, T, D) for a sequence set
    valid: np.ndarray                # (N,) bool: a real row of the store, finite
    lengths: np.ndarray | None       # (N,) int32 for a sequence set
    store: str                       # where it was read from
    config_hashes: list[str]         # of the store shards holding it
    source_dtype: str                # the store's dtype (float16 rows are widened exactly)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> items not valid

    @property
    def modality(self) -> str:
        return self.name.split("/", 1)[0]


@dataclass
class Interactions:
    """Ratings rows: user (int64), item (str), rating (float32), timestamp (int64 or None)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray | None

    def __len__(self) -> int:
        return len(self.user)

    def take(self, keep: np.ndarray) -> "Interactions":
        return Interactions(self.user[keep], self.item[keep], self.rating[keep],
                            None if self.timestamp is None else self.timestamp[keep])


@dataclass
class ExportInput:
    """Everything one export writes; built by :func:`gather`."""

    ids: np.ndarray                            # items, in cinefuse's id order
    sets: dict[str, ExportSet]
    part: np.ndarray | None                    # per item "train" / "val" / "test" (a run was given)
    interactions: dict[str, Interactions] | None  # part -> its ratings (a run was given)
    provenance: dict                           # workdir, split, ratings, stores (export.json)
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> items left out
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> ratings left out

    def require_matrices(self, fmt: str) -> None:
        """A clear error for a sequence set in a format that holds one vector per item."""
        for s in self.sets.values():
            if s.data.ndim != 2:
                raise CinefuseError(
                    f"feature set {s.name!r} is a sequence set ({s.data.shape[1]} x {s.data.shape[2]} per item); "
                    f"{fmt} holds one vector per item: export a pooled set of the store instead, or use the "
                    "npz format (which keeps sequences with their lengths)")


def parse_sets(sets: str | Sequence[str]) -> list[str]:
    """``"text/minilm,fused/distill-full"`` (or a list) -> the names, each once, in order."""
    names = [s.strip() for s in (sets.split(",") if isinstance(sets, str) else sets)]
    names = list(dict.fromkeys(n for n in names if n))
    if not names:
        raise CinefuseError("no feature set to export: pass --sets, e.g. --sets text/minilm,fused/distill-full")
    for name in names:
        if name.count("/") != 1 or not all(name.split("/")):
            raise CinefuseError(f"feature set {name!r} is not a set name <modality>/<name>, e.g. text/minilm")
    return names


def gather(sets: str | Sequence[str], store=None, workdir=None, ratings=None, endpoint_url=None) -> ExportInput:
    """The feature sets ``sets`` of ``store`` (default: the run's store), and with ``workdir``
    (a fuse run) its split and its ratings (``ratings`` overrides the recorded file; read with
    the run's recorded options). ``fused/<model>`` sets the store lacks are read from the
    workdir's embeddings store (``cinefuse evaluate`` writes them)."""
    from cinefuse.fuse.workdir import Workdir

    names = parse_sets(sets)
    run = _open_run(Workdir(workdir)) if workdir is not None else None
    if ratings is not None and run is None:
        raise CinefuseError("--ratings needs --workdir: the ratings are divided by that run's split")
    location = store if store is not None else (run["config"].data.store or None) if run else None
    if location is None:
        raise CinefuseError("no store to export from: pass --store STORE (or --workdir of a fuse run whose "
                            "config names its store)")
    sources = _resolve_sets(names, str(location), run["wd"] if run else None, endpoint_url)
    ids = _item_ids(sources, run)
    groups: dict[int, list[str]] = {}  # one read per store, of every set asked from it
    for name in names:
        groups.setdefault(id(sources[name]), []).append(name)
    loaded = {}
    for wanted in groups.values():
        table = sources[wanted[0]].load(wanted)
        for name in wanted:
            loaded[name] = _aligned_set(name, table, ids, sources[name])
    provenance = {"workdir": None, "split": None, "ratings": None}
    part = interactions = None
    dropped: dict[str, int] = {}
    if run is not None:
        part, interactions, dropped, provenance = _run_data(run, ids, ratings)
    return ExportInput(ids, {n: loaded[n] for n in names}, part, interactions, provenance, {}, dropped)


def _open_run(wd) -> dict:
    from cinefuse.evaluate.serving import check_workdir
    from cinefuse.fuse.workdir import read_json

    check_workdir(wd)
    if not wd.split_path.is_file():
        raise CinefuseError(f"workdir {wd.root} has no split.json (fuse writes it when a run starts); train first "
                            f"with `cinefuse fuse --workdir {wd.root} ...`, or export without --workdir")
    split = wd.split()
    if split.get("protocol") == "pair":
        raise CinefuseError(f"{wd.split_path} is a pair split (protocol 'pair'): its parts share items, so it does "
                            "not divide the ratings; export a cold-item or cold-item-time run")
    for part in PARTS:
        if not isinstance(split.get(part), list):
            raise CinefuseError(f"{wd.split_path} has no {part!r} item list; rerun `cinefuse fuse` in that workdir")
    return {"wd": wd, "config": wd.config(), "record": read_json(wd.config_path, "rerun `cinefuse fuse`"),
            "split": split}


def _resolve_sets(names: list[str], location: str, wd, endpoint_url) -> dict:
    """Set name -> the open store holding it: the store, else the workdir's fused store."""
    from cinefuse.store import open_store

    store = open_store(location, endpoint_url=endpoint_url)
    have = store.feature_sets()
    fused, fused_have = None, {}
    if wd is not None and (wd.embeddings_dir / "manifest.json").is_file():
        fused = open_store(wd.embeddings_dir)
        fused_have = fused.feature_sets()
    sources = {}
    for name in names:
        if name in have:
            sources[name] = store
        elif name in fused_have:
            sources[name] = fused
        else:
            raise CinefuseError(_unknown_set(name, location, have, wd, fused_have))
    return sources


def _unknown_set(name: str, location: str, have: dict, wd, fused_have: dict) -> str:
    message = f"feature set {name!r} is not in store {location} (it has: {', '.join(have) or 'none'})"
    if wd is not None:
        message += (f" nor in the fused store {wd.embeddings_dir} (it has: {', '.join(fused_have) or 'none'}; "
                    f"`cinefuse evaluate --workdir {wd.root}` writes fused/<model> sets)")
    elif name.startswith("fused/"):
        message += "; fused/<model> sets live in a fuse workdir's embeddings store: pass --workdir"
    return message


def _item_ids(sources: dict, run: dict | None) -> np.ndarray:
    """The items: the run's split items, else every id of the asked sets; in cinefuse's id order."""
    from cinefuse.metrics.ranking import sort_ids

    if run is not None:
        every = [str(i) for part in PARTS for i in run["split"][part]]
    else:
        every = [str(i) for name, store in sources.items() for i in store.ids(name).tolist()]
    return sort_ids(np.unique(np.asarray(every, dtype=str)))


def _aligned_set(name: str, table, ids: np.ndarray, store) -> ExportSet:
    """``table``'s rows of ``name`` placed at ``ids``: NaN and invalid where the store has no
    valid, finite row, each reason counted."""
    source = table.features[name]
    order = np.argsort(table.ids, kind="stable")
    ordered = table.ids[order]
    at = np.minimum(np.searchsorted(ordered, ids), max(len(ordered) - 1, 0))
    has = (ordered[at] == ids) if len(ordered) else np.zeros(len(ids), bool)
    src = order[at[has]]
    data = np.full((len(ids),) + source.shape[1:], np.nan, dtype=np.float32)
    data[has] = source[src]
    marked = np.zeros(len(ids), bool)
    marked[has] = table.valid[name][src]
    finite = np.isfinite(data.reshape(len(ids), -1)).all(axis=1)
    valid = marked & finite
    data[~valid] = np.nan
    lengths = None
    if table.lengths.get(name) is not None:
        lengths = np.zeros(len(ids), np.int32)
        lengths[has] = table.lengths[name][src]
        lengths[~valid] = 0
    skipped = {"not in the store": int((~has).sum()), "marked invalid in the store": int((has & ~marked).sum()),
               "NaN or infinite values": int((marked & ~finite).sum())}
    hashes = sorted({r.config_hash for r in store.manifest.shards if name in r.feature_sets})
    return ExportSet(name, data, valid, lengths, store.location, hashes, str(source.dtype),
                     {k: v for k, v in skipped.items() if v})


def _run_data(run: dict, ids: np.ndarray, ratings_path) -> tuple:
    """(part per item, part -> interactions, dropped counts, provenance) of a fuse run."""
    from cinefuse.datasets.movielens import load_ratings
    from cinefuse.evaluate.job import RatingsSource, ratings_options
    from cinefuse.store.manifest import config_hash

    wd, config, split = run["wd"], run["config"], run["split"]
    path = ratings_path if ratings_path is not None else (config.data.ratings or None)
    if path is None:
        raise CinefuseError(f"{wd.config_path} names no ratings file; pass --ratings FILE")
    rows = load_ratings(path, **ratings_options(config, RatingsSource(path=str(path))))
    part = np.full(len(ids), "", dtype=object)
    for name in PARTS:
        part[np.isin(ids, np.asarray(split[name], dtype=str))] = name
    interactions, dropped = split_interactions(rows, split)
    fingerprint = config_hash({k: split.get(k) for k in ("protocol", "seed", *PARTS, "cut_timestamp")})
    provenance = {
        "workdir": {"path": str(Path(wd.root).resolve()), "config_hash": config_hash(run["record"])},
        "split": {"protocol": split.get("protocol"), "seed": split.get("seed"), "fingerprint": fingerprint,
                  "items": {name: len(split[name]) for name in PARTS},
                  **({"cut_timestamp": split["cut_timestamp"]} if "cut_timestamp" in split else {})},
        "ratings": {"path": str(path), "rows": len(rows), "like_threshold": float(config.pairs.like_threshold)},
    }
    return part, interactions, dropped, provenance


def split_interactions(ratings, split: dict) -> tuple[dict[str, Interactions], dict[str, int]]:
    """The ratings of each part's items, as fuse divided them: under ``cold-item-time`` the
    training part keeps only ratings given before the cut (fuse never trained on the others).
    Returns (part -> interactions, reason -> ratings left out)."""
    item = np.asarray(ratings.item, dtype=str)
    rows = Interactions(np.asarray(ratings.user, np.int64), item, np.asarray(ratings.rating, np.float32),
                        None if ratings.timestamp is None else np.asarray(ratings.timestamp, np.int64))
    placed = np.zeros(len(item), bool)
    out, dropped = {}, {}
    for name in PARTS:
        keep = np.isin(item, np.asarray(split[name], dtype=str))
        placed |= keep
        if name == "train" and split.get("cut_timestamp") is not None and rows.timestamp is not None:
            late = keep & (rows.timestamp >= int(split["cut_timestamp"]))
            dropped["training items' ratings at or after the cut"] = int(late.sum())
            keep &= ~late
        out[name] = rows.take(keep)
    dropped["ratings of items outside the split"] = int((~placed).sum())
    return out, {k: v for k, v in dropped.items() if v}


def aligned(inp: ExportInput) -> ExportInput:
    """``inp`` restricted to the items valid in every set (with their ratings), the items and
    ratings left out counted: for the formats whose rows carry no validity mask."""
    keep = np.ones(len(inp.ids), bool)
    for s in inp.sets.values():
        keep &= s.valid
    skipped = dict(inp.skipped)
    if (~keep).sum():
        skipped["not valid in every exported set"] = int((~keep).sum())
    sets = {n: replace(s, data=s.data[keep], valid=s.valid[keep],
                       lengths=None if s.lengths is None else s.lengths[keep]) for n, s in inp.sets.items()}
    interactions, dropped = inp.interactions, dict(inp.dropped)
    if interactions is not None:
        kept_ids = inp.ids[keep]
        interactions = {}
        lost = 0
        for name, rows in inp.interactions.items():
            inside = np.isin(rows.item, kept_ids)
            lost += int((~inside).sum())
            interactions[name] = rows.take(inside)
        if lost:
            dropped["ratings of split items without a valid row in every exported set"] = lost
    part = None if inp.part is None else inp.part[keep]
    return ExportInput(inp.ids[keep], sets, part, interactions, inp.provenance, skipped, dropped)
