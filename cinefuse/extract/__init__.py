"""extract: frozen visual, audio and text backbones run once over a video collection into the store.

    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    summary = run_extract(ExtractConfig(manifest="items.csv", store="store/"))

Modules: ``config`` (ExtractConfig, TOML), ``inputs`` (manifests, folder scans, s3:// fetch),
``decode`` (PyAV frame and audio sampling), ``backbones`` (the registry and each backbone),
``catalogue`` (the store config a run writes under: the store's own for a growing catalogue),
``transforms`` (fitted transforms such as TF-IDF, frozen in the store's ``transforms/``),
``run`` (one run: config checks, s3:// staging, local or Ray, the summary), the loop in one file
per role: ``reader`` (items, shard slices, chunks, the decoding DataLoader), ``mapper`` (backbones:
decoded items to rows), ``writer`` (rows to store blocks), ``runner`` (run planning, batching,
resume, commits); ``ray_runner`` (Ray Data actors),
``progress`` (the progress bar and its throughput), ``cli`` (``cinefuse extract``).
Torch only: nothing here imports jax.
"""
