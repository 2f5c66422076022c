"""The one path every format's export takes: check ``out``, gather the sets and the run
(``source.gather``), keep the items valid in every set where the format has no mask, write the
format's files into a staging folder, add ``README.txt`` and ``export.json``, swap it in."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from cinefuse.errors import CinefuseError
from cinefuse.export.folder import ExportResult, check_out, counts_text, finish, staged
from cinefuse.export.source import ExportInput, aligned, gather

# write(inp, staging, out, **options) -> (README text, extra export.json keys)
Writer = Callable[..., tuple[str, dict]]


def export_with(fmt: str, write: Writer, out, sets, *, store=None, workdir=None, ratings=None, endpoint_url=None,
                align: bool = True, **options) -> ExportResult:
    """Export ``sets`` (and a run's split) to ``out`` through ``write``; ``align``: only items
    valid in every set (the format's rows carry no validity mask)."""
    out = Path(out)
    check_out(out)
    inp = gather(sets, store=store, workdir=workdir, ratings=ratings, endpoint_url=endpoint_url)
    if align:
        inp = aligned(inp)
        if not len(inp.ids):
            raise CinefuseError(f"no item holds a valid row of every one of {', '.join(inp.sets)}; export fewer "
                                "sets (`cinefuse store info` shows each set's coverage), or use parquet or npz, "
                                "which keep every item with a validity mask")
    with staged(out) as staging:
        readme, extra = write(inp, staging, out, **options)
        result = finish(staging, fmt, inp, readme_header(fmt, inp) + readme_with_counts(readme, inp), extra)
    result.out = str(out)
    return result


def readme_header(fmt: str, inp: ExportInput) -> str:
    """Where the data came from, in a few lines (export.json has all of it)."""
    lines = [f"cinefuse export, format {fmt}: {len(inp.ids)} items"]
    for s in inp.sets.values():
        lines.append(f"  {s.name}: {'x'.join(map(str, s.data.shape[1:]))} float32 from {s.store} (config {', '.join(s.config_hashes)}), "
                     f"{int(s.valid.sum())} valid rows")
    split = inp.provenance.get("split")
    if split:
        lines.append(f"  split: {split['protocol']} (seed {split['seed']}, fingerprint {split['fingerprint']}) of "
                     f"workdir {inp.provenance['workdir']['path']}; ratings {inp.provenance['ratings']['path']}")
    return "\n".join(lines) + "\n\n"


def readme_with_counts(readme: str, inp: ExportInput) -> str:
    probe = ExportResult("", "", len(inp.ids), None, inp.skipped, inp.dropped)
    counts = counts_text(probe)
    if not counts:
        return readme
    return readme.rstrip("\n") + "\n\nLeft out (never written as zeros; export.json has the per-set reasons):\n" + counts + "\n"

