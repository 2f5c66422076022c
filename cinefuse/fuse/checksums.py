"""Checked checkpoints and parameters (issue 24 item 2): a sha256 manifest written with every orbax
checkpoint step and every ``params/`` folder, verified before they are restored, and parameters
that are never written nor served when they hold a non-finite value.

``seal(folder)`` writes ``folder/cinefuse.sha256`` (JSON: every file under the folder, relative
path -> sha256 and size) after orbax has finished writing it, atomically
(``cinefuse.atomic.atomic_write``): a folder without it was never completed (a kill between the
save and the seal) and is not trusted. ``damage(folder)`` names the first file that is missing,
extra, resized or changed (or the manifest itself), None when the folder verifies.
``load_params(folder)`` is the one checked way to read final parameters: verify, restore with
orbax, refuse non-finite values; every failure is one line naming the file (``CinefuseError``,
exit 2). ``require_finite`` refuses parameters holding NaN or inf before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cinefuse.atomic import atomic_write
from cinefuse.errors import CinefuseError
from cinefuse.store.manifest import sha256_file

MANIFEST = "cinefuse.sha256"
RETRAIN = "rerun `cinefuse fuse` with the same command to train it again"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and p.name != MANIFEST)


def seal(folder) -> None:
    """Write ``folder``'s manifest of every file under it (call once the writer has finished)."""
    folder = Path(folder)
    files = {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
             for name in _files(folder)}
    atomic_write(folder / MANIFEST, json.dumps({"algorithm": "sha256", "files": files}, indent=1,
                                               sort_keys=True).encode())


def damage(folder) -> str | None:
    """The first damaged file of ``folder`` (a path, with what is wrong), or None when every file
    matches its manifest."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        files = json.loads(manifest.read_text())["files"]
        assert isinstance(files, dict)
    except FileNotFoundError:
        return f"{manifest} (missing: the folder was never completed)"
    except (ValueError, KeyError, TypeError, AssertionError, UnicodeDecodeError):
        return f"{manifest} (not a checksum manifest)"
    present = _files(folder)
    for name in sorted(set(present) - set(files)):
        return f"{folder / name} (not in the manifest)"
    for name, want in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} (missing)"
        if path.stat().st_size != want.get("bytes") or sha256_file(path) != want.get("sha256"):
            return f"{path} (checksum mismatch)"
    return None


def verified(folder) -> bool:
    return Path(folder).is_dir() and damage(folder) is None


def first_non_finite(tree) -> str | None:
    """The path of the first leaf of a parameter tree holding NaN or inf, or None."""
    import jax

    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.asarray(leaf)
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            return jax.tree_util.keystr(path)
    return None


def require_finite(tree, what: str) -> None:
    """Refuse (one line) parameters holding NaN or inf: they are never written."""
    bad = first_non_finite(tree)
    if bad is not None:
        raise CinefuseError(f"{what}: parameter {bad} holds NaN or inf (training diverged), so nothing was written; "
                            "lower train.learning_rate or check the features for extreme values")


def load_params(folder):
    """The final parameters in ``folder`` (``runs/<model>/params``), verified against their
    manifest and finite, as numpy arrays; else one line naming the damaged file."""
    import jax
    import orbax.checkpoint as ocp

    folder = Path(folder)
    bad = damage(folder)
    if bad is not None:
        raise CinefuseError(f"the model's parameters are damaged: {bad}; {RETRAIN}")
    try:
        params = ocp.StandardCheckpointer().restore(folder.absolute())
    except Exception as exc:  # orbax's own errors on a folder it cannot read
        raise CinefuseError(f"the model's parameters in {folder} cannot be read ({type(exc).__name__}); {RETRAIN}") from None
    params = jax.tree.map(np.asarray, params)
    leaf = first_non_finite(params)
    if leaf is not None:
        raise CinefuseError(f"the model's parameters in {folder} hold NaN or inf ({leaf}); {RETRAIN}")
    return params
