"""metrics: the pinned metric definitions (``cinefuse.metrics.metrics``) and the exact top-K
cosine ranking with its id order for tie-breaking (``cinefuse.metrics.ranking``).

numpy and jax only; imports neither the store nor fuse, so that fuse can validate with the same
ranking metric that evaluate reports.
"""
