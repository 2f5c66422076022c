"""Store load speed against np.load of the same bytes, in the layouts a user really has.

A 100,000 x 1,024 float16 feature set (about 205 MB) with ids, valid mask and status texts,
loaded with ``Store.load_feature_set`` (everything it returns) and, for comparison, the same matrix
from a ``.npy`` with ``np.load``. Four layouts of the same rows:

- ``default``: shards of extract's default ``shard_size`` (``ExtractConfig.shard_size``), what
  ``cinefuse extract`` writes; the headline ``ratio_store_vs_npload``;
- ``compacted``: the default layout after ``cinefuse store compact`` (``--shard-mb 512``);
- ``one_shard``: all rows in one shard;
- ``rows128``: 128-row shards, the default before this benchmark (782 shards).

Two figures per layout, both with a warm page cache:
- repeated loads in one process (store and np.load alternating, median of ``--repeats``), where the
  reader's sha256 check of each shard is remembered after the first load;
- the first load in a fresh process, which also hashes every shard once (the cost a ``fuse``
  run pays once), against np.load as the first load in a fresh process as well.

    .venv/bin/python benchmarks/bench_store.py [--rows 100000] [--dim 1024] [--repeats 9]

Writes benchmarks/results/store.json. Target: ``ratio_store_vs_npload`` <= 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cinefuse.extract.config import ExtractConfig
from cinefuse.store import FeatureBlock, StoreWriter, open_store
from cinefuse.store.combine import compact_store

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"

FIRST_LOAD = """
import sys, time
import numpy as np
from cinefuse.store import open_store
kind, path = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if kind == "npy":
    np.load(path)
else:
    open_store(path).load_feature_set("visual/bench")
print(time.perf_counter() - t0)
"""


def write_layout(root: Path, ids: list[str], data: np.ndarray, rows_per_shard: int) -> float:
    writer = StoreWriter(root, {"bench": "store"})
    status = np.array(["ok"] * len(ids))
    valid = np.ones(len(ids), bool)
    t0 = time.perf_counter()
    for start in range(0, len(ids), rows_per_shard):
        stop = min(start + rows_per_shard, len(ids))
        writer.write_shard(ids[start:stop], {
            "visual/bench": FeatureBlock(data[start:stop], valid[start:stop], status[start:stop]),
        })
    return time.perf_counter() - t0


def first_load(kind: str, path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", FIRST_LOAD, kind, str(path)], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    return float(out.stdout.strip())


def measure(root: Path, npy: Path, expect: np.ndarray, repeats: int, first_repeats: int) -> dict:
    store = open_store(root)
    loaded = store.load_feature_set("visual/bench")  # warms the page cache, remembers the checks
    assert np.array_equal(loaded.data.view(np.uint16), expect.view(np.uint16)), "store returned other bytes"
    del loaded
    store_times, npy_times = [], []
    for _ in range(repeats):
        for fn, times in ((lambda: store.load_feature_set("visual/bench"), store_times), (lambda: np.load(npy), npy_times)):
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
            del result
    first_store, first_npy = [], []
    for _ in range(first_repeats):
        first_store.append(first_load("store", root))
        first_npy.append(first_load("npy", npy))
    s, n = statistics.median(store_times), statistics.median(npy_times)
    fs, fn_ = statistics.median(first_store), statistics.median(first_npy)
    return {
        "shards": len(store.manifest.shards),
        "ratio": s / n, "store_seconds_median": s, "npload_seconds_median": n,
        "first_load_ratio": fs / fn_, "first_load_store_seconds_median": fs, "first_load_npload_seconds_median": fn_,
        "store_seconds_all": store_times, "npload_seconds_all": npy_times,
        "first_load_store_seconds_all": first_store, "first_load_npload_seconds_all": first_npy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--first-repeats", type=int, default=3, help="fresh processes per first-load figure")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    default_rows = ExtractConfig.__dataclass_fields__["shard_size"].default
    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.rows, args.dim), dtype=np.float32).astype(np.float16)
    ids = [f"item-{i:07d}" for i in range(args.rows)]
    layouts: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        npy = Path(tmp) / "features.npy"
        np.save(npy, data)
        for name, rows_per_shard in (("default", default_rows), ("one_shard", args.rows), ("rows128", 128)):
            root = Path(tmp) / name
            seconds = write_layout(root, ids, data, rows_per_shard)
            layouts[name] = {"rows_per_shard": rows_per_shard, "write_seconds": seconds}
        t0 = time.perf_counter()
        compact_store(str(Path(tmp) / "rows128"), str(Path(tmp) / "compacted"))
        layouts["compacted"] = {"rows_per_shard": None, "compact_seconds_from_rows128": time.perf_counter() - t0}
        for name in ("default", "compacted", "one_shard", "rows128"):
            layouts[name].update(measure(Path(tmp) / name, npy, data, args.repeats, args.first_repeats))
            row = layouts[name]
            print(f"{name:<10} {row['shards']:>4} shards  store {row['store_seconds_median'] * 1e3:7.1f} ms  "
                  f"np.load {row['npload_seconds_median'] * 1e3:6.1f} ms  ratio {row['ratio']:.3f}  |  first load "
                  f"{row['first_load_store_seconds_median'] * 1e3:7.1f} ms vs {row['first_load_npload_seconds_median'] * 1e3:6.1f}"
                  f" ms  ratio {row['first_load_ratio']:.2f}", flush=True)

    result = {
        "ratio_store_vs_npload": layouts["default"]["ratio"],
        "shards": layouts["default"]["shards"],
        "rows_per_shard": default_rows,
        "ratio_store_vs_npload_compacted": layouts["compacted"]["ratio"],
        "ratio_store_vs_npload_one_shard": layouts["one_shard"]["ratio"],
        "ratio_store_vs_npload_rows128": layouts["rows128"]["ratio"],
        "ratio_first_load_vs_npload": layouts["default"]["first_load_ratio"],
        "layouts": layouts,
        "rows": args.rows, "dim": args.dim, "megabytes": data.nbytes / 1e6, "repeats": args.repeats,
        "first_repeats": args.first_repeats,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "load_average_at_end": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"ratio store / np.load at extract's default ({default_rows} rows, {result['shards']} shards): "
          f"{result['ratio_store_vs_npload']:.3f} (target <= 1.25)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
