"""Elliot / Ducho (sisinflab): one ``.npy`` per item, ``out/<modality>/<name>/<item id>.npy``
(a float32 vector), the layout Ducho writes its extractions in and Elliot's ``VisualAttribute``
/ ``TextualAttribute`` loaders read (a folder per feature, the item id as the file name); the
run's split as ``train.tsv``, ``val.tsv``, ``test.tsv`` (``user item rating [timestamp]``, no
header) for Elliot's ``fixed`` splitting strategy.

Elliot keeps only the items whose file it finds, so an item without a valid row in every
exported set gets no file in any of them (counted in ``export.json``), and its ratings are left
out of the TSVs too. Elliot parses file names as integers: ids that are not are refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from cinefuse.errors import CinefuseError
from cinefuse.export.driver import export_with
from cinefuse.export.folder import ExportResult, put_npy, put_text, tsv_lines
from cinefuse.export.source import PARTS, ExportInput
from cinefuse.progress import progress_bar

SAFE_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def export_elliot(out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None) -> ExportResult:
    """Write ``sets`` as one ``<id>.npy`` per item under ``out/<modality>/<name>/`` (and, with
    ``workdir``, that fuse run's split as ``out/{train,val,test}.tsv``) into the new folder
    ``out``. ``store``: default the run's store; ``ratings``: default the run's ratings file.
    Items without a valid row in every set get no file and are counted. Returns an
    :class:`ExportResult`."""
    return export_with("elliot", write_elliot, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url)


def write_elliot(inp: ExportInput, folder: Path, out: Path) -> tuple[str, dict]:
    inp.require_matrices("elliot")
    ids = inp.ids.astype(str).tolist()
    unsafe = [i for i in ids if not SAFE_ID.fullmatch(i)]
    if unsafe:
        raise CinefuseError(f"item id {unsafe[0]!r} cannot be a file name ({len(unsafe)} such ids); Elliot names "
                            "each item's file by its id: export with parquet or npz instead")
    with progress_bar(len(ids) * len(inp.sets), desc="elliot", unit="file", enabled=None) as bar:
        for s in inp.sets.values():
            for k, item in enumerate(ids):
                put_npy(folder / s.name / f"{item}.npy", s.data[k])
                bar.update(1)
    if inp.interactions is not None:
        for part in PARTS:
            put_text(folder / f"{part}.tsv", tsv_lines(inp.interactions[part], timestamp=True))
    return elliot_readme(inp, out), {}


def elliot_readme(inp: ExportInput, out: Path) -> str:
    root = Path(out).resolve()
    lines = ["# Elliot: a data_config for this export (Ducho layout: <modality>/<name>/<item id>.npy)",
             "data_config:"]
    if inp.interactions is not None:
        lines += ["  strategy: fixed", f"  train_path: {root / 'train.tsv'}", f"  validation_path: {root / 'val.tsv'}",
                  f"  test_path: {root / 'test.tsv'}"]
    else:
        lines += ["  strategy: dataset", "  dataset_path: <your ratings tsv: user item rating [timestamp]>"]
    lines.append("  side_information:")
    for s in inp.sets.values():
        loader, key = ("VisualAttribute", "visual_features") if s.modality == "visual" else (
            "TextualAttribute", "textual_features")
        lines += [f"    - dataloader: {loader}  # {s.name}", f"      {key}: {root / s.name}"]
    if not all(i.isdigit() for i in inp.ids.astype(str).tolist()):
        lines.append("# note: some item ids are not integers; Elliot's loaders parse file names with int()")
    return "\n".join(lines) + "\n"
