"""RecBole (RUCAIBox/RecBole): atomic files in ``out/<name>/`` and a config in ``out/recbole.yaml``.

- ``<name>.train.inter``, ``<name>.valid.inter``, ``<name>.test.inter``: the run's split, read
  as one dataset through RecBole's ``benchmark_filename: [train, valid, test]`` (its pre-split
  convention); columns ``user_id:token item_id:token rating:float [timestamp:float]``;
- ``<name>.item``: ``item_id:token``, every exported item (cold items included, so they hold an
  id before anyone rated them);
- ``<name>.itememb``: ``iid:token`` and one ``float_seq`` column per feature set (values
  space-separated), loaded with ``additional_feat_suffix: [itememb]``, ``alias_of_item_id:
  [iid]`` and ``preload_weight: {iid: <column>}`` (``dataset.get_preload_weight('iid')``).

RecBole fills a preload row it has no line for with zeros, so only items holding a valid row in
every exported set are written (the others, and their ratings, are counted in ``export.json``).
Values print with 9 significant digits: a float32 read back through float64 is the same float32.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.export.driver import export_with
from cinefuse.export.folder import ExportResult, put_text, tsv_lines
from cinefuse.export.source import PARTS, ExportInput

BENCHMARK = {"train": "train", "val": "valid", "test": "test"}  # split part -> RecBole file suffix
CONFIG_NAME = "recbole.yaml"


def export_recbole(out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None,
                   name: str = "cinefuse") -> ExportResult:
    """Write ``sets`` (and, with ``workdir``, that fuse run's split and ratings) as the RecBole
    dataset ``name`` into the new folder ``out``: ``out/<name>/<name>.{train,valid,test}.inter``,
    ``.item``, ``.itememb`` and ``out/recbole.yaml`` (pass it as ``config_file_list``; it sets
    ``data_path`` to ``out``). ``store``: default the run's store; ``ratings``: default the run's
    ratings file. Items without a valid row in every set are left out and counted. Returns an
    :class:`ExportResult`."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise CinefuseError(f"--name {name!r}: a RecBole dataset name of letters, digits, '_' and '-'")
    return export_with("recbole", write_recbole, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url, name=name)


def column_names(sets) -> dict[str, str]:
    """Feature set -> its ``.itememb`` column (RecBole field names: letters, digits, ``_``)."""
    columns = {s: re.sub(r"[^A-Za-z0-9_]", "_", s) for s in sets}
    if len(set(columns.values())) < len(columns):
        raise CinefuseError(f"feature sets {', '.join(sets)} give the same RecBole column name; export them apart")
    return columns


def write_recbole(inp: ExportInput, folder: Path, out: Path, name: str) -> tuple[str, dict]:
    inp.require_matrices("recbole")
    data = folder / name
    columns = column_names(inp.sets)
    ids = inp.ids.astype(str)
    put_text(data / f"{name}.item", "item_id:token\n" + "".join(f"{i}\n" for i in ids.tolist()))
    header = "\t".join(["iid:token"] + [f"{c}:float_seq" for c in columns.values()])
    cells = [ids] + [_seq_cells(inp.sets[s].data) for s in columns]
    put_text(data / f"{name}.itememb", header + "\n" + "".join("\t".join(row) + "\n" for row in zip(*cells)))
    timestamp = inp.interactions is not None and inp.interactions["train"].timestamp is not None
    if inp.interactions is not None:
        head = "user_id:token\titem_id:token\trating:float" + ("\ttimestamp:float" if timestamp else "")
        for part in PARTS:
            put_text(data / f"{name}.{BENCHMARK[part]}.inter", head + "\n" + tsv_lines(inp.interactions[part], timestamp))
    config = recbole_config(inp, out, name, columns, timestamp)
    put_text(folder / CONFIG_NAME, config)
    readme = (f"# RecBole dataset {name!r}: the atomic files in {name}/, the config in {CONFIG_NAME}\n"
              "from recbole.config import Config\nfrom recbole.data import create_dataset, data_preparation\n\n"
              f"config = Config(model=\"BPR\", dataset={name!r}, config_file_list=[{str(Path(out).resolve() / CONFIG_NAME)!r}])\n"
              "dataset = create_dataset(config)\n"
              "train_data, valid_data, test_data = data_preparation(config, dataset)\n"
              "item_vectors = dataset.get_preload_weight(\"iid\")  # row = RecBole's internal item id\n\n"
              + config)
    return readme, {"recbole": {"dataset": name, "itememb_columns": columns}}


def recbole_config(inp: ExportInput, out: Path, name: str, columns: dict, timestamp: bool) -> str:
    first = next(iter(columns.values()))
    inter = ["user_id", "item_id", "rating"] + (["timestamp"] if timestamp else [])
    lines = [
        f"# RecBole config for the dataset {name!r} exported by cinefuse",
        f"data_path: {str(Path(out).resolve())!r}",
        "field_separator: \"\\t\"",
        "seq_separator: \" \"",
        "USER_ID_FIELD: user_id",
        "ITEM_ID_FIELD: item_id",
        "RATING_FIELD: rating",
    ]
    if timestamp:
        lines.append("TIME_FIELD: timestamp")
    load = [f"  item: [item_id]", f"  itememb: [iid, {', '.join(columns.values())}]"]
    if inp.interactions is not None:
        lines.append("benchmark_filename: [train, valid, test]  # the cinefuse split: " + name + ".<part>.inter")
        load.insert(0, f"  inter: [{', '.join(inter)}]")
    lines += ["load_col:", *load, "additional_feat_suffix: [itememb]", "alias_of_item_id: [iid]",
              f"preload_weight:\n  iid: {first}  # or any other itememb column: {', '.join(columns.values())}"]
    return "\n".join(lines) + "\n"


def _seq_cells(data: np.ndarray) -> list[str]:
    text = np.char.mod("%.9g", data.astype(np.float64))
    return [" ".join(row) for row in text.tolist()]

