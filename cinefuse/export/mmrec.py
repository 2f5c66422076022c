"""MMRec (enoche/MMRec): the dataset folder ``out/<name>/`` its ``RecDataset`` and models read.

- ``<name>.inter``: tab-separated with a header, ``userID itemID rating [timestamp] x_label``;
  users and items numbered from 0, ``x_label`` 0 / 1 / 2 for the run's train / val / test part
  (MMRec's ``inter_splitting_label``); MMRec reads only userID, itemID and x_label;
- ``<modality>_feat.npy``: float32, row ``k`` the features of item ``itemID == k`` (MMRec's
  models index them by itemID); ``<modality>_<name>_feat.npy`` when two sets share a modality;
- ``i_id_mapping.csv`` (``item_id itemID``) and ``u_id_mapping.csv`` (``user_id userID``), as
  MMRec's preprocessing writes them; ``<name>.yaml``: the dataset config for ``src/configs/dataset``.

MMRec has no validity mask and sizes its item table from the ``.inter`` file, so only items
holding a valid row in every exported set are written, with their ratings (the others counted in
``export.json``). Not on PyPI: the files follow its loader (``src/utils/dataset.py``) and
``GeneralRecommender`` (``np.load`` of each feature file) as published.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from cinefuse.errors import CinefuseError
from cinefuse.export.driver import export_with
from cinefuse.export.folder import ExportResult, put_npy, put_text
from cinefuse.export.source import PARTS, ExportInput

X_LABEL = {"train": 0, "val": 1, "test": 2}


def export_mmrec(out, sets, *, workdir=None, store=None, ratings=None, endpoint_url=None,
                 name: str = "cinefuse") -> ExportResult:
    """Write ``sets`` and the fuse run ``workdir``'s split (MMRec needs one: ``x_label``) as the
    MMRec dataset ``name`` into the new folder ``out``: ``out/<name>/<name>.inter``,
    ``<modality>_feat.npy`` per set (row = itemID), ``i_id_mapping.csv``, ``u_id_mapping.csv``
    and ``<name>.yaml``. ``store``: default the run's store; ``ratings``: default the run's
    ratings file. Items without a valid row in every set are left out and counted. Returns an
    :class:`ExportResult`."""
    if workdir is None:
        raise CinefuseError("mmrec needs interactions divided by a split (its x_label); pass --workdir of a "
                            "cold-item or cold-item-time fuse run (its split.json and its ratings)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise CinefuseError(f"--name {name!r}: an MMRec dataset name of letters, digits, '_' and '-'")
    return export_with("mmrec", write_mmrec, out, sets, store=store, workdir=workdir, ratings=ratings,
                       endpoint_url=endpoint_url, name=name)


def feature_files(sets) -> dict[str, str]:
    """Feature set -> its file: ``<modality>_feat.npy``, or ``<modality>_<name>_feat.npy`` for
    sets sharing a modality."""
    modality = Counter(s.split("/", 1)[0] for s in sets)
    out = {}
    for s in sets:
        head, tail = s.split("/", 1)
        out[s] = f"{head}_feat.npy" if modality[head] == 1 else f"{head}_{tail}_feat.npy"
    return out


def write_mmrec(inp: ExportInput, folder: Path, out: Path, name: str) -> tuple[str, dict]:
    inp.require_matrices("mmrec")
    data = folder / name
    files = feature_files(inp.sets)
    for set_name, file in files.items():
        put_npy(data / file, np.ascontiguousarray(inp.sets[set_name].data, dtype=np.float32))
    users = np.unique(np.concatenate([inp.interactions[p].user for p in PARTS]))
    item_index = {item: k for k, item in enumerate(inp.ids.astype(str).tolist())}
    timestamp = inp.interactions["train"].timestamp is not None
    header = "userID\titemID\trating" + ("\ttimestamp" if timestamp else "") + "\tx_label\n"
    lines = []
    for part in PARTS:
        rows = inp.interactions[part]
        user = np.searchsorted(users, rows.user)
        item = [item_index[i] for i in rows.item.astype(str).tolist()]
        columns = [user.astype(str).tolist(), [str(i) for i in item],
                   np.char.mod("%.9g", rows.rating.astype(np.float64)).tolist()]
        if timestamp:
            columns.append(rows.timestamp.astype(str).tolist())
        columns.append([str(X_LABEL[part])] * len(rows))
        lines += ["\t".join(values) + "\n" for values in zip(*columns)]
    put_text(data / f"{name}.inter", header + "".join(lines))
    put_text(data / "i_id_mapping.csv", "item_id\titemID\n" + "".join(f"{i}\t{k}\n" for i, k in item_index.items()))
    put_text(data / "u_id_mapping.csv", "user_id\tuserID\n" + "".join(f"{u}\t{k}\n" for k, u in enumerate(users.tolist())))
    config = mmrec_config(name, files, timestamp)
    put_text(data / f"{name}.yaml", config)
    readme = (f"MMRec dataset {name!r}: copy {name}/ into MMRec's data/ folder and {name}/{name}.yaml into "
              f"src/configs/dataset/, then run: python main.py -m FREEDOM -d {name}\n"
              f"{name}.inter columns: userID itemID rating{' timestamp' if timestamp else ''} x_label "
              "(0 train, 1 validation, 2 test: the cinefuse split)\n"
              "feature rows: row k of each *_feat.npy is itemID k (i_id_mapping.csv maps them back)\n"
              + "".join(f"  {file}: {s}\n" for s, file in files.items()) + "\n" + config)
    return readme, {"mmrec": {"dataset": name, "feature_files": files, "users": int(len(users))}}


def mmrec_config(name: str, files: dict[str, str], timestamp: bool) -> str:
    """``src/configs/dataset/<name>.yaml``: MMRec reads a vision and a text feature file; the
    first visual and first text set fill them (the first set fills the text slot when there are
    neither, e.g. fused embeddings alone)."""
    vision = next((f for s, f in files.items() if s.startswith("visual/")), None)
    text = next((f for s, f in files.items() if s.startswith("text/")), None)
    note = ""
    if vision is None and text is None:
        text, note = next(iter(files.values())), "  # no visual or text set: MMRec reads this one in its place"
    lines = ["USER_ID_FIELD: userID", "ITEM_ID_FIELD: itemID"]
    if timestamp:
        lines.append("TIME_FIELD: timestamp")
    lines += ["filter_out_cod_start_users: True", f"inter_file_name: '{name}.inter'"]
    if vision is not None:
        lines.append(f"vision_feature_file: '{vision}'")
    if text is not None:
        lines.append(f"text_feature_file: '{text}'{note}")
    lines.append('field_separator: "\\t"')
    unread = [f for f in files.values() if f not in (vision, text)]
    if unread:
        lines.append(f"# also exported, not read by MMRec's loader (vision and text files only): {', '.join(unread)}")
    return "\n".join(lines) + "\n"
