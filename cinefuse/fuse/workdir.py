"""The fuse workdir: the one module that knows its layout. Training writes through it; evaluate,
recommend and the demo read through it.

    W/config.json                 the fuse config, the full record of the run (a FuseConfig, its
                                  modality sets and grid as resolved against the store); a run that
                                  fails before anything trained takes it away again (``recording``)
    W/split.json                  {"protocol", "seed", "train", "val", "test", "stats"}
    W/pairs.npz                   the pairs and triplets (deterministic for the seed)
    W/summary.json                the last run's summary (W/grid_summary.json for --grid)
    W/runs/<model>/               one trained configuration: config.json (its RunRecord),
                                  metrics.jsonl, curves.png, distances.png, checkpoints/,
                                  params/ (the final parameters), feature_stats.npz, summary.json
    W/grid/<modalities>-<head>/   checkpoints of one grid program (its members train together)
    W/embeddings/                 a store of fused/<model> feature sets (written by evaluate)
    W/evaluation/<protocol>/      results.{md,csv,json} and plots (written by evaluate)
    W/tensorboard/<model>/        TensorBoard event files (written by fuse; --tensorboard DIR)
    W/logs/<command>-<UTC>.log    a log of every fuse, evaluate, recommend and index build run
    W/index/<model>/              index.faiss, ids.npy, index.json: a nearest-neighbour index
                                  over the fused embeddings (written by `cinefuse index build`)

JSON is written atomically (``cinefuse.atomic.atomic_write``: an exclusive temporary file next
to it, never through a link, then rename) so a killed run never leaves half a record;
``metrics.jsonl`` lines cut by a kill are skipped when read. A training run holds the workdir's
lock (``cinefuse.locks``, ``W/.cinefuse.lock``) while it records: a second fuse on the same
workdir stops at once naming the holder. The recorded config never holds an endpoint URL's user
or password (``store.location.redact_url``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cinefuse.atomic import atomic_write
from cinefuse.errors import CinefuseError
from cinefuse.fuse.config import FuseConfig, config_from_dict
from cinefuse.locks import hold
from cinefuse.store.location import redact_url

FUSED_STORE_DIR = "embeddings"
RESULTS_DIR = "evaluation"
RERUN = "rerun `cinefuse fuse` in that workdir"


def read_json(path: Path, what: str) -> Any:
    """The JSON at ``path``; a missing or broken file is a ``CinefuseError`` ending in ``what``
    (the fix)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CinefuseError(f"{path} not found: {what}") from None
    except json.JSONDecodeError as exc:
        raise CinefuseError(f"{path} is not valid JSON ({exc}); {RERUN}") from None


def write_json(path: Path, obj) -> None:
    """``obj`` as indented, key-sorted JSON, atomically (``atomic_write``)."""
    atomic_write(Path(path), json.dumps(obj, indent=2, sort_keys=True).encode())


def redacted_record(record: dict) -> dict:
    """A config record (``FuseConfig.to_dict()`` or a run's) with ``data.endpoint_url``'s user
    and password replaced by ``***``: a workdir never stores them."""
    data = record.get("data")
    if isinstance(data, dict) and data.get("endpoint_url"):
        record = {**record, "data": {**data, "endpoint_url": redact_url(data["endpoint_url"])}}
    return record


def read_jsonl(path: Path) -> list[dict]:
    """The dict records of a JSON-lines file; [] when it does not exist."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed run
        if isinstance(record, dict):
            records.append(record)
    return records


@dataclass
class RunRecord:
    """``runs/<model>/config.json`` parsed back: the configuration one model was trained with."""

    name: str
    config: FuseConfig          # data, pairs, split, model, loss, objective, train of this model (no grid)
    feature_sets: list[str]     # the sets its tower is built over
    token_mask: list[int]       # 1 for the sets it uses


class Workdir:
    """Paths and records of one fuse workdir (``root``)."""

    def __init__(self, root):
        self.root = Path(root)

    # -- paths ----------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def split_path(self) -> Path:
        return self.root / "split.json"

    @property
    def pairs_path(self) -> Path:
        return self.root / "pairs.npz"

    @property
    def embeddings_dir(self) -> Path:
        return self.root / FUSED_STORE_DIR

    def summary_path(self, grid: bool) -> Path:
        return self.root / ("grid_summary.json" if grid else "summary.json")

    def run_dir(self, model: str) -> Path:
        return self.root / "runs" / model

    def params_dir(self, model: str) -> Path:
        return self.run_dir(model) / "params"

    def metrics_path(self, model: str) -> Path:
        return self.run_dir(model) / "metrics.jsonl"

    def grid_dir(self, label: str) -> Path:
        return self.root / "grid" / label

    def evaluation_dir(self, protocol: str) -> Path:
        return self.root / RESULTS_DIR / protocol

    def index_dir(self, model: str) -> Path:
        """The nearest-neighbour index over ``model``'s fused embeddings (``cinefuse index build``)."""
        return self.root / "index" / model

    # -- the run's record -----------------------------------------------------------------------
    def check(self) -> None:
        """A clear error unless this is a fuse workdir."""
        if not self.root.is_dir():
            raise CinefuseError(
                f"workdir {self.root} does not exist; train first with `cinefuse fuse --workdir {self.root} ...`")
        if not self.config_path.is_file():
            raise CinefuseError(f"{self.root} is not a fuse workdir (no config.json); train first with "
                                f"`cinefuse fuse --workdir {self.root} ...`")

    def config(self) -> FuseConfig:
        """``config.json`` as the :class:`FuseConfig` it records."""
        return _parse(read_json(self.config_path, RERUN), self.config_path)

    def save_config(self, config: FuseConfig, grid: bool) -> None:
        """Record ``config``; a workdir made by another config is an error (the grid section
        only counts for ``grid`` runs)."""
        record = redacted_record(json.loads(json.dumps(config.to_dict())))
        if self.config_path.is_file():
            old = with_new_keys(read_json(self.config_path, RERUN), record)
            if {k: v for k, v in old.items() if k != "grid"} != {k: v for k, v in record.items() if k != "grid"} or (
                    grid and old.get("grid") != record.get("grid")):
                raise CinefuseError(
                    f"workdir {self.root} was made by a different fuse config (see {self.config_path}); "
                    "use a new --workdir, or the same config to resume")
        write_json(self.config_path, record)

    @contextmanager
    def recording(self, config: FuseConfig, grid: bool, writer: bool = True):
        """Record ``config`` (``save_config``) for the run inside the ``with`` block, holding the
        workdir's lock (``locks.hold``) throughout: another live fuse on it stops this one at once
        with one line naming the holder, before anything is written. When the run fails before
        anything was trained (no checkpoint, no parameters), what this run created is removed
        again (the record, split, pairs, run folders, the workdir itself when it was new) and
        nothing else, so a failed start never leaves a workdir that looks like a run. Only the
        writing process (``writer``; process 0 of a distributed run) locks, records and cleans up."""
        if not writer:
            yield self
            return
        created_root = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            with hold(self.root, "cinefuse fuse"):
                # under the lock: what does not exist now is this run's to create (and to remove)
                made = [p for p in (self.config_path, self.split_path, self.pairs_path, self.root / "runs",
                                    self.root / "grid") if not p.exists()]
                try:
                    self.save_config(config, grid)
                    yield self
                except BaseException:
                    if not self.holds_training():
                        _remove(made)
                    raise
        except BaseException:
            if created_root:
                with contextlib.suppress(OSError):
                    self.root.rmdir()      # only when empty (the lock file is gone by now)
            raise

    def holds_training(self) -> bool:
        """Whether any run or grid program here saved a checkpoint or final parameters."""
        folders = [*(self.root / "runs").glob("*"), *(self.root / "grid").glob("*")]
        return any(any((d / sub).is_dir() and any((d / sub).iterdir()) for sub in ("checkpoints", "params"))
                   for d in folders)

    def split(self) -> dict:
        return read_json(self.split_path, f"{RERUN} to write the split")

    # -- trained models -------------------------------------------------------------------------
    def models(self) -> list[str]:
        """The trained models: runs with a record, final parameters and a summary, by name."""
        runs = self.root / "runs"
        if not runs.is_dir():
            return []
        return sorted(d.name for d in runs.iterdir()
                      if (d / "config.json").is_file() and (d / "params").is_dir() and (d / "summary.json").is_file())

    def is_trained(self, model: str) -> bool:
        return (self.run_dir(model) / "summary.json").is_file() and self.params_dir(model).is_dir()

    def save_run_record(self, model: str, record: dict) -> None:
        """Write ``runs/<model>/config.json``; one holding another configuration is an error."""
        path = self.run_dir(model) / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = redacted_record(record)
        record = json.loads(json.dumps(record))
        if path.is_file() and with_new_keys(read_json(path, RERUN), record) != record:
            raise CinefuseError(f"{path.parent} holds a run with a different configuration; use a new --workdir")
        write_json(path, record)

    def run_record(self, model: str) -> RunRecord:
        path = self.run_dir(model) / "config.json"
        record = read_json(path, RERUN)
        # one trained configuration has no grid of its own (the default grid need not fit its data)
        sections = {k: record[k] for k in ("data", "pairs", "split", "model", "loss", "objective", "train")
                    if k in record}
        # a record from before objectives existed was trained by the thesis rule, without a prior head
        sections.setdefault("objective", {"kind": "thesis", "prior": False})
        config = _parse({**sections, "grid": {"modalities": [], "heads": []}}, path)
        return RunRecord(record["name"], config, list(record["feature_sets"]), list(record["token_mask"]))

    def summary(self, model: str) -> dict:
        return read_json(self.run_dir(model) / "summary.json", RERUN)

    def save_summary(self, model: str, summary: dict) -> None:
        write_json(self.run_dir(model) / "summary.json", summary)

    def train_seconds(self, model: str) -> float:
        """Seconds the model trained; NaN when its summary does not say."""
        try:
            return float(self.summary(model).get("train_seconds", float("nan")))
        except (CinefuseError, AttributeError, TypeError, ValueError):
            return float("nan")

    def metrics_lines(self, model: str, upto_step: int | None = None) -> list[dict]:
        """``metrics.jsonl`` records, those logged after ``upto_step`` left out."""
        lines = read_jsonl(self.metrics_path(model))
        return lines if upto_step is None else [x for x in lines if x.get("step", 0) <= upto_step]

    def save_feature_stats(self, model: str, stats: dict) -> None:
        arrays = {**{f"{n}::mean": m for n, (m, s) in stats.items()}, **{f"{n}::std": s for n, (m, s) in stats.items()}}
        atomic_write(self.run_dir(model) / "feature_stats.npz", lambda f: np.savez(f, **arrays))

    def save_split_arrays(self, arrays: dict) -> None:
        """``pairs.npz`` (the split's pairs and triplets, ``fuse.pairs.split_arrays``), atomically."""
        atomic_write(self.pairs_path, lambda f: np.savez_compressed(f, **arrays))

    def feature_stats(self, model: str, names: list[str]) -> dict:
        """name -> (mean, std) the model standardised its inputs with."""
        with np.load(self.run_dir(model) / "feature_stats.npz") as z:
            return {name: (z[f"{name}::mean"], z[f"{name}::std"]) for name in names}


def with_new_keys(old, new):
    """``old`` (a record read back) with the keys it lacks taken from ``new`` (recursively): keys
    added to the records since ``old`` was written (``[selection]``, ``train.seeds``, a run's
    ``seed``) do not make a workdir look like another run's."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return old
    return {**{k: v for k, v in new.items() if k not in old},
            **{k: with_new_keys(v, new.get(k)) for k, v in old.items()}}


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _parse(record, path: Path) -> FuseConfig:
    if not isinstance(record, dict):
        raise CinefuseError(f"{path} is not a fuse config record; {RERUN}")
    try:
        return config_from_dict(record)
    except CinefuseError as exc:
        raise CinefuseError(f"{path}: {exc}") from None
