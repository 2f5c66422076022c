"""The old import path of the extraction loop, kept for ``benchmarks/bench_extract.py`` only.

The loop is split by role (as clip-retrieval's ``clip_inference``): :mod:`cinefuse.extract.reader`
(items, slices, chunks, decoding workers), :mod:`cinefuse.extract.mapper` (backbones: decoded
items to rows), :mod:`cinefuse.extract.writer` (rows to store blocks) and
:mod:`cinefuse.extract.runner` (plans a run, drives the loop). Import from those.
"""

from cinefuse.extract.mapper import Extractor
from cinefuse.extract.reader import ItemDataset, decode_item, make_loader

__all__ = ["Extractor", "ItemDataset", "decode_item", "make_loader"]
