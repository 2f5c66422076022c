"""The fuse configuration: dataclasses, loaded from TOML and validated, saved as the run's record.

Example ``fuse.toml`` (every key optional; unknown keys are errors)::

    [data]
    store = "store/"              # or s3://bucket/prefix (with endpoint_url)
    ratings = "ml-latest-small/"  # ratings.csv | u.data | ratings.dat, or the folder
    movies = "ml-latest-small/"
    require = "any"               # items train on the sets they hold; "all": only items holding every set

    [data.modality_sets]          # one entry replaces that modality; the others keep the store's
    visual = ["visual/openclip_ViT-B-32", "visual/lowlevel"]   # defaults (plan.store_modality_sets)

    [split]
    protocol = "cold-item"        # or "pair" (the thesis's random pair split)

    [model]
    modalities = "full"           # every modality the store holds; "visual", "visual+audio", "text+meta",
                                  #   or a list of feature sets
    head = "concat-mlp"           # "ln-linear", "cross-attention", "gated"

    [loss]
    kind = "triplet"              # "pair" (contrastive), "infonce"
    distance = "cosine"           # "euclidean": on the L2-normalised embedding unless
    euclidean_normalized = true   #   false: on the unnormalised projection before normalisation
    mining = "semi-hard"          # "batch-hard", "none"

    [objective]                   # what the model learns (docs/OBJECTIVES.md); all from training ratings only
    kind = "distill"              # "co-like", "history", "thesis" (genre pairs, the reproduction)
    prior = true                  # + a scalar item-prior head, added to the cosine with a validated weight

    [train]
    steps = 2000
    batch_size = 128
    grid_program = "auto"         # a grid group as one program: "unrolled" (CPU default) or "vmap"
    seeds = [0, 1, 2]             # every model once per seed ("<model>@seed<N>"); default: train.seed alone

    [selection]
    task = "item-to-item"         # whose validation metric keeps the checkpoint: or "user-to-item" (Recall@20)

``cinefuse fuse --store S --ratings R --movies M --workdir W --config fuse.toml`` trains it; run the
same command again and it resumes from the newest checkpoint in ``W``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cinefuse.choices import (
    ASSOCIATIONS,
    CO_LIKE_LOSSES,
    DEFAULT_MARGINS,
    DISTANCES,
    GRID_PROGRAMS,
    HEADS,
    HISTORY_LOSSES,
    LOSSES,
    MINERS,
    OBJECTIVES,
    ON_BAD_RATINGS,
    POOLINGS,
    REQUIRES,
    SELECTION_TASKS,
    SPLIT_PROTOCOLS,
    TEACHERS,
)
from cinefuse.errors import CinefuseError
from cinefuse.fuse import objectives
from cinefuse.fuse.cocounts import CO_PRODUCTS_BUDGET
from cinefuse.fuse.objectives import THESIS_LABEL_SETS, modalities_label, model_name  # noqa: F401 (re-exported)
from cinefuse.fuse.pairs import PairConfig
from cinefuse.tomlconfig import check_value, known_fields, read_toml

FULL = "full"  # the modality spec standing for every modality the store holds

@dataclass
class DataConfig:
    store: str = ""
    ratings: str = ""
    movies: str = ""
    endpoint_url: str | None = None
    # modality name -> the feature sets it stands for, merged over the store's defaults
    # (``plan.store_modality_sets``): an entry here replaces that one modality, the others stay
    modality_sets: dict = field(default_factory=dict)
    # "any": an item trains and is embedded from whichever of a model's feature sets it holds;
    # "all": only items holding every set of the run (one fixed item set, for ablations)
    require: str = "any"
    # how the ratings file is read (cinefuse.datasets.movielens.load_ratings): the separator (None:
    # recognised from the content), the columns "user,item,rating[,timestamp]" (None: the header's
    # names or MovieLens's order) and the policy for bad rows: "error", "drop" or "keep-last"
    ratings_sep: str | None = None
    ratings_columns: str | None = None
    on_bad_ratings: str = "error"


@dataclass
class SplitConfig:
    protocol: str = "cold-item"
    fractions: list = field(default_factory=lambda: [0.7, 0.15, 0.15])


@dataclass
class ModelConfig:
    modalities: Any = "full"        # str ("visual+audio", "full") or list of feature set names
    head: str = "concat-mlp"
    token_dim: int = 128            # each feature set's encoder output
    hidden: int = 256               # encoder and head hidden width
    embed_dim: int = 64             # the output embedding (L2-normalised)
    pooling: str = "mean"           # frame/window pooling for sequence sets without a conv encoder
    conv_sets: list = field(default_factory=lambda: ["audio/logmel_seq"])  # sequence sets with the conv encoder
    attention_heads: int = 4


@dataclass
class LossConfig:
    kind: str = "triplet"
    distance: str = "cosine"
    margin: float | None = None     # None: 0.2 triplet-cosine, 0.4 triplet-euclidean, 0.5 / 1.0 pair
    mining: str = "semi-hard"
    euclidean_normalized: bool = True
    temperature: float = 0.1

    def resolved_margin(self) -> float:
        return float(self.margin) if self.margin is not None else DEFAULT_MARGINS[(self.kind, self.distance)]

    def refuse_substitutes(self) -> None:
        """Refuses what would train as something else than it says: InfoNCE's logits are cosines
        (a euclidean InfoNCE would train cosine) and it has no margin (its scale is the temperature)."""
        if self.kind == "infonce" and self.distance == "euclidean":
            raise CinefuseError("loss.distance = 'euclidean' does not apply to loss.kind = 'infonce' (its logits are "
                                "cosines, so it would train cosine); set loss.distance = \"cosine\"")
        if self.kind == "infonce" and self.margin is not None:
            raise CinefuseError("loss.margin does not apply to loss.kind = 'infonce' (it has no margin; "
                                "loss.temperature sets its scale); drop loss.margin")


@dataclass
class ObjectiveConfig:
    """The training signal (docs/OBJECTIVES.md). ``thesis``: the genre-filtered pairs and the
    [loss] section, as the thesis trained. The co-preference objectives learn from the training
    ratings only: ``co-like`` (co-liked partners, no genre filter), ``history`` (a user x item
    slice scored through the embeddings, ELSA/beeFormer), ``distill`` (a CF teacher's item
    vectors and similarity rows). ``prior`` adds a scalar head on every objective."""

    kind: str = "distill"
    association: str = "jaccard"    # co-like partner score: "jaccard" or "pmi" of the user sets
    partners: int = 32              # co-like partners kept per training item (top-N by association)
    min_co_likes: int = 1
    max_co_products: float = CO_PRODUCTS_BUDGET  # exact co-counts up to sum_u likes_u^2 products; heavy users capped above
    co_like_loss: str = "infonce"   # multi-positive InfoNCE; "loss": the [loss] section on (anchor, partner, random) triplets
    temperature: float = 0.1        # co-like and distill InfoNCE / KL temperature
    history_users: int = 32         # history slice: users per step ...
    history_per_user: int = 32      # ... liked items drawn from each ...
    # ... plus uniform training items: S = users * per_user + random (2048 over 512: best validation
    # user-to-item Recall@20 on ml-latest-small 0.218 -> 0.230 and 0.266 -> 0.275 on two splits, two seeds each;
    # benchmarks/results/quality_sweep.json)
    history_random: int = 2048
    history_loss: str = "nmse"      # "nmse" (ELSA) or "softmax" (Mult-VAE likelihood)
    history_temperature: float = 1.0  # softmax only
    teacher: str = "ease"           # distill similarity rows: "ease" (EASE B, dense I x I) or "svd" (teacher vector dot products)
    teacher_dim: int = 64           # PureSVD teacher vectors
    teacher_temperature: float = 0.5
    ease_lambda: float = 200.0
    prior: bool = True
    prior_loss_weight: float = 1.0
    # prior weights tried on the validation items (nDCG@10); 0 keeps the plain cosine
    # (ml-latest-small: validation kept improving up to 0.4 and test nDCG@10 with it; 0.8 bounds it)
    prior_weights: list = field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.4, 0.8])

    def validate(self) -> None:
        _one_of("objective.kind", self.kind, OBJECTIVES)
        _one_of("objective.association", self.association, ASSOCIATIONS)
        _one_of("objective.co_like_loss", self.co_like_loss, CO_LIKE_LOSSES)
        _one_of("objective.history_loss", self.history_loss, HISTORY_LOSSES)
        _one_of("objective.teacher", self.teacher, TEACHERS)
        for name in ("partners", "min_co_likes", "history_users", "history_per_user", "teacher_dim"):
            if getattr(self, name) < 1:
                raise CinefuseError(f"objective.{name} must be >= 1 (got {getattr(self, name)})")
        if not self.max_co_products > 0:
            raise CinefuseError(f"objective.max_co_products must be > 0 (got {self.max_co_products})")
        if self.history_random < 0:
            raise CinefuseError(f"objective.history_random must be >= 0 (got {self.history_random})")
        for name in ("temperature", "history_temperature", "teacher_temperature", "ease_lambda"):
            if getattr(self, name) <= 0:
                raise CinefuseError(f"objective.{name} must be > 0 (got {getattr(self, name)})")
        if self.prior_loss_weight < 0:
            raise CinefuseError(f"objective.prior_loss_weight must be >= 0 (got {self.prior_loss_weight})")
        if (not self.prior_weights or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                              for w in self.prior_weights)):
            raise CinefuseError(f"objective.prior_weights {self.prior_weights!r} must be a non-empty list of "
                                "numbers >= 0")


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 128           # triplets per step (3x as many items)
    steps: int = 2000
    steps_per_call: int = 50        # steps fused into one jitted lax.scan call
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    clip_norm: float = 1.0
    eval_every: int = 200           # validation nDCG@10 every N steps (a multiple of steps_per_call)
    checkpoint_every: int = 200     # a multiple of eval_every
    patience: int = 5               # evaluations without improvement before stopping; 0: never stop early
    keep_checkpoints: int = 2
    # how a grid group of configurations becomes one program: "vmap" (batched over members),
    # "unrolled" (members written out in one program), "auto": unrolled on CPU, vmap elsewhere
    grid_program: str = "auto"
    # several seeds: every model trained once per seed, named "<model>@seed<N>"; [] (default): seed alone
    seeds: list = field(default_factory=list)
    data_parallel: bool = True      # shard each batch over all local devices
    distributed: bool = False       # call jax.distributed.initialize() first (several hosts)
    # each training item's present feature sets are dropped at this rate (never all of them), so the
    # model learns to embed from any subset (models.py, "Items that miss a modality"); 0: off
    modality_dropout: float = 0.1


@dataclass
class SelectionConfig:
    # the task whose validation metric keeps the checkpoint and stops early: "item-to-item"
    # (nDCG@10, pinned) or "user-to-item" (Recall@20); both are measured and recorded
    task: str = "item-to-item"


@dataclass
class GridConfig:
    losses: list = field(default_factory=lambda: ["pair", "triplet"])
    distances: list = field(default_factory=lambda: ["cosine", "euclidean"])
    # None: from what the store holds (``plan.default_grid_modalities``)
    modalities: list | None = None
    # extra heads, each trained with the base [loss] and [model].modalities
    heads: list = field(default_factory=lambda: ["ln-linear", "cross-attention", "gated"])
    # objectives, each with the modality sets (and the heads) above; [] (default): [objective].kind only.
    # thesis trains losses x distances; the co-preference objectives one member per modality set
    objectives: list = field(default_factory=list)


@dataclass
class FuseConfig:
    data: DataConfig = field(default_factory=DataConfig)
    pairs: PairConfig = field(default_factory=PairConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def replace(self, **sections) -> FuseConfig:
        return dataclasses.replace(self, **sections)

    def validate(self) -> FuseConfig:
        self.pairs.validate()
        _one_of("split.protocol", self.split.protocol, SPLIT_PROTOCOLS)
        if len(self.split.fractions) != 3 or abs(sum(self.split.fractions) - 1.0) > 1e-6 or min(self.split.fractions) <= 0:
            raise CinefuseError(f"split.fractions {self.split.fractions} must be three positive numbers summing to 1")
        _one_of("model.head", self.model.head, HEADS)
        _one_of("model.pooling", self.model.pooling, POOLINGS)
        _one_of("loss.kind", self.loss.kind, LOSSES)
        _one_of("loss.distance", self.loss.distance, DISTANCES)
        _one_of("loss.mining", self.loss.mining, MINERS)
        self.loss.refuse_substitutes()
        _one_of("train.grid_program", self.train.grid_program, GRID_PROGRAMS)
        _one_of("selection.task", self.selection.task, SELECTION_TASKS)
        seeds = self.train.seeds
        if not isinstance(seeds, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                                  for x in seeds) or len(set(seeds)) != len(seeds):
            raise CinefuseError(f"train.seeds {seeds!r} must be a list of distinct integers >= 0")
        _one_of("data.require", self.data.require, REQUIRES)
        _one_of("data.on_bad_ratings", self.data.on_bad_ratings, ON_BAD_RATINGS)
        if not 0.0 <= float(self.train.modality_dropout) < 1.0:
            raise CinefuseError(f"train.modality_dropout must be in [0, 1) (got {self.train.modality_dropout})")
        self.objective.validate()
        for name in ("losses", "distances", "heads", "objectives"):
            allowed = {"losses": LOSSES, "distances": DISTANCES, "heads": HEADS, "objectives": OBJECTIVES}[name]
            for value in getattr(self.grid, name):
                _one_of(f"grid.{name}", value, allowed)
        t = self.train
        for name in ("batch_size", "steps", "steps_per_call", "eval_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(t, name) < 1:
                raise CinefuseError(f"train.{name} must be >= 1 (got {getattr(t, name)})")
        if t.eval_every % t.steps_per_call:
            raise CinefuseError(
                f"train.eval_every ({t.eval_every}) must be a multiple of train.steps_per_call ({t.steps_per_call})")
        if t.checkpoint_every % t.eval_every:
            raise CinefuseError(
                f"train.checkpoint_every ({t.checkpoint_every}) must be a multiple of train.eval_every ({t.eval_every})")
        if t.steps % t.steps_per_call:
            raise CinefuseError(f"train.steps ({t.steps}) must be a multiple of train.steps_per_call ({t.steps_per_call})")
        if self.loss.temperature <= 0:
            raise CinefuseError("loss.temperature must be > 0")
        if not isinstance(self.data.modality_sets, dict):
            raise CinefuseError("[data.modality_sets] must be a table of modality = [feature sets]")
        for mod, sets in self.data.modality_sets.items():
            if mod == FULL or "+" in mod:
                raise CinefuseError(f"data.modality_sets.{mod}: {FULL!r} and names with '+' are reserved; "
                                    "choose another modality name")
            if not isinstance(sets, list) or not sets or not all(isinstance(s, str) and "/" in s for s in sets):
                raise CinefuseError(
                    f"data.modality_sets.{mod} must be a non-empty list of feature set names like 'visual/effnet'")
        check_modalities_spec(self.model.modalities, "model.modalities")
        if self.grid.modalities is not None:
            if not isinstance(self.grid.modalities, list):
                raise CinefuseError(f"grid.modalities must be a list (got {self.grid.modalities!r})")
            for mods in self.grid.modalities:
                check_modalities_spec(mods, "grid.modalities")
        if isinstance(self.model.modalities, (list, tuple)):
            check_inputs(self.objective, list(self.model.modalities))
        return self


def check_inputs(objective: ObjectiveConfig, sets: list[str]) -> None:
    """Refuses feature sets the objective may not read: under ``thesis`` the genres are the pair
    labels, and as an input they would hand the answer over."""
    if not objectives.of(objective).allows(sets):
        label = [s for s in sets if s in THESIS_LABEL_SETS]
        raise CinefuseError(f"feature set {label[0]!r} holds the genres the thesis objective builds its pairs from; "
                            "drop it from [model].modalities or train a co-preference objective ([objective].kind)")


def _one_of(key: str, value, allowed) -> None:
    if value not in allowed:
        raise CinefuseError(f"{key} = {value!r} is not one of {', '.join(map(repr, allowed))}")


def check_modalities_spec(modalities, key: str) -> None:
    """The shape of a modality spec (its names are checked against the store in ``plan.resolve_feature_sets``)."""
    if isinstance(modalities, (list, tuple)):
        if not modalities or not all(isinstance(s, str) and "/" in s for s in modalities):
            raise CinefuseError(f"{key} list {modalities!r} must name feature sets like 'text/minilm'")
        return
    if not isinstance(modalities, str) or not modalities or "" in modalities.split("+"):
        raise CinefuseError(f"{key} {modalities!r} must be a string like 'visual+audio' or a list of sets")


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise CinefuseError(f"[{where}] must be a table")
    known = known_fields(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CinefuseError(
            f"unknown key {unknown[0]!r} in [{where}] of the fuse config; known keys: {', '.join(known)}")
    return cls(**{key: check_value(known[key], value, "fuse", f"{where}.{key}", "") for key, value in data.items()})


SECTIONS = {"data": DataConfig, "pairs": PairConfig, "split": SplitConfig, "model": ModelConfig,
            "loss": LossConfig, "objective": ObjectiveConfig, "train": TrainConfig, "grid": GridConfig,
            "selection": SelectionConfig}


def config_from_dict(data: dict) -> FuseConfig:
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise CinefuseError(f"unknown section [{unknown[0]}] in the fuse config; known: {', '.join(SECTIONS)}")
    return FuseConfig(**{name: _build(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()}).validate()


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> FuseConfig:
    """Defaults, then the TOML file, then ``overrides`` ({section: {key: value}}), validated."""
    data: dict = read_toml(path, "fuse") if path is not None else {}
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return config_from_dict(data)


def as_config(config) -> FuseConfig:
    if isinstance(config, FuseConfig):
        return config.validate()
    if isinstance(config, dict):
        return config_from_dict(config)
    if isinstance(config, (str, Path)):
        return load_config(config)
    raise CinefuseError(f"fuse config must be a FuseConfig, a dict or a TOML path (got {type(config).__name__})")


def config_json(config: FuseConfig) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)
