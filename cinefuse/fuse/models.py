"""Fusion Siamese towers (Flax linen): one encoder per feature set, a fusion head, a unit embedding.

Each feature set becomes one token of width ``token_dim``, through its own encoder, named after the
set (``param_names``: ``enc_text_minilm``), and the tokens are fused in the sets' name order: a
model's initial parameters depend on the seed and the sets' names only, never on the order in which
a configuration lists them (``token_mask`` follows the listed order and is reordered with them):
- a matrix set (N, D): MLP D -> hidden -> token_dim;
- a sequence set (N, T, D) (frames, audio windows): pooled over its valid timesteps (``mean``, or
  ``attention`` pooling with a learned score), then the MLP; sets named in ``conv_sets`` (the
  log-mel spectrogram sequence) first go through a small 1-D convolutional encoder over time.

Heads fuse the tokens into the embedding:
- ``concat-mlp``: concatenated tokens -> MLP (the thesis's concatenation head);
- ``ln-linear``: concatenated tokens -> LayerNorm -> linear;
- ``cross-attention``: visual tokens query the audio and text tokens (plus one learned null token,
  so a visual-only model is well defined), mean over queries (the thesis's hybrid head);
- ``gated``: a softmax gate over tokens weights their sum, then an MLP.

Items that miss a modality (docs/OBJECTIVES.md, "Items that miss a modality"): ``lengths`` holds,
per set, each item's count of valid entries (timesteps of a sequence; 1 or 0 for a vector set,
``features.clean_table``); a set is absent for an item where it is 0 (a set missing from
``lengths`` is present for every item). An absent set's input is zeroed before its encoder and its
token replaced by the set's learnt ``absent`` token (zeros at init), so what the item does not
hold never reaches the output; the attention heads also exclude it from their keys, queries and
gate. For an item holding every set the mask is all ones and changes nothing.

``token_mask`` (one 0/1 per feature set) switches sets off without changing shapes (kept for
ablations by hand; the grid instead builds each modality set's own tower, so nothing is computed
for a set a configuration does not use). Masked tokens are zero in the concatenation, excluded
from attention keys and from the gate. Sequence padding (timesteps at or beyond ``lengths``) never
reaches the output: it is zeroed around the convolutions and excluded from pooling.
The output is (normalised, raw): the L2-normalised embedding and the projection before it.

Objective heads (``fuse.objectives``, ``fuse.copref``): with ``prior`` the tower also holds a scalar item-prior
head, an MLP over the concatenated tokens with the gradient stopped at the tokens, so the prior
is learnt from what the encoders already see but never reshapes the embedding (a model with and
without the prior has the same embedding objective); ``apply(..., with_prior=True)`` returns
(normalised, raw, prior). With ``teacher_dim`` > 0 it holds ``distill_kernel`` (teacher_dim,
embed_dim), the learnt linear map of the distill objective from the embedding to the teacher's
item vectors.

Every dense layer is a ``Linear``: its kernel is stored (out, in), the layout of the weight
gradient dY^T X that backpropagation computes, so the gradient reaches the optimiser without a
transpose copy, and the forward GEMM reads each output's weights contiguously. On 2-core CPUs this
made the training step about 7% faster than flax's (in, out) ``nn.Dense``
(benchmarks/results/fuse.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from cinefuse.errors import CinefuseError
from cinefuse.fuse import objectives


@dataclass(frozen=True)
class SetSpec:
    name: str
    modality: str
    sequence: bool
    conv: bool


class Linear(nn.Module):
    """y = x W^T + b with W stored (features, in) (LeCun-normal, like ``nn.Dense``), b zeros."""
    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(in_axis=1, out_axis=0),
                            (self.features, x.shape[-1]))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (1,)), ((), ()))) + bias


def _masked_mean(x, lengths):
    t = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
    w = t.astype(x.dtype)[..., None]
    return jnp.sum(x * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def presence(sets, lengths: dict, batch: int):
    """(B, S) bool: which of ``sets`` each item holds (``lengths[name] > 0``; a set without
    lengths is present for every item)."""
    return jnp.stack([lengths[s.name] > 0 if s.name in lengths else jnp.ones((batch,), bool) for s in sets], axis=1)


class SetEncoder(nn.Module):
    """One feature set's token; ``present`` (B,) bool: items without the set get the learnt
    ``absent`` token, their input zeroed first (None: every item holds it)."""
    spec: SetSpec
    hidden: int
    token_dim: int
    pooling: str

    @nn.compact
    def __call__(self, x, lengths=None, present=None):
        if present is not None:
            x = jnp.where(present.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0.0)   # not x * 0: NaN * 0 is NaN
        if self.spec.sequence:
            if lengths is None:
                lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
            t = jnp.arange(x.shape[1])[None, :] < lengths[:, None]          # (B, T) valid timesteps
            if self.spec.conv:
                # zero the padding before and between the convolutions: a padded row then encodes
                # exactly as the unpadded sequence would with SAME zero padding
                keep = t.astype(x.dtype)[..., None]
                x = x * keep
                x = nn.gelu(nn.Conv(self.hidden // 2, kernel_size=(5,), padding="SAME", name="conv1")(x)) * keep
                x = nn.gelu(nn.Conv(self.hidden // 2, kernel_size=(5,), padding="SAME", name="conv2")(x)) * keep
            if self.pooling == "attention":
                score = Linear(1, name="pool_score")(jnp.tanh(Linear(self.hidden // 2, name="pool_hidden")(x)))[..., 0]
                score = jnp.where(t, score, -1e9)
                x = jnp.sum(jax.nn.softmax(score, axis=1)[..., None] * x, axis=1)
            else:
                x = _masked_mean(x, lengths)
        x = nn.gelu(Linear(self.hidden, name="hidden")(x))
        token = Linear(self.token_dim, name="token")(x)
        absent = self.param("absent", nn.initializers.zeros_init(), (self.token_dim,))  # made last: the
        # other parameters' initial values do not depend on it
        return token if present is None else jnp.where(present[:, None], token, absent[None, :])


class FusionTower(nn.Module):
    sets: tuple[SetSpec, ...]
    head: str = "concat-mlp"
    hidden: int = 256
    token_dim: int = 128
    embed_dim: int = 64
    pooling: str = "mean"
    attention_heads: int = 4
    prior: bool = False
    teacher_dim: int = 0

    @nn.compact
    def __call__(self, inputs: dict, lengths: dict, token_mask, with_prior: bool = False):
        order = sorted(range(len(self.sets)), key=lambda k: self.sets[k].name)
        sets = [self.sets[k] for k in order]                                # name order: see the docstring
        token_mask = jnp.asarray(token_mask)[jnp.array(order)]
        names = param_names([s.name for s in sets])
        b = inputs[sets[0].name].shape[0]
        present = presence(sets, lengths, b)                                # (B, S) bool
        tokens = jnp.stack([
            SetEncoder(s, self.hidden, self.token_dim, self.pooling, name=names[s.name])(
                inputs[s.name], lengths.get(s.name), present[:, i])
            for i, s in enumerate(sets)], axis=1)                           # (B, S, token_dim)
        mask = token_mask.astype(tokens.dtype)                              # (S,)
        tokens = tokens * mask[None, :, None]
        item_mask = present & (mask[None, :] > 0)                           # (B, S): used and held
        _, s, _ = tokens.shape
        if self.head == "concat-mlp":
            x = nn.gelu(Linear(self.hidden, name="head_hidden")(tokens.reshape(b, -1)))
            raw = Linear(self.embed_dim, name="head_out")(x)
        elif self.head == "ln-linear":
            x = nn.LayerNorm(name="head_norm")(tokens.reshape(b, -1))
            raw = Linear(self.embed_dim, name="head_out")(x)
        elif self.head == "gated":
            logits = Linear(s, name="gate")(tokens.reshape(b, -1))
            logits = jnp.where(item_mask, logits, -1e9)
            gate = jax.nn.softmax(logits, axis=-1)
            fused = jnp.sum(gate[..., None] * tokens, axis=1)
            raw = Linear(self.embed_dim, name="head_out")(nn.gelu(Linear(self.hidden, name="head_hidden")(fused)))
        elif self.head == "cross-attention":
            is_visual = jnp.array([sp.modality == "visual" for sp in sets])
            null = self.param("null_token", nn.initializers.normal(0.02), (1, 1, self.token_dim))
            keys = jnp.concatenate([jnp.broadcast_to(null, (b, 1, self.token_dim)), tokens], axis=1)
            key_ok = jnp.concatenate([jnp.ones((b, 1), bool), (~is_visual)[None, :] & item_mask], axis=1)
            # an item holding no visual set: its other tokens query themselves, so the head still works
            visual = is_visual[None, :] & item_mask
            query_ok = jnp.where(jnp.any(visual, axis=1, keepdims=True), visual, item_mask)   # (B, S)
            attn_mask = (query_ok[:, :, None] & key_ok[:, None, :])[:, None]    # (B, 1, S, S + 1)
            attended = nn.MultiHeadDotProductAttention(num_heads=self.attention_heads, name="cross_attn")(
                tokens, keys, mask=attn_mask)
            x = nn.LayerNorm(name="head_norm")(tokens + attended)
            q = query_ok.astype(x.dtype)[:, :, None]
            pooled = jnp.sum(x * q, axis=1) / jnp.maximum(jnp.sum(q, axis=1), 1.0)
            raw = Linear(self.embed_dim, name="head_out")(nn.gelu(Linear(self.hidden, name="head_hidden")(pooled)))
        else:  # validated in config; kept for direct users of the module
            raise ValueError(f"unknown head {self.head!r}")
        norm = raw * jax.lax.rsqrt(jnp.maximum(jnp.sum(raw * raw, axis=-1, keepdims=True), 1e-12))
        if self.teacher_dim:
            self.param("distill_kernel", nn.initializers.lecun_normal(in_axis=1, out_axis=0),
                       (self.teacher_dim, self.embed_dim))
        if self.prior:
            flat = jax.lax.stop_gradient(tokens.reshape(b, -1))
            prior = Linear(1, name="prior_out")(nn.gelu(Linear(self.hidden, name="prior_hidden")(flat)))[:, 0]
            if with_prior:
                return norm, raw, prior
        return norm, raw


def param_names(set_names: list[str]) -> dict[str, str]:
    """Each feature set's encoder name, ``enc_<the set name, runs of other characters than
    letters and digits as one "_">`` (``visual/mmtf_aesthetic`` -> ``enc_visual_mmtf_aesthetic``);
    two sets with the same name so formed are one clear error."""
    out, seen = {}, {}
    for name in set_names:
        safe = "enc_" + re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
        if safe in seen:
            raise CinefuseError(f"feature sets {seen[safe]!r} and {name!r} have the same parameter name {safe!r}; "
                                "rename one of them")
        out[name], seen[safe] = safe, name
    return out


def set_specs(names: list[str], shapes: dict, conv_sets: list[str]) -> tuple[SetSpec, ...]:
    return tuple(SetSpec(n, n.split("/", 1)[0], len(shapes[n]) == 2, n in conv_sets and len(shapes[n]) == 2)
                 for n in names)


def build_tower(model_cfg, specs: tuple[SetSpec, ...], objective=None) -> FusionTower:
    """The tower of ``model_cfg``; ``objective`` (an ``ObjectiveConfig``, None: none) adds its
    heads: the prior head when ``objective.prior``, the distill kernel for ``distill``."""
    param_names([s.name for s in specs])  # two sets named alike: the error before anything is traced
    return FusionTower(sets=specs, head=model_cfg.head, hidden=model_cfg.hidden, token_dim=model_cfg.token_dim,
                       embed_dim=model_cfg.embed_dim, pooling=model_cfg.pooling,
                       attention_heads=model_cfg.attention_heads,
                       prior=bool(objective is not None and objective.prior),
                       teacher_dim=objectives.of(objective).kernel_dim(objective) if objective is not None else 0)
