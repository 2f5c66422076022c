"""The export folder: written in a staging folder beside it and swapped in whole when complete
(a killed export leaves the old folder or none, never half of one), with ``export.json`` (the
provenance: stores, run, split, sets, counts, every file's sha256) and ``README.txt``.

An existing ``out`` is replaced only when it is an earlier export (it holds ``export.json``) or
empty: any other folder is refused, so a mistyped ``--out`` never deletes someone's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cinefuse.atomic import CREATE_FLAGS, fsync_dir
from cinefuse.errors import CinefuseError

PROVENANCE_NAME = "export.json"
README_NAME = "README.txt"


@dataclass
class ExportResult:
    """What one export wrote (the CLI prints it; ``export.json`` records it)."""

    format: str
    out: str
    items: int                                    # items written
    interactions: dict[str, int] | None           # part -> ratings written (None: no run given)
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> items left out
    dropped: dict[str, int] = field(default_factory=dict)   # reason -> ratings left out
    files: list[str] = field(default_factory=list)
    readme: str = ""


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CinefuseError(f"--out {out} is a file; pass a folder for the export")
    if out.is_dir() and any(out.iterdir()) and not (out / PROVENANCE_NAME).is_file():
        raise CinefuseError(f"--out {out} is a folder that holds other files (no {PROVENANCE_NAME}); pass a new or "
                            "empty folder, or an earlier export's folder to replace it")


@contextlib.contextmanager
def staged(out: str | os.PathLike):
    """A fresh staging folder for the files of ``out``; on success it replaces ``out``."""
    out = Path(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield staging
        # one sync for every file and folder written (an Elliot export writes one file per item:
        # an fsync each cost 6 ms apiece, 22 s for 3,600 files), then the swap
        os.sync()
        old = out.parent / f".{out.name}.old-{secrets.token_hex(6)}"
        if out.exists():
            os.rename(out, old)
        os.rename(staging, out)
        fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _new_file(path: Path):
    """A new file in the staging folder, created exclusively and never through a link (the
    folder is synced once before it is swapped in: :func:`staged`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.fdopen(os.open(path, CREATE_FLAGS, 0o666), "wb")


def put(path: Path, content: bytes) -> None:
    with _new_file(path) as handle:
        handle.write(content)


def put_npy(path: Path, array: np.ndarray) -> None:
    with _new_file(path) as handle:
        np.save(handle, array, allow_pickle=False)


def put_npz(path: Path, arrays: dict) -> None:
    with _new_file(path) as handle:
        np.savez(handle, **arrays)


def put_text(path: Path, text: str) -> None:
    put(path, text.encode("utf-8"))


def tsv_lines(rows, timestamp: bool) -> str:
    """``user item rating [timestamp]`` lines, tab-separated, no header (Cornac's and Elliot's
    readers). Ratings print exactly, without trailing zeros (4.0 -> ``4``, 3.5 -> ``3.5``)."""
    columns = [rows.user.astype(str), rows.item.astype(str), np.char.mod("%.9g", rows.rating.astype(np.float64))]
    if timestamp and rows.timestamp is not None:
        columns.append(rows.timestamp.astype(str))
    if not len(rows):
        return ""
    return "\n".join("\t".join(values) for values in zip(*(c.tolist() for c in columns))) + "\n"


def file_digests(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder``, read in 1 MiB pieces (the default
    8 MiB buffer per file cost 3 s for an Elliot export's 3,600 small files)."""
    from cinefuse.store.manifest import sha256_file

    return {str(path.relative_to(folder)): sha256_file(path, chunk=1 << 20)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def finish(staging: Path, fmt: str, inp, readme: str, extra: dict | None = None) -> ExportResult:
    """``README.txt`` and ``export.json`` into ``staging``; the result to report."""
    from cinefuse.version import __version__
    from cinefuse.store.manifest import now_iso

    put_text(staging / README_NAME, readme)
    interactions = None if inp.interactions is None else {k: len(v) for k, v in inp.interactions.items()}
    digests = file_digests(staging)
    record = {
        "format": fmt,
        "cinefuse_version": __version__,
        "created": now_iso(),
        "items": len(inp.ids),
        "skipped_items": inp.skipped,
        "feature_sets": {n: {"store": s.store, "config_hashes": s.config_hashes, "shape": list(s.data.shape[1:]),
                             "source_dtype": s.source_dtype, "dtype": "float32", "valid_rows": int(s.valid.sum()),
                             "not_valid": s.skipped} for n, s in inp.sets.items()},
        "store_config_hashes": {loc: sorted({h for s in inp.sets.values() if s.store == loc for h in s.config_hashes})
                                for loc in dict.fromkeys(s.store for s in inp.sets.values())},
        **inp.provenance,
        "interactions": interactions,
        "dropped_ratings": inp.dropped,
        **(extra or {}),
        "files": digests,
    }
    put_text(staging / PROVENANCE_NAME, json.dumps(record, indent=2) + "\n")
    return ExportResult(fmt, "", len(inp.ids), interactions, dict(inp.skipped), dict(inp.dropped),
                        sorted(digests) + [PROVENANCE_NAME], readme)


def counts_text(result: ExportResult) -> str:
    """The lines that say what was left out and why (nothing is dropped silently)."""
    lines = [f"  {n} item(s) left out: {reason}" for reason, n in result.skipped.items()]
    lines += [f"  {n} rating(s) left out: {reason}" for reason, n in result.dropped.items()]
    return "\n".join(lines)
