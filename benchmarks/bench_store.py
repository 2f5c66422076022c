"""Store load speed against np.load of the same bytes.

Loads a 100,000 x 1,024 float16 feature set (about 205 MB) from a cinefuse store (ids, valid
mask, status and data, i.e. everything ``Store.load_feature_set`` returns) and the same matrix
from a ``.npy`` with ``np.load``, warm page cache, alternating, median of several runs in one
process. Target: store time / np.load time <= 1.25.

    .venv/bin/python benchmarks/bench_store.py [--rows 100000] [--dim 1024] [--repeats 7]

Writes benchmarks/results/store.json (top-level key ``ratio_store_vs_npload``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from cinefuse.store import FeatureBlock, StoreWriter, open_store

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shards", type=int, default=1, help="split the rows over this many shards")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    data = rng.standard_normal((args.rows, args.dim), dtype=np.float32).astype(np.float16)
    ids = [f"item-{i:07d}" for i in range(args.rows)]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp) / "store"
        npy = Path(tmp) / "features.npy"
        np.save(npy, data)
        writer = StoreWriter(root, {"bench": "store"})
        t0 = time.perf_counter()
        per = -(-args.rows // args.shards)
        for start in range(0, args.rows, per):
            stop = min(start + per, args.rows)
            writer.write_shard(ids[start:stop], {
                "visual/bench": FeatureBlock(data[start:stop], np.ones(stop - start, bool), ["ok"] * (stop - start)),
            })
        write_seconds = time.perf_counter() - t0
        store = open_store(root)

        def load_store():
            return store.load_feature_set("visual/bench")

        def load_npy():
            return np.load(npy)

        # warm the page cache and check both return the same bytes
        assert np.array_equal(load_store().data.view(np.uint16), load_npy().view(np.uint16))
        store_times, npy_times = [], []
        for _ in range(args.repeats):
            for fn, times in ((load_store, store_times), (load_npy, npy_times)):
                t0 = time.perf_counter()
                result = fn()
                times.append(time.perf_counter() - t0)
                del result
        data_only = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            import h5py

            with h5py.File(root / "shard-00000.h5", "r") as h5:
                h5["features/visual/bench/data"][()]
            data_only.append(time.perf_counter() - t0)

    store_median = statistics.median(store_times)
    npy_median = statistics.median(npy_times)
    result = {
        "ratio_store_vs_npload": store_median / npy_median,
        "store_load_seconds_median": store_median,
        "npload_seconds_median": npy_median,
        "h5py_data_only_seconds_median": statistics.median(data_only),
        "store_load_seconds_all": store_times,
        "npload_seconds_all": npy_times,
        "rows": args.rows,
        "dim": args.dim,
        "shards": args.shards,
        "megabytes": data.nbytes / 1e6,
        "write_seconds": write_seconds,
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"feature set {args.rows} x {args.dim} float16 ({data.nbytes / 1e6:.0f} MB), {args.shards} shard(s), "
          f"median of {args.repeats}")
    print(f"  store.load_feature_set  {store_median * 1e3:8.1f} ms  (ids + valid + status + data)")
    print(f"  h5py data only          {statistics.median(data_only) * 1e3:8.1f} ms")
    print(f"  np.load                 {npy_median * 1e3:8.1f} ms")
    print(f"  ratio store / np.load   {result['ratio_store_vs_npload']:8.3f}  (target <= 1.25)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
