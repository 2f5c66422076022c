"""Cornac (PreferredAI/cornac): one NPZ per feature set holding ``ids`` and ``features`` (the two
arguments of ``cornac.data.FeatureModality`` / ``ImageModality``), the run's split as
``interactions/{train,val,test}.tsv`` (``user item rating [timestamp]``, what
``cornac.data.Reader`` reads), and the lines that load both into a ``BaseMethod`` (printed and in
``README.txt``).

Cornac aligns a modality's rows to its own item index by id and expects a row for every item it
knows, so only items holding a valid row in every exported set are written (the others, and
their ratings, are counted in ``export.json``). The split's cold items are unknown to training,
so the ``BaseMethod`` keeps them (``exclude_unknowns=False``): a feature-using model scores them
from their features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cinefuse.export.driver import export_with
from cinefuse.export.folder import ExportResult, put_npz, put_text, tsv_lines
from cinefuse.export.source import PARTS, ExportInput

FEATURES_DIR = "features"
INTERACTIONS_DIR = "interactions"


def export_cornac(out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None) -> ExportResult:
    """Write ``sets`` (and, with ``workdir``, that fuse run's split and ratings) for Cornac into
    the new folder ``out``.

    - ``out/features/<modality>/<name>.npz``: ``ids`` (str, n) and ``features`` (float32, n x D),
      row i the features of item ``ids[i]``; items without a valid row in every set are left out
      and counted;
    - ``out/interactions/{train,val,test}.tsv``: the run's ratings of each part's items;
    - ``out/README.txt``: the Python lines building the modalities and the ``BaseMethod``;
    - ``out/export.json``: provenance.

    ``sets``: names or a comma-separated string; ``store``: default the run's store;
    ``ratings``: default the run's ratings file. Returns an :class:`ExportResult`."""
    return export_with("cornac", write_cornac, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url)


def write_cornac(inp: ExportInput, folder: Path, out: Path) -> tuple[str, dict]:
    inp.require_matrices("cornac")
    for s in inp.sets.values():
        put_npz(folder / FEATURES_DIR / f"{s.name}.npz", {"ids": inp.ids.astype(str), "features": s.data})
    if inp.interactions is not None:
        for part in PARTS:
            put_text(folder / INTERACTIONS_DIR / f"{part}.tsv", tsv_lines(inp.interactions[part], timestamp=True))
    return cornac_lines(inp, out), {}


def cornac_lines(inp: ExportInput, out: Path) -> str:
    """The README: Python that builds Cornac's modalities and evaluation method from this export."""
    names = list(inp.sets)
    visual = [n for n in names if n.startswith("visual/")]
    image = visual[0] if visual else names[0]
    other = [n for n in names if n not in visual]
    feature = other[0] if other else names[0]
    lines = [
        "# Load into Cornac (pip install cornac); set root to where this folder now is.",
        "import numpy as np",
        "from cornac.data import FeatureModality, ImageModality, Reader",
        "from cornac.eval_methods import BaseMethod, RatioSplit",
        "",
        f"root = {str(Path(out).resolve())!r}  # this export folder",
        "",
        "def modality(set_name, kind=FeatureModality):",
        f"    z = np.load(f\"{{root}}/{FEATURES_DIR}/{{set_name}}.npz\")",
        "    return kind(features=z[\"features\"], ids=z[\"ids\"].tolist())",
        "",
    ]
    for name in names:
        lines.append(f"{_variable(name)} = modality({name!r}{', ImageModality' if name == image else ''})")
    if inp.interactions is not None:
        threshold = inp.provenance["ratings"]["like_threshold"]
        fmt = "UIR" if inp.interactions["train"].timestamp is None else "UIRT"
        lines += [
            "",
            "reader = Reader()",
            f"train, val, test = (reader.read(f\"{{root}}/{INTERACTIONS_DIR}/{{part}}.tsv\", fmt=\"{fmt}\", sep=\"\\t\")",
            "                     for part in (\"train\", \"val\", \"test\"))",
            "# cold items are unknown to training: keep them (exclude_unknowns=False), features score them",
            f"method = BaseMethod.from_splits(train_data=train, val_data=val, test_data=test, fmt=\"{fmt}\",",
            "                                exclude_unknowns=False,",
            f"                                rating_threshold={threshold}, item_feature={_variable(feature)},",
            f"                                item_image={_variable(image)}, seed=0)",
        ]
    else:
        lines += [
            "",
            "# no fuse run was given (--workdir): split your own ratings, e.g.",
            "# data = Reader().read(\"ratings.tsv\", fmt=\"UIR\", sep=\"\\t\")",
            f"# method = RatioSplit(data=data, test_size=0.2, exclude_unknowns=False, item_feature={_variable(feature)},",
            f"#                     item_image={_variable(image)}, seed=0)",
        ]
    return "\n".join(lines) + "\n"


def _variable(name: str) -> str:
    """``fused/distill-full`` -> ``fused_distill_full``: a Python name for the set's modality."""
    return "".join(c if c.isalnum() else "_" for c in name)


def read_cornac_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, features) of one exported NPZ (a convenience for tests and notebooks)."""
    with np.load(path, allow_pickle=False) as z:
        return z["ids"], z["features"]
