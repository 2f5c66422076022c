"""Every choice name a command or a config offers, in one place (stdlib only, so ``--help`` and
the CLI modules read them without importing a stage, and a new choice is one line here).

Fuse (``[loss]``, ``[model]``, ``[objective]``, ``[train]``; ``cinefuse.fuse.config``):
losses, distances, miners and their default margins, fusion heads, poolings, objectives, co-like
associations and losses, history losses, distillation teachers, grid programs.

Protocols:
- Split protocols (``[split].protocol`` of fuse): ``cold-item`` splits the items 70/15/15 and
  builds pairs within each part, so test items are never seen in training; ``pair`` is the
  thesis's random split of the pairs (items shared between parts); ``cold-item-time`` makes the
  newest items (by first rating) the cold ones (validation, then test, newest last) and trains
  only on ratings given before the first of them was rated (the cut).
- Evaluation protocols (``cinefuse evaluate --protocol``): ``cold-item`` ranks the split's unseen
  test items; ``thesis`` ranks every rated item (training items included; for comparison only).

Other commands: evaluation tasks and tie-break rules, MovieLens dataset versions, index kinds, extract's
frame sampling, the policies for bad rows of a ratings file.
"""

# -- fuse: the loss section (pytorch-metric-learning's pieces: loss, distance, miner) ------------
LOSSES = ("pair", "triplet", "infonce")
DISTANCES = ("cosine", "euclidean")
MINERS = ("semi-hard", "batch-hard", "none")
DEFAULT_MARGINS = {("pair", "cosine"): 0.5, ("pair", "euclidean"): 1.0,
                   ("triplet", "cosine"): 0.2, ("triplet", "euclidean"): 0.4,
                   ("infonce", "cosine"): 0.0, ("infonce", "euclidean"): 0.0}
# -- fuse: the model ------------------------------------------------------------------------------
HEADS = ("concat-mlp", "ln-linear", "cross-attention", "gated")
POOLINGS = ("mean", "attention")
# -- fuse: the objective (cinefuse.fuse.objectives holds what each one does) ----------------------
OBJECTIVES = ("thesis", "co-like", "history", "distill")
ASSOCIATIONS = ("jaccard", "pmi")          # co-like partner score of the user sets
CO_LIKE_LOSSES = ("infonce", "loss")       # "loss": the [loss] section on co-like triplets
HISTORY_LOSSES = ("nmse", "softmax")
TEACHERS = ("ease", "svd")
# -- fuse: training -------------------------------------------------------------------------------
GRID_PROGRAMS = ("auto", "unrolled", "vmap")

# -- protocols ------------------------------------------------------------------------------------
SPLIT_PROTOCOLS = ("cold-item", "cold-item-time", "pair")
EVAL_PROTOCOLS = ("cold-item", "thesis")

# -- other commands -------------------------------------------------------------------------------
EVAL_TASKS = ("item-to-item", "user-to-item")  # cinefuse evaluate --task (or both; cinefuse.evaluate.tasks.TASKS)
TIE_BREAKS = ("random", "id")                                       # cinefuse evaluate --tie-break
DATASET_VERSIONS = ("ml-latest-small", "ml-100k", "ml-1m", "ml-20m")  # cinefuse datasets movielens --version
INDEX_KINDS = ("auto", "flat", "hnsw", "ivf")                        # cinefuse index build --kind
FRAME_SAMPLINGS = ("keyframe", "exact")                              # extract frame_sampling
ON_BAD_RATINGS = ("error", "drop", "keep-last")  # --on-bad-ratings (cinefuse.datasets.ratings_file)
SELECTION_TASKS = EVAL_TASKS  # [selection] task: the task whose validation metric keeps the checkpoint
EXPORT_FORMATS = ("cornac", "recbole", "mmrec", "elliot", "parquet", "npz")  # cinefuse export FORMAT
REQUIRES = ("any", "all")  # [data] require: items holding any / all of a model's feature sets
