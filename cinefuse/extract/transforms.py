"""The store's fitted transforms: kept in the store, named in its config, loaded by a later run.

A corpus-dependent backbone (TF-IDF: vocabulary, idf, SVD components) is fitted by the run that
starts a store and then frozen, so that extracting into the store again (a grown catalogue, a
resumed or sliced run) computes the new rows in the same vector space and never touches the
committed ones. The state is too large for ``manifest.json`` (rewritten at every commit), so it
lives in ``<store>/transforms/<name>.npz`` (plain arrays, no pickle) and the store config holds
``<name>``, which ends in the sha256 of the arrays: the config hash covers the transform, and a
file that does not match its name is refused.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from cinefuse.atomic import atomic_write
from cinefuse.errors import CinefuseError

FOLDER = "transforms"


def state_digest(state: dict[str, np.ndarray]) -> str:
    """sha256 (16 hex) over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        array = np.ascontiguousarray(state[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def save_transform(root: Path, kind: str, state: dict[str, np.ndarray]) -> str:
    """Write ``state`` under ``root/transforms`` (once: an existing file of the same digest is
    the same transform) and return its name, ``<kind>-<digest>``."""
    name = f"{kind}-{state_digest(state)}"
    path = Path(root) / FOLDER / f"{name}.npz"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **state)
        atomic_write(path, buffer.getvalue())
    return name


def load_transform(root: Path, name: str) -> dict[str, np.ndarray]:
    """The state kept as ``name`` in the store at ``root``, checked against its digest."""
    path = Path(root) / FOLDER / f"{name}.npz"
    advice = (f"extract into a new store, or pass --refit to fit again and re-extract every item of {root}")
    try:
        with np.load(path, allow_pickle=False) as loaded:
            state = {key: loaded[key] for key in loaded.files}
    except FileNotFoundError:
        raise CinefuseError(f"store {root} names the fitted transform {name}, but {path} is missing "
                            f"(a store merged or pulled without its transforms/ folder?): copy it back, or {advice}") from None
    except (OSError, ValueError) as exc:
        raise CinefuseError(f"fitted transform {path} cannot be read ({type(exc).__name__}: {exc}): {advice}") from exc
    if f"{name.rsplit('-', 1)[0]}-{state_digest(state)}" != name:
        raise CinefuseError(f"fitted transform {path} does not match its name (damaged or edited): {advice}")
    return state
