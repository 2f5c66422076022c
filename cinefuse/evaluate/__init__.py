"""evaluate: scores a fuse workdir (``cinefuse.evaluate.score``) against the baselines
(``baselines``), writes the tables and plots (``report``), answers ``recommend`` and holds the
``evaluate`` / ``recommend`` commands (``cli``).

It stands above fuse: it embeds with ``cinefuse.fuse`` and scores with ``cinefuse.metrics``;
fuse never imports it.
"""
