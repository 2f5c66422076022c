"""extract: frozen visual, audio and text backbones run once over a video collection into the store.

    from cinefuse.extract.config import ExtractConfig
    from cinefuse.extract.run import run_extract

    summary = run_extract(ExtractConfig(manifest="items.csv", store="store/"))

Modules: ``config`` (ExtractConfig, TOML), ``inputs`` (manifests, folder scans, s3:// fetch),
``decode`` (PyAV frame and audio sampling), ``backbones`` (the registry and each backbone),
``run`` (one run: config checks, s3:// staging, local or Ray, the summary), ``pipeline`` (the
loop: DataLoader, batching, resume, shard slices, writing), ``ray_runner`` (Ray Data actors),
``progress`` (the progress bar and its throughput), ``cli`` (``cinefuse extract``).
Torch only: nothing here imports jax.
"""
