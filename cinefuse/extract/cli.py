"""``cinefuse extract``: run the frozen backbones once over a collection into the store.

Imports only argparse at module level; the handler imports the run (torch, PyAV).
"""

from __future__ import annotations

import argparse

from cinefuse.choices import FRAME_SAMPLINGS

EPILOG = """\
examples:
  cinefuse extract --manifest items.csv --store store/
  cinefuse extract --videos trailers/ --store s3://bucket/store --endpoint-url http://127.0.0.1:9000
  cinefuse extract --manifest items.csv --store store/ --num-shards 8 --shard-index 3
  cinefuse extract --manifest items.csv --store store/ --ray            (local Ray instance)
  cinefuse extract --list-backbones

Running the same command again skips every item already committed under the same config, and
a manifest that grew extracts only its new ids, with the store's frozen TF-IDF (the rows already
in the store never change); a run whose options differ from the store's stops and says which:
extract into a new store, or --refit (fit again, re-extract every item); --overwrite starts over. A progress bar (items/s, frames/s) runs on stderr; at the end a readable
summary goes to stdout (--json: the same summary as one JSON object). Exit status: 0 with a
summary, 1 when every item failed, 2 on a usage error. Every option can also be set in --config (TOML, keys as below with '_' for '-').
"""


def _bool(parser: argparse.ArgumentParser, flag: str, help: str) -> None:
    parser.add_argument(flag, action="store_true", default=None, help=help)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "extract", help="run frozen visual, audio and text backbones over videos into the store",
        description="Extract features once: sample frames and audio windows with PyAV, run the "
                    "configured backbones, write HDF5 shards into the store (resumable).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs and output")
    src.add_argument("--manifest", metavar="FILE", help="CSV, JSONL or Parquet with id, video (path, s3:// URI or empty), title, plot, year, language, ...")
    src.add_argument("--videos", metavar="DIR", help="instead of a manifest: every video file under DIR (id = relative path without suffix)")
    src.add_argument("--store", metavar="PATH", help="store folder or s3://bucket/prefix (staged locally, then pushed)")
    src.add_argument("--config", metavar="TOML", help="extract config file; command-line options override it")
    src.add_argument("--endpoint-url", metavar="URL", help="S3-compatible endpoint for s3:// videos and stores")
    src.add_argument("--staging", metavar="DIR", help="local folder an s3:// store is built in (default: ~/.cache/cinefuse/staging/...)")
    src.add_argument("--text-fields", metavar="A,B", help="manifest columns joined into the item text (default: title,plot)")
    bb = p.add_argument_group("backbones")
    bb.add_argument("--list-backbones", action="store_true", help="list the backbone names and exit")
    bb.add_argument("--visual", metavar="A,B", help="visual backbones (default: effnet-lite0,lowlevel)")
    bb.add_argument("--audio", metavar="A,B", help="audio backbones (default: logmel)")
    bb.add_argument("--text", metavar="A,B", help="text backbones (default: minilm,tfidf)")
    bb.add_argument("--meta", metavar="A,B", help="metadata feature sets (default: year,language)")
    sm = p.add_argument_group("sampling")
    sm.add_argument("--frames", type=int, metavar="N", help="frames sampled uniformly over each video (default 16)")
    sm.add_argument("--frame-sampling", choices=FRAME_SAMPLINGS, help="keyframe: nearest keyframe when within half a slice (fast); exact: the exact frame (default keyframe)")
    sm.add_argument("--audio-max-seconds", type=float, metavar="S", help="cap on audio used per item, windows spread over the track (default 60)")
    rt = p.add_argument_group("runtime")
    rt.add_argument("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (fp16 autocast on GPU; default auto: cuda when torch sees a GPU, else cpu)")
    rt.add_argument("--workers", type=int, metavar="N", help="decoding worker processes (default 1; 0 = decode in the main process)")
    rt.add_argument("--batch-size", type=int, metavar="N", help="items per model forward (default 8)")
    rt.add_argument("--shard-size", type=int, metavar="N", help="items per store shard, the unit of commit and resume (default 1024)")
    _bool(rt, "--overwrite", "drop the store's shards and start over")
    _bool(rt, "--refit", "fit the TF-IDF on this manifest again and re-extract every item (replaces the store's "
                         "shards; without it a grown manifest adds only its new ids under the store's fit)")
    _bool(rt, "--strict", "stop at the first item that fails")
    rt.add_argument("--num-shards", type=int, metavar="K", help="split the items into K slices (for any scheduler)")
    rt.add_argument("--shard-index", type=int, metavar="I", help="run slice I of K (0-based)")
    rt.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="run on Ray: a local instance, or the cluster at ADDRESS")
    rt.add_argument("--ray-tasks", type=int, metavar="N", help="Ray Data actors, each loading the backbones once and writing its own shards (default: one per CPU, or per GPU with --device cuda)")
    out = p.add_argument_group("output")
    out.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                     help="do not show the progress bar on stderr")
    out.add_argument("--json", action="store_true", help="print the summary as one JSON object (for scripts) "
                                                         "instead of the readable text")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    if args.list_backbones:
        from cinefuse.extract.backbones import describe

        print(describe())
        return 0
    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import format_summary, run_extract

    keys = ("manifest", "videos", "store", "endpoint_url", "staging", "text_fields", "visual", "audio", "text", "meta",
            "frames", "frame_sampling", "audio_max_seconds", "device", "workers", "batch_size", "shard_size",
            "overwrite", "refit", "strict", "num_shards", "shard_index", "ray", "ray_tasks", "progress")
    config = ExtractConfig.from_toml(args.config, **{k: getattr(args, k) for k in keys})
    summary = run_extract(config)
    print(json.dumps(summary, sort_keys=True) if args.json else format_summary(summary))
    return int(summary.get("exit_code", 0))
