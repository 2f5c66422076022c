"""evaluate: scores a fuse workdir against the baselines and writes the tables and plots.

- ``run``: ``run_evaluate``, the whole evaluation over a job loaded once (``job``).
- ``tasks``: what a query, its candidates and its scoring are (``tasks/item_to_item.py``,
  ``tasks/user_to_item.py``).
- ``evalset``: the eval set (queries, candidates in tie order, relevance); ``results``: rows and
  the table; ``rows``: ``score_row`` and the model rows; ``baselines``: the baseline rows;
  ``verdict``: paired verdict and strata; ``selection``: the model validation chose and the
  grouping of seeds; ``fused``: the fused-embedding writer.
- ``perquery``: every row's per-query (per-user) values as ``per_query.parquet`` / ``.csv.gz``;
  ``compare`` and ``compare_report``: ``cinefuse compare``, one table over several runs on the
  items (and users) they all share.
- ``report``: the compact and full tables (``html``: the self-contained page; ``plots``: the PNGs); ``recommend`` and ``index``: answering ``recommend``; ``cli`` and
  ``index_cli``: the commands.

It stands above fuse: it embeds with ``cinefuse.fuse`` and scores with ``cinefuse.metrics``;
fuse never imports it.
"""
