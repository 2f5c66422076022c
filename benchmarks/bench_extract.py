"""Extraction throughput with the default offline backbones, and the decoding target.

One run, the same items for every figure (the real videos of ../shared/data/media repeated under
new ids, default config: 16 frames, EfficientNet-Lite0 + low-level stats, log-mel, MiniLM,
TF-IDF, year/language):
- decode-only items/s: the DataLoader with ``--workers`` processes doing everything but the
  models (fetch, frame sampling, audio windows, low-level and log-mel features);
- forward-only items/s: the model part (EfficientNet-Lite0 on every frame in batches of
  ``--batch-size`` items, MiniLM/TF-IDF/meta per shard) on items decoded beforehand;
- end-to-end items/s: ``run_extract`` into a fresh store (models already loaded in this process).
The serial bound 1/(1/decode + 1/forward) is what doing the two one after the other would give.
Targets: CPU end-to-end >= 0.9x the serial bound; GPU end-to-end >= 0.8x min(decode, forward).
Also: 16 frames sampled over the 122 s 1080p video2dataset test video on one CPU core (process
pinned to one core, one FFmpeg thread), target < 1 s; peak RSS of the run, target < 4 GB.

    .venv/bin/python benchmarks/bench_extract.py [--repeats 3] [--copies 3] [--workers 1] [--device cpu]

On a GPU, the visual path alone with another backbone (no MiniLM weights needed):

    python benchmarks/bench_extract.py --device cuda --workers 16 --parts media --text tfidf \
        --visual openclip:ViT-B-32/none,lowlevel --out benchmarks/results/extract-openclip-gpu.json

``--visual``, ``--audio`` and ``--text`` (comma-separated backbone names, '' for none) replace the
default config's lists for the media figures; the JSON records the lists used.

Text-only extraction (``ratio_text_only_vs_minilm``, target >= 0.8): ``--text-items`` MovieLens
items (ml-latest-small's first movies; text = title + their tags, as bench_quality builds it; no
video) extracted end to end with the default config (``run_extract`` into a fresh store: manifest,
TF-IDF fit, MiniLM, year/language, shard writes) against a bare all-MiniLM-L6-v2 encode of the
same texts with sentence-transformers (``SentenceTransformer.encode``, batch 64, model loaded
before the clock; MiniLM is also loaded in this process before extract's clock), the two
interleaved round by round; the ratio is of the medians.

Writes benchmarks/results/extract.json and benchmarks/results/extract.md. Medians of
``--repeats`` runs measured in this one process. ``--parts media`` or ``--parts text-only``
measures one part and keeps the other's figures from the JSON.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MEDIA = Path(os.environ.get("CINEFUSE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "media" / "video"
LONG_VIDEO = MEDIA / "video2dataset__test_video.mp4"
MOVIELENS = Path(os.environ.get("CINEFUSE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "movielens" / "ml-latest-small"
TEXT_ITEMS = 1682  # the size of the text-only run the newcomer timed (as many movies as ml-100k)

DECODE_ONE_CORE = r"""
import os, sys, time, json, statistics
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import torch; torch.set_num_threads(1)
from cinefuse.extract.decode import sample_frames
path, repeats = sys.argv[1], int(sys.argv[2])
sample_frames(path, 16, 224, "keyframe", 1)  # warm the page cache and the codec libraries
walls, cpus = [], []
for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    s = sample_frames(path, 16, 224, "keyframe", 1)
    walls.append(time.perf_counter() - w); cpus.append(time.process_time() - c)
print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus), "walls": walls,
                  "frames": int(s.frames.shape[0]), "keyframe_hits": s.keyframe_hits, "times": s.times.tolist()}))
"""

PEAK_RSS = r"""
import json, resource, sys
from cinefuse.extract.config import ExtractConfig
from cinefuse.extract.run import run_extract
summary = run_extract(ExtractConfig(manifest=sys.argv[1], store=sys.argv[2], workers=int(sys.argv[3]),
                                    batch_size=int(sys.argv[4]), device=sys.argv[5], progress=False, shard_size=64,
                                    **json.loads(sys.argv[6])))
main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(json.dumps({"main_gb": main, "largest_worker_gb": worker, "processed": summary["processed"]}))
"""


def write_manifest(folder: Path, copies: int) -> Path:
    videos = sorted(MEDIA.glob("*.mp4"))
    path = folder / "items.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "title", "plot", "year", "language"])
        for copy in range(copies):
            for i, video in enumerate(videos):
                writer.writerow([f"{copy}-{i}", str(video), video.stem.replace("__", " "),
                                 f"A test clip named {video.stem} copy {copy}", str(1990 + i), "en"])
    return path


def decode_only(config, items, extractor) -> float:
    from cinefuse.extract.reader import ItemDataset, make_loader

    started = time.perf_counter()
    count = sum(1 for _ in make_loader(config, ItemDataset(items, extractor.plan)))
    return count / (time.perf_counter() - started)


def forward_only(config, decoded, items, extractor) -> float:
    rows = {name: {} for name in extractor.specs}
    started = time.perf_counter()
    for start in range(0, len(decoded), config.shard_size):
        chunk = decoded[start:start + config.shard_size]
        for b in range(0, len(chunk), config.batch_size):
            extractor.forward_media_models(chunk[b:b + config.batch_size], rows)
        extractor.text_and_meta(items[start:start + config.shard_size], rows)
    return len(decoded) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=3, help="copies of each real video (7 videos)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--text-items", type=int, default=TEXT_ITEMS, help="text-only items (MovieLens titles + tags)")
    parser.add_argument("--parts", choices=["all", "media", "text-only"], default="all",
                        help="which figures to measure; the others are kept from --out")
    parser.add_argument("--out", type=Path, default=RESULTS / "extract.json",
                        help="the JSON to write (the Markdown goes beside it, same name, .md)")
    names = lambda v: [x for x in v.split(",") if x]  # noqa: E731
    parser.add_argument("--visual", type=names, default=None,
                        help="visual backbones for the media figures, comma-separated (default: the config's)")
    parser.add_argument("--audio", type=names, default=None, help="audio backbones ('' for none; default: the config's)")
    parser.add_argument("--text", type=names, default=None, help="text backbones ('' for none; default: the config's)")
    args = parser.parse_args()
    args.backbones = {k: getattr(args, k) for k in ("visual", "audio", "text") if getattr(args, k) is not None}

    result = json.loads(args.out.read_text()) if args.out.is_file() and args.parts != "all" else {}
    if args.parts in ("all", "media"):
        result.update(media_figures(args))
    if args.parts in ("all", "text-only"):
        result["text_only"] = text_only_figures(args)
        result["ratio_text_only_vs_minilm"] = result["text_only"]["ratio_text_only_vs_minilm"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "text_only")}, indent=2))
    write_markdown(result, args.out.with_suffix(".md"))


def media_figures(args) -> dict:
    if not LONG_VIDEO.is_file():
        sys.exit(f"real media not found under {MEDIA} (set CINEFUSE_SHARED_DATA)")

    import torch

    from cinefuse.extract import backbones as registry
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.inputs import load_manifest
    from cinefuse.extract.mapper import Extractor
    from cinefuse.extract.reader import decode_item
    from cinefuse.extract.run import run_extract

    # 1. decoding target, in a child process pinned to one core
    child = subprocess.run([sys.executable, "-c", DECODE_ONE_CORE, str(LONG_VIDEO), "7"], capture_output=True,
                           text=True, check=True, cwd=ROOT)
    one_core = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"decode 16 frames of the 122 s 1080p video on one core: {one_core['wall']:.3f} s wall "
          f"({one_core['cpu']:.3f} s CPU), {one_core['keyframe_hits']} keyframe hits")

    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        tmp = Path(tmp)
        manifest = write_manifest(tmp, args.copies)
        config = ExtractConfig(manifest=str(manifest), store=str(tmp / "store"), workers=args.workers,
                               batch_size=args.batch_size, device=args.device, progress=False, shard_size=64,
                               **args.backbones)
        items = load_manifest(manifest)
        extractor = Extractor(config, registry.build(config))
        extractor.fit_text(items)
        extractor.load_models()
        decoded = [decode_item(item, i, extractor.plan) for i, item in enumerate(items)]
        frames = sum(len(d.frames) for d in decoded if d.frames is not None)
        forward_only(config, decoded[: args.batch_size], items, extractor)  # warm-up
        run_extract(config.replace(store=str(tmp / "warm")))  # warm-up: forks, caches, allocator

        # peak memory of a plain default run, in a fresh process (main + its largest decoding worker;
        # forked workers share the parent's pages, so the sum over-counts: an upper bound)
        child = subprocess.run([sys.executable, "-c", PEAK_RSS, str(manifest), str(tmp / "rss"), str(args.workers),
                                str(args.batch_size), args.device, json.dumps(args.backbones)],
                               capture_output=True, text=True, check=True, cwd=ROOT)
        rss = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"peak RSS: main {rss['main_gb']:.2f} GB, largest worker {rss['largest_worker_gb']:.2f} GB")

        decode_rates, forward_rates, e2e_rates = [], [], []
        for repeat in range(args.repeats):
            decode_rates.append(decode_only(config, items, extractor))
            forward_rates.append(forward_only(config, decoded, items, extractor))
            summary = run_extract(config.replace(store=str(tmp / f"store{repeat}")))
            e2e_rates.append(summary["processed"] / summary["seconds"])
            print(f"repeat {repeat}: decode {decode_rates[-1]:.2f}, forward {forward_rates[-1]:.2f}, "
                  f"end-to-end {e2e_rates[-1]:.2f} items/s")
    decode_rate, forward_rate, e2e_rate = (statistics.median(r) for r in (decode_rates, forward_rates, e2e_rates))
    serial = 1 / (1 / decode_rate + 1 / forward_rate)
    gpu = args.device.startswith("cuda")
    peak = rss["main_gb"] + rss["largest_worker_gb"]
    result = {
        "ratio_end_to_end_vs_serial_bound": e2e_rate / serial,
        "decode_16_frames_seconds": one_core["wall"],
        "decode_16_frames_cpu_seconds": one_core["cpu"],
        "peak_rss_gb": peak,
        "peak_rss_main_gb": rss["main_gb"],
        "peak_rss_largest_worker_gb": rss["largest_worker_gb"],
        "decode_items_per_second": decode_rate,
        "forward_items_per_second": forward_rate,
        "end_to_end_items_per_second": e2e_rate,
        "serial_bound_items_per_second": serial,
        "ratio_end_to_end_vs_min_decode_forward": e2e_rate / min(decode_rate, forward_rate),
        "runs": {"decode": decode_rates, "forward": forward_rates, "end_to_end": e2e_rates},
        "items": len(items), "frames_per_item": frames / len(items), "workers": args.workers,
        "batch_size": args.batch_size, "device": args.device, "torch_threads": torch.get_num_threads(),
        "backbones": {"visual": config.visual, "audio": config.audio, "text": config.text, "meta": config.meta},
        "targets": {"cpu_ratio_vs_serial_bound": 0.9, "gpu_ratio_vs_min": 0.8, "decode_16_frames_seconds": 1.0,
                    "peak_rss_gb": 4.0},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores{' + GPU' if gpu else ''}, shared and noisy",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_extract.py " + " ".join(sys.argv[1:]),
    }
    return result


def text_only_manifest(folder: Path, count: int) -> Path:
    import pandas as pd

    movies = pd.read_csv(MOVIELENS / "movies.csv").head(count)
    tags = pd.read_csv(MOVIELENS / "tags.csv").groupby("movieId")["tag"].apply(lambda t: ", ".join(map(str, t)))
    path = folder / "text-only.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "video", "title", "plot"])
        for movie in movies.itertuples():
            writer.writerow([movie.movieId, "", movie.title, tags.get(movie.movieId, "")])
    return path


def text_only_figures(args) -> dict:
    if not (MOVIELENS / "movies.csv").is_file():
        sys.exit(f"MovieLens ml-latest-small not found under {MOVIELENS} (set CINEFUSE_SHARED_DATA)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    from cinefuse.extract.backbones.minilm import MiniLM, model_path
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.inputs import load_manifest
    from cinefuse.extract.run import run_extract

    load_before = os.getloadavg()[0]  # the 2 shared cores: oversubscribed threads slow both sides unevenly
    with tempfile.TemporaryDirectory(prefix="bench-extract-text-") as tmp:
        tmp = Path(tmp)
        manifest = text_only_manifest(tmp, args.text_items)
        config = ExtractConfig(manifest=str(manifest), store=str(tmp / "warm"), workers=args.workers,
                               device=args.device, progress=False)
        texts = [item.text(config.text_fields) for item in load_manifest(manifest)]
        bare = SentenceTransformer(str(model_path()), device=args.device)
        MiniLM(args.device).load()  # extract's copy, cached per process like the bare model
        bare.encode(texts[:64], batch_size=64)
        run_extract(config)  # warm-up
        bare_rates, extract_rates = [], []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            bare.encode(texts, batch_size=64)
            bare_rates.append(len(texts) / (time.perf_counter() - started))
            summary = run_extract(config.replace(store=str(tmp / f"store{repeat}")))
            extract_rates.append(summary["processed"] / summary["seconds"])
            print(f"text-only repeat {repeat}: bare MiniLM {bare_rates[-1]:.1f}, extract end to end "
                  f"{extract_rates[-1]:.1f} items/s")
    bare_rate, extract_rate = statistics.median(bare_rates), statistics.median(extract_rates)
    return {
        "ratio_text_only_vs_minilm": extract_rate / bare_rate,
        "extract_items_per_second": extract_rate, "bare_minilm_items_per_second": bare_rate,
        "runs": {"bare_minilm": bare_rates, "extract": extract_rates},
        "items": len(texts), "text": "MovieLens ml-latest-small title + tags (first movies by id)",
        "config": "defaults (minilm, tfidf, year, language; visual and audio sets recorded as 'no video')",
        "bare": "sentence-transformers SentenceTransformer.encode(texts, batch_size=64)",
        "torch_threads": torch.get_num_threads(), "target": 0.8,
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, shared and noisy",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/bench_extract.py " + " ".join(sys.argv[1:]),
    }


def write_markdown(r: dict, path: Path) -> None:
    target = "0.9x the serial bound (CPU)" if r["device"] == "cpu" else "0.8x min(decode, forward) (GPU)"
    lines = [
        "## extract",
        "",
        ("Backbones (16 frames): " + "; ".join(f"{k} {', '.join(v) or 'none'}" for k, v in r["backbones"].items()) + ", "
         if "backbones" in r else
         "Default offline backbones (16 frames, EfficientNet-Lite0 + low-level, log-mel, MiniLM, TF-IDF, meta), ") +
        f"{r['items']} items (the 7 real videos of shared/data/media, repeated), {r['workers']} decoding worker(s), "
        f"batch {r['batch_size']} items, device {r['device']}, torch threads {r['torch_threads']}. "
        f"Medians of {len(r['runs']['decode'])} runs in one process. Machine: {r['machine']}; date {r['date']}. "
        f"Command: `{r['command']}`.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| decode-only | {r['decode_items_per_second']:.2f} items/s | |",
        f"| forward-only (pre-decoded) | {r['forward_items_per_second']:.2f} items/s | |",
        f"| serial bound 1/(1/decode + 1/forward) | {r['serial_bound_items_per_second']:.2f} items/s | |",
        f"| end-to-end | {r['end_to_end_items_per_second']:.2f} items/s | |",
        f"| end-to-end / serial bound | {r['ratio_end_to_end_vs_serial_bound']:.3f} | >= {target if r['device'] == 'cpu' else '-'} |",
        f"| end-to-end / min(decode, forward) | {r['ratio_end_to_end_vs_min_decode_forward']:.3f} | {'>= 0.8 on GPU' if r['device'] != 'cpu' else '(GPU target)'} |",
        f"| 16 frames of the 122 s 1080p video, one core | {r['decode_16_frames_seconds']:.3f} s wall, {r['decode_16_frames_cpu_seconds']:.3f} s CPU | < 1 s |",
        f"| peak RSS (main + largest worker) | {r['peak_rss_gb']:.2f} GB | < 4 GB |",
        "",
        "The machine's 2 cores are shared with other jobs running at the same time: absolute items/s move by tens "
        "of percent between runs; the ratios are taken within one run.",
        "",
    ]
    t = r.get("text_only")
    if t:
        lines += [
            "### text-only items",
            "",
            f"{t['items']} items ({t['text']}), no video, {t['config']}; against {t['bare']} of the same texts, "
            f"interleaved, medians of {len(t['runs']['extract'])} rounds, torch threads {t['torch_threads']}. "
            f"Machine: {t['machine']}; date {t['date']}. Command: `{t['command']}`.",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| bare MiniLM encode | {t['bare_minilm_items_per_second']:.1f} items/s | |",
            f"| extract end to end | {t['extract_items_per_second']:.1f} items/s | |",
            f"| extract / bare MiniLM (`ratio_text_only_vs_minilm`) | {t['ratio_text_only_vs_minilm']:.3f} | >= {t['target']} |",
            "",
        ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
