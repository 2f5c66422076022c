"""Fuse training throughput: cinefuse (JAX) vs PyTorch written two ways and a thesis-style loop,
the share of XLA's 2048^3 GEMM rate, and the 12-configuration grid vs one-after-another.

    .venv/bin/python benchmarks/bench_fuse.py [--items 2000] [--batch 256] [--repeats 5]
    python benchmarks/bench_fuse.py --device cuda --torch-batches 1024,4096 --out benchmarks/results/fuse-gpu.json

Same model (per-set MLP encoders -> concat-mlp head -> 64-d unit embedding, default sizes), same
batch (256 triplets), same synthetic features (the default feature-set widths: 1280 + 10 visual,
128 audio, 384 text), same loss (triplet, cosine, semi-hard in-batch mining), same device (CPU; with
``--device cuda`` every side runs on the GPU: JAX's GPU backend and PyTorch's CUDA tensors).
- (a) cinefuse: ``GroupTrainer.multi_step`` (batches sampled on the device, ``lax.scan`` of 50 steps).
- (b) idiomatic PyTorch: eager, tensors resident, ``torch.randint`` batches, vectorised mask mining,
  ``torch.optim.AdamW`` with its default (on CPU a Python loop over the parameter tensors; on CUDA
  ``foreach``), float32 matmuls at PyTorch's default precision ("highest": no TF32) and
  ``nn.GELU()`` (exact erf GELU; flax's default, which (a) uses, is the tanh approximation).
- (b') tuned PyTorch, as a performance-minded engineer writes it today: the same model with the
  tanh GELU (the same function as (a)), the forward and loss under ``torch.compile`` (inductor;
  the backward is compiled with it by AOTAutograd), ``AdamW(fused=True)`` (or ``foreach=True``
  where fused is not supported on CPU: the JSON says which), ``clip_grad_norm_(foreach=True)``; on
  CUDA its calls run with ``torch.set_float32_matmul_precision("high")`` (TF32, as JAX's default
  precision on the GPU uses).
- (c) thesis style: numpy batches copied to tensors each step, embeddings copied back to numpy, the
  distance row of each anchor computed vectorised in numpy (as the thesis did) and its negative
  chosen in a per-anchor Python loop, then the loss on the chosen negatives.
- compile time is excluded on every side: each call is warmed up (jit / torch.compile) before the
  timed rounds; the compile seconds are reported apart.
- ratios are per round (the calls run back to back in each round, so load hits them alike) and
  the headline is the MEDIAN over rounds, not the best round.
- the share of XLA's 2048^3 GEMM rate: (a)'s FLOP/s (XLA cost analysis) over a 2048^3 float32 GEMM
  through ``jax.jit``, timed in the same rounds; both frameworks on the same threads
  (``--threads``). It is the rate XLA's CPU GEMM reaches at one large square size, not the
  hardware's peak.
- the GEMM ceiling: the step's own GEMMs (every dense layer's forward, weight and input gradient
  at the benchmark's shapes), each jitted and timed alone, one after another: the share of the
  2048^3 rate that a step doing nothing but those GEMMs would reach.
- a batch sweep (``--batch-sweep``, default 16, 128, 512): (a) and (c) again at other batch sizes;
  16 is the thesis's own batch.
- the grid: 12 configurations as 3 programs (one per modality set) vs 12 programs one after another.
- ``--torch-batches`` (e.g. 1024,4096): (a), (b) and (b') again at other batch sizes, each with its
  own warm-up and compile (``by_batch`` in the JSON, next to the ``--batch`` row).
Pairs/s counts two training pairs (anchor-positive, anchor-negative) per triplet.
The PyTorch code lives here only: cinefuse.fuse never imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = {"visual/effnet": 1280, "visual/lowlevel": 10, "audio/logmel_stats": 128, "text/minilm": 384}
MODALITY_SETS = {"visual": ["visual/effnet", "visual/lowlevel"], "audio": ["audio/logmel_stats"], "text": ["text/minilm"]}
TOKEN, HIDDEN, EMBED, MARGIN, NEG_MAX = 128, 256, 64, 0.2, 0.1
TORCH_DEVICE = "cpu"  # --device: where every PyTorch tensor and model lives


def torch_sync() -> None:
    """Wait for queued CUDA work, so a timed call ends when its work does (no-op on CPU)."""
    if TORCH_DEVICE != "cpu":
        import torch

        torch.cuda.synchronize()


def synthetic(n_items: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, 8, n_items)
    feats = {}
    for name, dim in SETS.items():
        cent = rng.normal(size=(8, dim)).astype(np.float32)
        feats[name] = (cent[clusters] + rng.normal(size=(n_items, dim))).astype(np.float32)
    genre_bits = (1 << clusters).astype(np.uint32)
    trip = []
    for a in range(n_items):
        same = np.flatnonzero(clusters == clusters[a])
        other = np.flatnonzero(clusters != clusters[a])
        for _ in range(4):
            trip.append((a, rng.choice(same), rng.choice(other)))
    return feats, genre_bits, np.array(trip, np.int32), clusters


def interleaved_rounds(calls, rounds: int) -> list[list[float]]:
    """Seconds of each of ``calls`` per round, the calls back to back in every round, so the other
    engineers' load hits them all alike."""
    times = [[] for _ in calls]
    for _ in range(rounds):
        for fn, out in zip(calls, times):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return times


def per_round_ratios(t_num, work_num, t_den, work_den) -> list[float]:
    """Throughput of the first call over the second's, one figure per round (same-round times)."""
    return [(work_num / tn) / (work_den / td) for tn, td in zip(t_num, t_den)]


# -- (a) cinefuse ---------------------------------------------------------------------------------
def cinefuse_trainer(feats, bits, trip, batch, runs_spec, steps_per_call=50, model_kw=None, program="auto"):
    """A ``GroupTrainer`` over ``runs_spec`` [(loss, distance, modalities, feature sets)], which must
    share their feature sets (one grid group: one program)."""
    from cinefuse.fuse.config import DataConfig, FuseConfig, LossConfig, ModelConfig, ObjectiveConfig, TrainConfig
    from cinefuse.fuse.features import FeatureTable
    from cinefuse.fuse.plan import RunSpec
    from cinefuse.fuse.prepare import Prepared
    from cinefuse.fuse.trainer import GroupTrainer

    n = len(next(iter(feats.values())))
    ids = np.array([str(i) for i in range(n)], object)
    table = FeatureTable(ids, dict(feats), {k: None for k in feats})
    arrays = {"ids": ids.astype(str), "train_triplets": trip, "val_pairs": np.concatenate([trip[:128, :2], trip[:128, ::2]]),
              "val_labels": np.r_[np.ones(128, np.int8), np.zeros(128, np.int8)]}
    # the thesis objective (triplets + the [loss] section), no prior head: the model the PyTorch sides train
    config = FuseConfig(data=DataConfig(modality_sets=MODALITY_SETS), objective=ObjectiveConfig(kind="thesis", prior=False),
                        train=TrainConfig(batch_size=batch, steps=10**6, steps_per_call=steps_per_call, eval_every=steps_per_call,
                                          checkpoint_every=steps_per_call, grid_program=program))
    runs = []
    assert len({tuple(sets) for *_, sets in runs_spec}) == 1, "a group shares its feature sets"
    for kind, distance, mods, sets in runs_spec:
        model = ModelConfig(**{"modalities": mods, "token_dim": TOKEN, "hidden": HIDDEN, "embed_dim": EMBED,
                               **(model_kw or {})})
        runs.append(RunSpec(f"{kind}-{distance}-{mods}", LossConfig(kind=kind, distance=distance, margin=None),
                            model, list(sets), [1] * len(sets), objective=config.objective))
    val = min(n, 128)  # validation ranking is never timed; the trainer only needs its arrays
    data = Prepared(ids, table, bits[:, None], arrays, {}, train_rows=np.arange(n), val_rows=np.arange(val),
                    val_likes=np.ones((2, val), bool))
    return GroupTrainer(config, runs, data, Path("."), log=lambda m: None)


def setup_cinefuse(feats, bits, trip, batch, steps_per_call=50):
    """(call, info): ``call()`` runs ``steps_per_call`` training steps and waits for them."""
    import jax

    trainer = cinefuse_trainer(feats, bits, trip, batch, [("triplet", "cosine", "full", list(SETS))], steps_per_call)
    state = trainer.init_state()
    t = time.perf_counter()
    state, _ = trainer.multi_step(state)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t
    flops = None
    try:
        cost = trainer.multi_step.lower(state).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost["flops"])  # XLA counts the scan body once: one step
    except Exception as exc:  # cost analysis is best effort across jax versions
        print(f"cost analysis unavailable: {exc}", file=sys.stderr)
    holder = [state]

    def call():
        holder[0], _ = trainer.multi_step(holder[0])
        jax.block_until_ready(holder[0])

    call()
    return call, {"triplets_per_call": batch * steps_per_call, "steps_per_call": steps_per_call,
                  "compile_s": compile_s, "flops_per_step": flops}


def setup_matmul(n=2048, inner=3):
    """(call, flops): ``call()`` runs ``inner`` float32 n^3 GEMMs through XLA, as cinefuse's do."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()

    def call():
        for _ in range(inner):
            r = f(a)
        r.block_until_ready()

    return call, 2 * n**3 * inner


def bench_gemm_ceiling(batch: int, repeats: int, gemm, gemm_flops):
    """The step's own GEMMs (forward x W^T, weight gradient dY^T x, input gradient dY W of every dense
    layer of the benchmark model; no input gradient for the first layers, whose inputs are data),
    each jitted alone and timed alone, against the 2048^3 GEMM timed in the same rounds. Their
    FLOPs over the sum of their times is what a step made of nothing but these GEMMs, run one after
    another, would reach: the ceiling the kernels themselves put on the share of XLA's 2048^3 GEMM
    rate."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    rows = 3 * batch
    first = [(d, HIDDEN) for d in SETS.values()]
    rest = [(HIDDEN, TOKEN)] * len(SETS) + [(TOKEN * len(SETS), HIDDEN), (HIDDEN, EMBED)]
    fwd = jax.jit(lambda x, w: jax.lax.dot_general(x, w, (((1,), (1,)), ((), ()))))
    d_w = jax.jit(lambda dy, x: jax.lax.dot_general(dy, x, (((0,), (0,)), ((), ()))))
    d_x = jax.jit(lambda dy, w: dy @ w)
    ops, flops = [], 0
    for k, (d_in, d_out) in enumerate(first + rest):
        x, w, dy = (jnp.asarray(rng.normal(size=s).astype(np.float32))
                    for s in ((rows, d_in), (d_out, d_in), (rows, d_out)))
        layer = [(fwd, (x, w)), (d_w, (dy, x))] + ([(d_x, (dy, w))] if k >= len(first) else [])
        ops += layer
        flops += 2 * rows * d_in * d_out * len(layer)   # every GEMM of a layer is rows x d_in x d_out
    for f, args in ops:
        f(*args).block_until_ready()
    t_ops, t_gemm = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        gemm()
        t_gemm.append(time.perf_counter() - t)
        total = 0.0
        for f, args in ops:
            inner = []
            for _ in range(5):
                t = time.perf_counter()
                f(*args).block_until_ready()
                inner.append(time.perf_counter() - t)
            total += statistics.median(inner)
        t_ops.append(total)
    shares = [(flops / to) / (gemm_flops / tg) for to, tg in zip(t_ops, t_gemm)]
    return {"gemms": len(ops), "gemm_flops_per_step": flops, "seconds_one_after_another": statistics.median(t_ops),
            "ceiling_flops": flops / statistics.median(t_ops), "ceiling_share_of_xla_2048_gemm_rate": statistics.median(shares),
            "ceiling_share_per_round": shares}


# -- (b), (c) PyTorch -----------------------------------------------------------------------------
def torch_model(gelu: str = "none"):
    """The benchmark tower; ``gelu="none"`` is PyTorch's default exact GELU, ``"tanh"`` flax's."""
    import torch
    from torch import nn

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.ModuleDict({k.replace("/", "_"): nn.Sequential(nn.Linear(d, HIDDEN), nn.GELU(approximate=gelu),
                                                                         nn.Linear(HIDDEN, TOKEN))
                                      for k, d in SETS.items()})
            self.head = nn.Sequential(nn.Linear(TOKEN * len(SETS), HIDDEN), nn.GELU(approximate=gelu),
                                      nn.Linear(HIDDEN, EMBED))

        def forward(self, xs):
            tokens = [self.enc[k.replace("/", "_")](xs[k]) for k in SETS]
            return nn.functional.normalize(self.head(torch.cat(tokens, dim=1)), dim=1)

    torch.manual_seed(0)
    return Tower().to(TORCH_DEVICE)


def torch_triplet_loss(model, F, genres, items, batch):
    """Triplet cosine loss with vectorised semi-hard in-batch mining (hardest valid as fallback)."""
    import torch

    flat = items.reshape(-1)
    emb = model({k: v[flat] for k, v in F.items()}).reshape(batch, 3, -1)
    a, p = emb[:, 0], emb[:, 1]
    cands = emb.transpose(0, 1).reshape(3 * batch, -1)
    cand_items = items.t().reshape(-1)
    d_ap = 1 - (a * p).sum(1)
    d = 1 - a @ cands.t()
    ga, gc = genres[items[:, 0]], genres[cand_items]
    inter = ga @ gc.t()
    union = ga.sum(1, keepdim=True) + gc.sum(1)[None, :] - inter
    jac = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    valid = (jac <= NEG_MAX) & (cand_items[None, :] != items[:, :1]) & (cand_items[None, :] != items[:, 1:2])
    inf = torch.full_like(d, float("inf"))
    hard = torch.where(valid, d, inf).argmin(1)
    semi_m = valid & (d > d_ap[:, None]) & (d < d_ap[:, None] + MARGIN)
    semi = torch.where(semi_m, d, inf).argmin(1)
    idx = torch.where(semi_m.any(1), semi, hard)
    d_an = d.gather(1, idx[:, None])[:, 0]
    return torch.relu(d_ap - d_an + MARGIN).mean()


def torch_tensors(feats, bits, trip):
    import torch

    F = {k: torch.from_numpy(v).to(TORCH_DEVICE) for k, v in feats.items()}
    genres = torch.from_numpy(((bits[:, None] >> np.arange(32)) & 1).astype(np.float32)).to(TORCH_DEVICE)
    return F, genres, torch.from_numpy(trip.astype(np.int64)).to(TORCH_DEVICE)


def setup_torch_idiomatic(feats, bits, trip, batch, steps=50):
    import torch

    model = torch_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    F, genres, T = torch_tensors(feats, bits, trip)

    def step():
        items = T[torch.randint(0, len(T), (batch,), device=TORCH_DEVICE)]  # (B, 3)
        loss = torch_triplet_loss(model, F, genres, items, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    def call():
        for _ in range(steps):
            step()
        torch_sync()

    for _ in range(3):
        step()
    torch_sync()
    return call, {"triplets_per_call": batch * steps}


def setup_torch_tuned(feats, bits, trip, batch, steps=50):
    """(b'): tanh GELU, ``torch.compile`` of forward + loss (+ its backward), fused AdamW."""
    import torch

    model = torch_model(gelu="tanh")
    params = list(model.parameters())
    try:
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, fused=True)
        optimizer = "AdamW(fused=True)"
    except (RuntimeError, ValueError) as exc:  # fused AdamW on CPU needs a recent torch
        print(f"fused AdamW unavailable on CPU ({exc}); using foreach=True", file=sys.stderr)
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4, foreach=True)
        optimizer = "AdamW(foreach=True)"
    F, genres, T = torch_tensors(feats, bits, trip)
    torch._dynamo.reset()  # a fresh, static-shape compile for this batch size (no dynamic-shape recompile)
    loss_fn = torch.compile(lambda items: torch_triplet_loss(model, F, genres, items, batch), fullgraph=True)
    precision = "high" if TORCH_DEVICE != "cpu" else torch.get_float32_matmul_precision()

    def step():
        items = T[torch.randint(0, len(T), (batch,), device=TORCH_DEVICE)]
        loss = loss_fn(items)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()

    def call():
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(precision)  # TF32 on CUDA for (b') only; (b) keeps the default
        try:
            for _ in range(steps):
                step()
            torch_sync()
        finally:
            torch.set_float32_matmul_precision(before)

    t = time.perf_counter()
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    step()                                       # compiles forward and backward
    torch_sync()
    compile_s = time.perf_counter() - t
    for _ in range(3):
        step()
    torch_sync()
    torch.set_float32_matmul_precision(before)
    return call, {"triplets_per_call": batch * steps, "compile_s": compile_s, "optimizer": optimizer,
                  "torch_compile": "torch.compile(forward + loss, fullgraph=True), inductor, default mode",
                  "gelu": "tanh", "float32_matmul_precision": precision}


def setup_torch_thesis(feats, bits, trip, batch, steps=2):
    import torch

    model = torch_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    genres = ((bits[:, None] >> np.arange(32)) & 1).astype(np.float32)  # multi-hot genre rows

    def step():
        items = trip[rng.integers(0, len(trip), batch)]                   # numpy batch on the host
        flat = items.reshape(-1)
        xs = {k: torch.tensor(v[flat]).to(TORCH_DEVICE) for k, v in feats.items()}  # host -> device copy each batch
        emb = model(xs).reshape(batch, 3, -1)
        e = emb.detach().cpu().numpy()                                     # device -> host for mining
        cands = np.concatenate([e[:, 0], e[:, 1], e[:, 2]])
        cand_items = np.concatenate([items[:, 0], items[:, 1], items[:, 2]])
        cand_genres = genres[cand_items]
        chosen = []
        for i in range(batch):                                             # per-anchor Python selection
            a = items[i, 0]
            d_ap = 1 - float(np.dot(e[i, 0], e[i, 1]))
            d = 1 - cands @ e[i, 0]                                        # the anchor's distance row, vectorised
            inter = cand_genres @ genres[a]
            union = cand_genres.sum(1) + genres[a].sum() - inter
            jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            valid = (jac <= NEG_MAX) & (cand_items != a) & (cand_items != items[i, 1])
            semi = np.flatnonzero(valid & (d > d_ap) & (d < d_ap + MARGIN))
            hard = np.flatnonzero(valid)
            if len(semi):
                chosen.append(int(semi[np.argmin(d[semi])]))
            elif len(hard):
                chosen.append(int(hard[np.argmin(d[hard])]))
            else:
                chosen.append(2 * batch + i)
        all_emb = torch.cat([emb[:, 0], emb[:, 1], emb[:, 2]])
        neg = all_emb[torch.tensor(chosen, device=TORCH_DEVICE)]
        d_ap = 1 - (emb[:, 0] * emb[:, 1]).sum(1)
        d_an = 1 - (emb[:, 0] * neg).sum(1)
        loss = torch.relu(d_ap - d_an + MARGIN).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()

    def call():
        for _ in range(steps):
            step()

    step()
    return call, {"triplets_per_call": batch * steps}


def bench_torch_batches(feats, bits, trip, batches, repeats) -> dict:
    """(a), (b) and (b') at each of ``batches``: each side set up (and compiled) afresh at that
    batch, then timed in interleaved rounds; per-round ratios, medians as headlines."""
    import gc

    out = {}
    for batch in batches:
        a_call, a = setup_cinefuse(feats, bits, trip, batch)
        b_call, b = setup_torch_idiomatic(feats, bits, trip, batch)
        bt_call, bt = setup_torch_tuned(feats, bits, trip, batch)
        t_a, t_b, t_bt = interleaved_rounds([a_call, b_call, bt_call], repeats)
        ab = per_round_ratios(t_a, a["triplets_per_call"], t_b, b["triplets_per_call"])
        abt = per_round_ratios(t_a, a["triplets_per_call"], t_bt, bt["triplets_per_call"])
        row = {"pairs_per_s_cinefuse": 2 * a["triplets_per_call"] / statistics.median(t_a),
               "pairs_per_s_idiomatic_pytorch": 2 * b["triplets_per_call"] / statistics.median(t_b),
               "pairs_per_s_tuned_pytorch": 2 * bt["triplets_per_call"] / statistics.median(t_bt),
               "ratio_vs_idiomatic_pytorch": statistics.median(ab), "ratio_vs_tuned_pytorch": statistics.median(abt),
               "ratio_vs_idiomatic_pytorch_per_round": ab, "ratio_vs_tuned_pytorch_per_round": abt,
               "cinefuse_compile_s": a["compile_s"], "tuned_pytorch_compile_s": bt["compile_s"]}
        out[str(batch)] = row
        print(f"batch {batch}: (a) {row['pairs_per_s_cinefuse']:.0f} pairs/s, a/b {row['ratio_vs_idiomatic_pytorch']:.2f}, "
              f"a/b' {row['ratio_vs_tuned_pytorch']:.2f}", flush=True)
        del a_call, b_call, bt_call
        gc.collect()
    return out


# -- grid vs sequential ---------------------------------------------------------------------------
def grid_specs():
    specs = []
    for mods in ("visual", "visual+audio", "full"):
        sets = [s for m in ("visual", "audio", "text") if m in mods.split("+") or mods == "full"
                for s in MODALITY_SETS[m]]
        specs.append([(kind, distance, mods, sets) for kind in ("pair", "triplet") for distance in ("cosine", "euclidean")])
    return specs  # three groups (one per modality set) of four {pair, triplet} x {cosine, euclidean}


def bench_grid(feats, bits, trip, batch, repeats, steps_per_call=50):
    """The 12 configurations as 3 vmapped programs (one per modality set) vs 12 programs one after
    another; steady-state seconds per ``steps_per_call`` steps of every configuration, medians of
    ``repeats`` rounds in which grid and sequential calls alternate (the load hits both alike)."""
    import jax

    def prepared(group):
        trainer = cinefuse_trainer(feats, bits, trip, batch, group, steps_per_call)
        state = trainer.init_state()
        t = time.perf_counter()
        state, _ = trainer.multi_step(state)
        jax.block_until_ready(state)
        return [trainer, state], time.perf_counter() - t

    def run(holder):
        holder[1], _ = holder[0].multi_step(holder[1])
        jax.block_until_ready(holder[1])

    groups = grid_specs()
    grid = [prepared(g) for g in groups]
    seq = [prepared([spec]) for g in groups for spec in g]
    grid_times, seq_times = interleaved_rounds(
        [lambda: [run(holder) for holder, _ in grid], lambda: [run(holder) for holder, _ in seq]], repeats)
    grid_s, seq_s = statistics.median(grid_times), statistics.median(seq_times)
    grid_compile, seq_compile = sum(c for _, c in grid), sum(c for _, c in seq)
    return {"steps_per_call": steps_per_call, "grid_seconds_per_call": grid_s, "sequential_seconds_per_call": seq_s,
            "ratio_steady_state": seq_s / grid_s, "grid_compile_s": grid_compile, "sequential_compile_s": seq_compile,
            "ratio_including_compile_1000_steps":
                (seq_compile + (1000 / steps_per_call) * seq_s) / (grid_compile + (1000 / steps_per_call) * grid_s)}


def measure_sides(args, feats, bits, trip, out: dict) -> None:
    """(a), (b), (b') and (c) at ``--batch``, the GEMM share and ceiling, the batch sweep and
    ``--torch-batches``: their figures into ``out``."""
    gemm, gemm_flops = setup_matmul(inner=args.gemm_inner)
    a_call, a = setup_cinefuse(feats, bits, trip, args.batch)
    b_call, b = setup_torch_idiomatic(feats, bits, trip, args.batch)
    bt_call, bt = setup_torch_tuned(feats, bits, trip, args.batch)
    c_call, c_info = setup_torch_thesis(feats, bits, trip, args.batch)
    t_gemm, t_a, t_b, t_bt, t_c = interleaved_rounds([gemm, a_call, b_call, bt_call, c_call], args.repeats)
    tps = lambda info, t: info["triplets_per_call"] / statistics.median(t)  # noqa: E731
    a_tps, b_tps, bt_tps, c_tps = tps(a, t_a), tps(b, t_b), tps(bt, t_bt), tps(c_info, t_c)
    ab = per_round_ratios(t_a, a["triplets_per_call"], t_b, b["triplets_per_call"])
    abt = per_round_ratios(t_a, a["triplets_per_call"], t_bt, bt["triplets_per_call"])
    ac = per_round_ratios(t_a, a["triplets_per_call"], t_c, c_info["triplets_per_call"])
    print(f"(a) cinefuse: {a_tps:.0f} triplets/s ({2 * a_tps:.0f} pairs/s)", flush=True)
    print(f"(b) idiomatic PyTorch: {b_tps:.0f} triplets/s; a/b median over rounds {statistics.median(ab):.2f}",
          flush=True)
    print(f"(b') tuned PyTorch ({bt['optimizer']}, torch.compile): {bt_tps:.0f} triplets/s; a/b' median over "
          f"rounds {statistics.median(abt):.2f}", flush=True)
    print(f"(c) thesis-style PyTorch: {c_tps:.1f} triplets/s; a/c {statistics.median(ac):.1f}", flush=True)
    rate_median = gemm_flops / statistics.median(t_gemm)
    rate_best = gemm_flops / min(t_gemm)
    flops = a["flops_per_step"]
    achieved = flops * a["steps_per_call"] / statistics.median(t_a) if flops else None
    # per round: (a)'s FLOP/s over the GEMM's FLOP/s measured seconds before; median over rounds
    shares = [(flops * a["steps_per_call"] / ta) / (gemm_flops / tg) for ta, tg in zip(t_a, t_gemm)] if flops else []
    share = statistics.median(shares) if shares else None
    out.update({
        "pairs_per_s_cinefuse": 2 * a_tps, "pairs_per_s_idiomatic_pytorch": 2 * b_tps,
        "pairs_per_s_tuned_pytorch": 2 * bt_tps, "pairs_per_s_thesis_style": 2 * c_tps,
        "ratio_vs_idiomatic_pytorch": statistics.median(ab), "ratio_vs_tuned_pytorch": statistics.median(abt),
        "ratio_vs_thesis_style": statistics.median(ac),
        "ratio_vs_idiomatic_pytorch_per_round": ab, "ratio_vs_tuned_pytorch_per_round": abt,
        "ratio_vs_thesis_style_per_round": ac,
        "ratio_note": "per-round throughput ratios (the calls back to back in each round); headline = median over rounds",
        "idiomatic_pytorch": "eager, nn.GELU() (exact erf), torch.optim.AdamW default ("
                             + ("CPU: per-tensor loop" if args.device == "cpu" else "CUDA: foreach") + ")",
        "tuned_pytorch": {k: bt[k] for k in ("optimizer", "torch_compile", "gelu", "float32_matmul_precision")} | {
            "clip": "clip_grad_norm_(foreach=True)", "compile_s": bt["compile_s"]},
        "xla_2048_gemm_flops": rate_median, "xla_2048_gemm_flops_best_round": rate_best,
        "cinefuse_flops_per_step": flops, "cinefuse_achieved_flops": achieved,
        "share_of_xla_2048_gemm_rate": share, "share_of_xla_2048_gemm_rate_per_round": shares,
        "cinefuse_compile_s": a["compile_s"], "steps_per_call": a["steps_per_call"],
        "gemm_inner": args.gemm_inner,
        "gemm_note": f"XLA's 2048^3 GEMM rate: a 2048^3 float32 GEMM through jax.jit, {args.gemm_inner} per round, timed in the "
                     "same rounds as (a); share = (a)'s FLOP/s (XLA cost analysis of one step x steps / s) over "
                     "that rate, median over rounds. It is what XLA's GEMM reaches at one large square size "
                     "(on the GPU at JAX's default float32 matmul precision, which allows TF32), not the hardware's peak.",
    })
    print(f"XLA's 2048^3 GEMM rate {rate_median / 1e9:.1f} GFLOP/s (median; best {rate_best / 1e9:.1f}); cinefuse "
          f"{achieved / 1e9:.1f} GFLOP/s = {share:.2f} of it", flush=True)
    ceiling = bench_gemm_ceiling(args.batch, args.repeats, gemm, gemm_flops)
    out["gemm_ceiling"] = ceiling
    out["share_of_gemm_ceiling"] = share / ceiling["ceiling_share_of_xla_2048_gemm_rate"] if share else None
    print(f"the step's {ceiling['gemms']} GEMMs alone, one after another: {ceiling['ceiling_flops'] / 1e9:.1f} GFLOP/s = "
          f"{ceiling['ceiling_share_of_xla_2048_gemm_rate']:.2f} of XLA's 2048^3 rate (cinefuse's step: "
          f"{out['share_of_gemm_ceiling']:.2f} of that ceiling)", flush=True)
    if args.batch_sweep:
        sweep = {}
        for b in args.batch_sweep:
            call_ab, info_ab = setup_cinefuse(feats, bits, trip, b)
            # about 512 triplets per (c) call at every batch, so small batches are not timed on one step
            call_cb, info_cb = setup_torch_thesis(feats, bits, trip, b, steps=max(1, 512 // b))
            ta_b, tc_b = interleaved_rounds([call_ab, call_cb], args.repeats)
            ratios = per_round_ratios(ta_b, info_ab["triplets_per_call"], tc_b, info_cb["triplets_per_call"])
            a_b = info_ab["triplets_per_call"] / statistics.median(ta_b)
            c_b = info_cb["triplets_per_call"] / statistics.median(tc_b)
            sweep[str(b)] = {"triplets_per_s_cinefuse": a_b, "triplets_per_s_thesis_style": c_b,
                             "ratio_vs_thesis_style": statistics.median(ratios), "ratio_per_round": ratios}
            print(f"batch {b}: (a) {a_b:.0f} triplets/s, (c) {c_b:.1f} triplets/s, a/c {statistics.median(ratios):.1f}",
                  flush=True)
        out["ratio_vs_thesis_style_by_batch"] = sweep
    if args.torch_batches:
        by_batch = {str(args.batch): {k: out[k] for k in (
            "pairs_per_s_cinefuse", "pairs_per_s_idiomatic_pytorch", "pairs_per_s_tuned_pytorch",
            "ratio_vs_idiomatic_pytorch", "ratio_vs_tuned_pytorch", "ratio_vs_idiomatic_pytorch_per_round",
            "ratio_vs_tuned_pytorch_per_round")}}
        by_batch.update(bench_torch_batches(feats, bits, trip, [b for b in args.torch_batches if b != args.batch],
                                            args.repeats))
        out["by_batch"] = by_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="threads for both PyTorch and XLA's CPU pool (default: every core)")
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--only-grid", action="store_true",
                        help="measure the grid alone (no (a)/(b)/(c) figures; e.g. a separate, separately timed run)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuse.json",
                        help="where to write the JSON (default benchmarks/results/fuse.json)")
    parser.add_argument("--batch-sweep", type=lambda v: [int(x) for x in v.split(",") if x], default=[16, 128, 512],
                        help="other batch sizes at which to measure (a) and (c) again, comma-separated "
                             "(16 is the thesis's own batch; default 16,128,512; '' for none)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where both frameworks run: cpu (JAX forced to its CPU backend) or cuda (JAX's GPU "
                             "backend and PyTorch's CUDA device; both must see the GPU)")
    parser.add_argument("--torch-batches", type=lambda v: [int(x) for x in v.split(",") if x], default=[],
                        help="other batch sizes at which to measure (a), (b) and (b') again, comma-separated "
                             "(e.g. 1024,4096; default none)")
    parser.add_argument("--gemm-inner", type=int, default=3,
                        help="2048^3 GEMMs per timed GEMM call (default 3; a GPU wants more, e.g. 50)")
    args = parser.parse_args()
    # the same thread count for both frameworks; XLA:CPU sizes its pool from the cores it may use
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:args.threads]))
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import torch

    global TORCH_DEVICE
    TORCH_DEVICE = args.device
    if args.device == "cuda" and not (torch.cuda.is_available() and jax.default_backend() == "gpu"):
        sys.exit(f"--device cuda: torch.cuda.is_available() is {torch.cuda.is_available()}, "
                 f"jax.default_backend() is {jax.default_backend()!r}; both must see the GPU")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    feats, bits, trip, _ = synthetic(args.items)
    out = {"date": date.today().isoformat(), "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
           "threads_jax_and_torch": args.threads, "torch_threads": torch.get_num_threads(),
           "batch_triplets": args.batch, "items": args.items, "model": "concat-mlp, token 128, hidden 256, embed 64",
           "loss": "triplet cosine semi-hard", "repeats": args.repeats, "torch_device": args.device,
           "versions": {"jax": jax.__version__, "torch": torch.__version__},
           "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
           "torch_float32_matmul_precision": torch.get_float32_matmul_precision()}
    if args.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    if not args.only_grid:
        measure_sides(args, feats, bits, trip, out)
    if not args.skip_grid:
        g = bench_grid(feats, bits, trip, args.batch, max(3, args.repeats // 2), steps_per_call=20)
        out["grid"] = g
        out["ratio_grid_vs_sequential"] = g["ratio_steady_state"]
        print(f"grid of 12 as 3 programs vs 12 one after another: {g['ratio_steady_state']:.2f}x steady state, "
              f"{g['ratio_including_compile_1000_steps']:.2f}x for 1000 steps including compile", flush=True)
    out["load_average_before"] = [round(x, 2) for x in load_before]
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    worst = max(out["load_average_before"][0], out["load_average_after"][0])
    out["load_note"] = (f"1-minute load average {out['load_average_before'][0]} at start, "
                        f"{out['load_average_after'][0]} at end, on {os.cpu_count()} cores shared with other jobs: "
                        + ("loaded, figures noisy" if worst > (os.cpu_count() or 1) else "quiet enough"))
    path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
