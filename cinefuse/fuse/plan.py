"""Run planning: what a fuse command trains, from the config and what the store holds.

``with_store_modalities`` fixes the modality sets by the store (its defaults, each modality prefix
standing for its per-item vector sets, merged with ``[data.modality_sets]``) and says in one line
what it chose; ``plan_runs`` turns the config (or its grid) into groups of :class:`RunSpec`, each
group one program of the trainer. A run's name follows its objective's name pattern
(``objectives.model_name``). With several seeds (``train.seeds``) every group is planned once
per seed, each run named ``<model>@seed<N>`` (``seeded_name``) and initialised and batched from
its own seed; the split, targets and validation samples stay the base seed's (``train.seed``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from cinefuse.errors import CinefuseError
from cinefuse.fuse import objectives
from cinefuse.fuse.config import (
    FULL,
    FuseConfig,
    LossConfig,
    ModelConfig,
    ObjectiveConfig,
    check_inputs,
    check_modalities_spec,
)
from cinefuse.fuse.objectives import modalities_label, model_name

# The modality names: a store's feature set names are "<modality>/<name>"; these come first, in
# this order, then any other modality prefix alphabetically. "full" stands for all of them.
MODALITY_ORDER = ("visual", "audio", "text", "meta")


# -- what to train ------------------------------------------------------------------------------
@dataclass
class RunSpec:
    name: str
    loss: LossConfig
    model: ModelConfig
    feature_sets: list[str]          # the sets the tower is built over (a grid group: their union)
    token_mask: list[int]            # 1 for the sets this configuration uses
    objective: ObjectiveConfig = field(default_factory=lambda: ObjectiveConfig(kind="thesis"))
    seed: int | None = None          # the seed it trains from (None: train.seed)
    base_model: str = ""             # the name without its "@seed<N>" ("": the name)

    def model_seed(self, config: FuseConfig) -> int:
        return config.train.seed if self.seed is None else self.seed

    def record(self, config: FuseConfig) -> dict:
        return {"name": self.name, "loss": asdict(self.loss), "margin": self.loss.resolved_margin(),
                "model": asdict(self.model), "feature_sets": self.feature_sets, "token_mask": self.token_mask,
                "train": asdict(config.train), "pairs": asdict(config.pairs), "split": asdict(config.split),
                "data": asdict(config.data), "objective": asdict(self.objective),
                "seed": self.model_seed(config), "base_model": self.base_model or self.name}


def seeded_name(name: str, seed: int) -> str:
    """The run name of ``name`` trained from ``seed`` when a run trains several seeds."""
    return f"{name}@seed{seed}"


def with_seeds(groups: list[list[RunSpec]], seeds: list[int]) -> list[list[RunSpec]]:
    """Each group once per seed of ``train.seeds``: several seeds rename the runs
    ``<model>@seed<N>``; one seed keeps the names (and trains from that seed)."""
    if not seeds:
        return groups
    out = []
    for seed in seeds:
        for group in groups:
            out.append([dataclasses.replace(r, name=seeded_name(r.name, seed) if len(seeds) > 1 else r.name,
                                            seed=seed, base_model=r.name) for r in group])
    return out


def _members(config: FuseConfig, objective: ObjectiveConfig, mods, model: ModelConfig, sets: list[str],
             losses: list[str], distances: list[str]) -> list[RunSpec]:
    """One group's members: losses x distances where the objective trains through [loss] (thesis,
    co-like with ``co_like_loss = "loss"``), else the one member its own loss defines."""
    through_loss = objectives.of(objective).through_loss(objective)
    pairs = [(k, d) for k in losses for d in distances] if through_loss else [(config.loss.kind, config.loss.distance)]
    out = []
    for kind, distance in pairs:
        loss = LossConfig(**{**asdict(config.loss), "kind": kind, "distance": distance,
                             "margin": config.loss.margin if kind == config.loss.kind else None})
        name = model_name(kind, distance, mods, model.head, objective.kind, objective.co_like_loss)
        out.append(RunSpec(name, loss, model, sets, [1] * len(sets), objective))
    return out


def plan_runs(config: FuseConfig, grid: bool) -> list[list[RunSpec]]:
    """Groups of runs; each group is one program (``trainer.GroupTrainer``).

    A group holds configurations that really share shapes and batches: one objective, the same
    feature sets and head, so the same parameter layout and the same sampled batch, differing only
    in loss and distance (selected per member inside the one program). Grouping by objective (not
    mixing objectives in one program) is because each objective draws a batch of another shape
    from other targets and may add parameters (the distill kernel): a mixed group would compute
    every objective's batch for every member. No member computes an encoder it does not use: the
    grid's ``visual``, ``visual+audio`` and ``full`` members are three groups per objective
    (thesis: {pair, triplet} x {cosine, euclidean}; a co-preference objective: one member), and
    every other head is a group of its own. ``grid.objectives`` (default: ``[objective].kind``)
    multiplies all of it; an objective skips the modality sets it may not read (the thesis: those
    holding its labels, ``meta/genres``).
    """
    return with_seeds(_plan_groups(config, grid), config.train.seeds)


def _plan_groups(config: FuseConfig, grid: bool) -> list[list[RunSpec]]:
    sets_of = lambda mods: resolve_feature_sets(mods, config.data.modality_sets)  # noqa: E731
    if not grid:
        sets = sets_of(config.model.modalities)
        return [_members(config, config.objective, config.model.modalities, config.model, sets,
                         [config.loss.kind], [config.loss.distance])]
    g = config.grid
    kinds = [ObjectiveConfig(**{**asdict(config.objective), "kind": k}) for k in g.objectives or [config.objective.kind]]
    through_loss = any(objectives.of(o).through_loss(o) for o in kinds)
    if through_loss and "infonce" in g.losses and "euclidean" in g.distances:
        raise CinefuseError("grid.losses holds 'infonce' and grid.distances 'euclidean': InfoNCE's logits are "
                            "cosines, so that member would train cosine; drop one of them from [grid]")
    groups: list[list[RunSpec]] = []
    for objective in kinds:
        allows = objectives.of(objective).allows
        for mods in g.modalities:
            sets = sets_of(mods)
            if not allows(sets):
                continue
            model = ModelConfig(**{**asdict(config.model), "modalities": mods})
            group = _members(config, objective, mods, model, sets, g.losses, g.distances)
            if group:
                groups.append(group)
        for head in g.heads:
            sets = sets_of(config.model.modalities)
            if head == config.model.head or not allows(sets):
                continue
            model = ModelConfig(**{**asdict(config.model), "head": head})
            groups.append(_members(config, objective, config.model.modalities, model, sets,
                                   [config.loss.kind], [config.loss.distance]))
    return groups


def with_store_modalities(config: FuseConfig, grid: bool, log) -> FuseConfig:
    """``config`` with its modality sets and grid fixed by what the store holds (the store's
    defaults merged with [data.modality_sets]); says in one line what it chose."""
    from cinefuse.fuse.features import store_feature_kinds

    d = config.data
    for key in ("store", "ratings", "movies"):
        if not getattr(d, key):
            raise CinefuseError(f"fuse needs --{key} (or data.{key} in the config)")
    config = absolute_data_paths(config)
    config = resolve_modalities(config, store_feature_kinds(d.store, endpoint_url=d.endpoint_url))
    log(describe_modalities(config, grid))
    return config


def absolute_data_paths(config: FuseConfig) -> FuseConfig:
    """``config`` with its local store, ratings and movies paths made absolute, so the workdir's
    record names the same files wherever evaluate or recommend run later (an ``s3://`` store is
    kept as written)."""
    from pathlib import Path

    d = config.data
    paths = {key: str(Path(getattr(d, key)).absolute()) for key in ("store", "ratings", "movies")
             if not str(getattr(d, key)).startswith("s3://")}
    return dataclasses.replace(config, data=dataclasses.replace(d, **paths))


# -- modalities ---------------------------------------------------------------------------------
def modality_of(feature_set: str) -> str:
    return feature_set.split("/", 1)[0]


def _modality_rank(name: str) -> tuple:
    return (MODALITY_ORDER.index(name), "") if name in MODALITY_ORDER else (len(MODALITY_ORDER), name)


def store_modality_sets(available: dict[str, bool]) -> dict[str, list[str]]:
    """The default modality sets of a store: each modality prefix of the sets in ``available``
    (feature set name -> True for a per-item vector, False for a sequence; sets with at least one
    valid row only) stands for its vector sets, or its sequence sets when it has no vector set."""
    by_modality: dict[str, list[str]] = {}
    for name in sorted(available):
        by_modality.setdefault(modality_of(name), []).append(name)
    out = {}
    for mod in sorted(by_modality, key=_modality_rank):
        vectors = [n for n in by_modality[mod] if available[n]]
        out[mod] = vectors or by_modality[mod]
    return out


def merge_modality_sets(defaults: dict[str, list[str]], user: dict[str, list[str]]) -> dict[str, list[str]]:
    """The store's defaults with the user's entries over them: one entry replaces one modality."""
    merged = {k: list(v) for k, v in defaults.items()}
    for mod, sets in user.items():
        merged[mod] = list(sets)
    return merged


def default_grid_modalities(modality_sets: dict[str, list[str]]) -> list[str]:
    """The grid's modality ablation when the config names none: the modalities added one at a
    time in their order (visual, visual+audio, ..., full), so a store with visual, audio and text
    gets the thesis's visual, visual+audio, full and a text-only one gets text, full."""
    names = list(modality_sets)
    return ["+".join(names[:k]) for k in range(1, len(names))] + [FULL]


def resolve_feature_sets(modalities, modality_sets: dict) -> list[str]:
    """Feature set names for a modality spec: "full", "visual+audio", or an explicit list of sets."""
    check_modalities_spec(modalities, "model.modalities")
    if isinstance(modalities, (list, tuple)):
        return list(modalities)
    names = list(modality_sets) if modalities == FULL else modalities.split("+")
    if not names:
        raise CinefuseError("the store holds no feature set with a valid row; run `cinefuse extract` first")
    out: list[str] = []
    for name in names:
        if name not in modality_sets:
            raise CinefuseError(
                f"modality {name!r} (in {modalities!r}) is not in the store nor in [data.modality_sets]; "
                f"known: {', '.join(modality_sets) or 'none'} and {FULL!r}; choose one of them or add "
                f"{name} = [feature sets] under [data.modality_sets]")
        out.extend(s for s in modality_sets[name] if s not in out)
    return out


def resolve_modalities(config: FuseConfig, available: dict[str, bool]) -> FuseConfig:
    """``config`` with its modality sets and grid fixed by what the store holds (``available``,
    as in ``store_modality_sets``): the store's defaults merged with [data.modality_sets], the
    grid's modalities derived when not given, every spec checked against them."""
    sets = merge_modality_sets(store_modality_sets(available), config.data.modality_sets)
    grid = config.grid.modalities if config.grid.modalities is not None else default_grid_modalities(sets)
    model_sets = resolve_feature_sets(config.model.modalities, sets)
    check_inputs(config.objective, model_sets)
    for mods in grid:
        resolve_feature_sets(mods, sets)
    return config.replace(data=dataclasses.replace(config.data, modality_sets=sets),
                          grid=dataclasses.replace(config.grid, modalities=list(grid)))


def describe_modalities(config: FuseConfig, grid: bool) -> str:
    """One line: what each modality stands for, and what this run trains."""
    sets = config.data.modality_sets
    parts = "; ".join(f"{m} = {', '.join(v)}" for m, v in sets.items())
    line = f"modalities: {parts}; {FULL} = {'+'.join(sets)}"
    if grid:
        return f"{line}; grid modalities: {', '.join(modalities_label(m) for m in config.grid.modalities)}"
    return f"{line}; training {modalities_label(config.model.modalities)}"
