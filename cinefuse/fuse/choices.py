"""The names of the choices a fuse configuration makes (losses, distances, miners, their default
margins, history losses, fusion heads, objectives), without jax: the config, the CLI and ``--help`` read them, and
``cinefuse fuse --help`` must not load jax."""

LOSSES = ("pair", "triplet", "infonce")
DISTANCES = ("cosine", "euclidean")
MINERS = ("semi-hard", "batch-hard", "none")
DEFAULT_MARGINS = {("pair", "cosine"): 0.5, ("pair", "euclidean"): 1.0,
                   ("triplet", "cosine"): 0.2, ("triplet", "euclidean"): 0.4,
                   ("infonce", "cosine"): 0.0, ("infonce", "euclidean"): 0.0}
HISTORY_LOSSES = ("nmse", "softmax")
HEADS = ("concat-mlp", "ln-linear", "cross-attention", "gated")
OBJECTIVES = ("thesis", "co-like", "history", "distill")
