"""export: store feature sets and a fuse run's split, written in the formats of other frameworks.

One function per format, each writing a new folder ``out`` (swapped in whole when complete, so a
killed export never leaves half a folder) with ``export.json`` (provenance) and ``README.txt``
(how to load it) beside the data:

- ``cinefuse.export.cornac.export_cornac``: NPZ of (ids, features) per set, interactions as
  ``user item rating [timestamp]`` TSV per split part, the lines that build Cornac's modalities
  and ``BaseMethod``;
- ``cinefuse.export.recbole.export_recbole``: RecBole atomic files (``.train.inter``,
  ``.valid.inter``, ``.test.inter``, ``.item``, ``.itememb``) and a config YAML;
- ``cinefuse.export.mmrec.export_mmrec``: MMRec's ``.inter`` (``x_label`` 0/1/2) with
  row-aligned ``<modality>_feat.npy`` and the id mappings;
- ``cinefuse.export.elliot.export_elliot``: one ``.npy`` per item under ``<modality>/<name>/``
  (Ducho's layout, Elliot's loaders) and the split as TSV;
- ``cinefuse.export.tables.export_parquet`` / ``export_npz``: every item with a validity mask
  (null or NaN rows where invalid), and the interactions.

``cinefuse.export.run.export(format, ...)`` picks one by name (``cinefuse export FORMAT``).
Heavy imports happen inside the functions; importing this package costs nothing.
"""
