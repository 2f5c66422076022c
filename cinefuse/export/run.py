"""``export(format, out, sets, ...)``: one entry point over every format's export function
(``cinefuse export FORMAT``), and the format names, in the order ``--help`` lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cinefuse.choices import EXPORT_FORMATS as FORMATS
from cinefuse.errors import CinefuseError

if TYPE_CHECKING:  # nothing heavy at import time (the CLI imports this module for --help)
    from cinefuse.export.folder import ExportResult

NAMED = ("recbole", "mmrec")  # formats that take a dataset name


def export(fmt: str, out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None,
           name: str = "cinefuse") -> "ExportResult":
    """Export ``sets`` (names or ``"a/x,b/y"``) of ``store`` and, with ``workdir``, that fuse
    run's split and ratings, to the new folder ``out`` in format ``fmt`` (one of
    :data:`FORMATS`). ``name``: the dataset name of RecBole and MMRec exports."""
    from cinefuse.export import cornac, elliot, mmrec, recbole, tables

    functions = {"cornac": cornac.export_cornac, "recbole": recbole.export_recbole, "mmrec": mmrec.export_mmrec,
                 "elliot": elliot.export_elliot, "parquet": tables.export_parquet, "npz": tables.export_npz}
    if fmt not in functions:
        raise CinefuseError(f"export format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    options = {"name": name} if fmt in NAMED else {}
    return functions[fmt](out, sets, store=store, workdir=workdir, ratings=ratings, endpoint_url=endpoint_url,
                          **options)
