"""cinefuse: content-based movie and video recommendation from pictures, sound and words.

Stages: ``cinefuse.extract`` (PyTorch backbones -> store), ``cinefuse.store`` (HDF5 shards,
manifest, verify, S3), ``cinefuse.fuse`` (JAX/Flax fusion training and evaluation).

The Python API is ``cinefuse.api`` (docs/API.md): ``from cinefuse import api``. Its functions
whose names no stage package takes are also reachable here (``cinefuse.recommend_for_item``),
loaded on first use, so that ``import cinefuse`` stays cheap (no torch, no jax). ``extract``,
``fuse``, ``evaluate`` and ``export`` are the stage packages here; call them as ``api.extract``
and so on.
"""

from cinefuse.version import __version__  # noqa: F401  (pyproject.toml states it again)

# cinefuse.api.__all__ less the names of stage packages (cinefuse.extract, .fuse, .evaluate, .export)
API_NAMES = (
    "build_index", "fuse_config", "import_features", "list_models", "load_embeddings", "open_store",
    "recommend_for_item", "recommend_for_user", "served_model",
)


def __getattr__(name: str):
    if name in API_NAMES:
        from cinefuse import api

        return getattr(api, name)
    raise AttributeError(f"module 'cinefuse' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *API_NAMES])
