"""Transformer building blocks and the encoder classifier with LN placement [Tomihari25, §4.7, Table 2].

Blocks (shared by `GPT`, `ViT` and `TransformerEncoder`):

* `SelfAttention`: separate ``query``, ``key``, ``value``, ``out`` `nnx.Linear` modules (seed
  001 treats Q, K, V as separate Hessian blocks), hand-written softmax attention so Hessians
  are exact (no fused kernels; [Zhang24, App. D.1]), returns ``(y, probs)`` with
  ``probs: (B, H, S, S)``.
* `FeedForward`: ``fc_in`` → GELU → ``fc_out``.
* `TransformerBlock` with ``norm``:

  - ``"pre"``  (Pre-LN):  ``x ← x + Attn(LN(x));  x ← x + FFN(LN(x))``, final LN after the stack;
  - ``"post"`` (Post-LN): ``x ← LN(x + Attn(x));  x ← LN(x + FFN(x))`` (BERT/RoBERTa);
  - ``"none"`` (No-LN):   ``x ← x + Attn(x);      x ← x + FFN(x)``, and no norm parameters at all.

  These are the three Jacobians of [Tomihari25, eqs. (5)–(6)].

Attention probabilities: every model's ``__call__(x, ..., return_attention=True)`` returns
``(outputs, attn)`` with ``attn: (num_layers, B, H, S, S)`` (an explicit return: jit- and
`functional`-friendly, no mutable collections), ready for the entropy ratio of [Tomihari25, App. F.5].

Parameter paths: ``embed/embedding``, ``pos_embed/embedding``,
``layers/{i}/attn/{query,key,value,out}/{kernel,bias}``, ``layers/{i}/mlp/{fc_in,fc_out}/...``,
``layers/{i}/{norm_attn,norm_mlp}/{scale,bias}``, ``final_norm/...``, ``head/...``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["SelfAttention", "FeedForward", "TransformerBlock", "TransformerEncoder", "NORMS", "run_layers"]

NORMS = ("pre", "post", "none")


def embed(num_embeddings: int, features: int, *, rngs: nnx.Rngs) -> nnx.Embed:
    """`nnx.Embed` whose lookups follow the parameter dtype (float64 params -> float64 activations).

    `nnx.Embed` freezes its compute dtype to the init dtype (float32); float64 Hessian
    references need the whole forward pass to follow the params' dtype.
    """
    e = nnx.Embed(num_embeddings, features, rngs=rngs)
    e.dtype = None
    return e


def _check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


class SelfAttention(nnx.Module):
    """Multi-head self-attention with separate Q, K, V, out projections; returns ``(y, probs)``."""

    def __init__(self, d_model: int, num_heads: int, *, use_bias: bool = True, rngs: nnx.Rngs):
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.num_heads = int(num_heads)
        self.query = nnx.Linear(d_model, d_model, use_bias=use_bias, rngs=rngs)
        self.key = nnx.Linear(d_model, d_model, use_bias=use_bias, rngs=rngs)
        self.value = nnx.Linear(d_model, d_model, use_bias=use_bias, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``mask``: bool, broadcastable to (B, H, S, S), True where attention is allowed."""
        b, s, d = x.shape
        h = self.num_heads
        split = lambda t: t.reshape(b, s, h, d // h)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(d // h, q.dtype))
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
        probs = jax.nn.softmax(logits, axis=-1)
        y = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, s, d)
        return self.out(y), probs


class FeedForward(nnx.Module):
    """``fc_out(GELU(fc_in(x)))``."""

    def __init__(self, d_model: int, d_ff: int, *, use_bias: bool = True, rngs: nnx.Rngs, d_out: int | None = None):
        self.fc_in = nnx.Linear(d_model, d_ff, use_bias=use_bias, rngs=rngs)
        self.fc_out = nnx.Linear(d_ff, d_model if d_out is None else d_out, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc_out(jax.nn.gelu(self.fc_in(x)))


class TransformerBlock(nnx.Module):
    """Attention + feed-forward with residuals; ``norm`` in ``{"pre", "post", "none"}`` (see module doc)."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, norm: str = "pre", use_bias: bool = True,
                 rngs: nnx.Rngs):
        self.norm = _check_norm(norm)
        self.attn = SelfAttention(d_model, num_heads, use_bias=use_bias, rngs=rngs)
        self.mlp = FeedForward(d_model, d_ff, use_bias=use_bias, rngs=rngs)
        if norm != "none":
            self.norm_attn = nnx.LayerNorm(d_model, use_bias=use_bias, rngs=rngs)
            self.norm_mlp = nnx.LayerNorm(d_model, use_bias=use_bias, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        if self.norm == "pre":
            y, probs = self.attn(self.norm_attn(x), mask)
            x = x + y
            x = x + self.mlp(self.norm_mlp(x))
        elif self.norm == "post":
            y, probs = self.attn(x, mask)
            x = self.norm_attn(x + y)
            x = self.norm_mlp(x + self.mlp(x))
        else:
            y, probs = self.attn(x, mask)
            x = x + y
            x = x + self.mlp(x)
        return x, probs


def run_layers(layers, x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Apply the blocks in order; returns ``(x, attn)`` with ``attn: (num_layers, B, H, S, S)``."""
    probs = []
    for layer in layers:
        x, p = layer(x, mask)
        probs.append(p)
    return x, jnp.stack(probs)


def make_blocks(num_layers: int, d_model: int, num_heads: int, d_ff: int, norm: str, use_bias: bool,
                rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([TransformerBlock(d_model, num_heads, d_ff, norm=norm, use_bias=use_bias, rngs=rngs)
                     for _ in range(int(num_layers))])


class TransformerEncoder(nnx.Module):
    """Token-sequence classifier (BERT/RoBERTa-like encoder; [Tomihari25, §4.7, Table 2]).

    ``__call__(tokens (B, S) int, *, mask=None, return_attention=False)`` → logits (B, num_classes).
    ``mask`` (B, S) bool marks real (non-padding) tokens: padding keys are not attended to and
    are left out of the mean pooling. ``pool="mean"`` (default) or ``"first"`` (the
    ``<s>``/CLS position, as RoBERTa's classifier). ``final_norm`` exists only for Pre-LN.
    """

    def __init__(
        self,
        *,
        vocab_size: int = 32,
        max_len: int = 16,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int | None = None,
        num_classes: int = 2,
        norm: str = "pre",
        pool: str = "mean",
        use_bias: bool = True,
        rngs: nnx.Rngs,
    ):
        _check_norm(norm)
        if pool not in ("mean", "first"):
            raise ValueError(f"pool must be 'mean' or 'first', got {pool!r}")
        self.norm, self.pool, self.max_len = norm, pool, int(max_len)
        self.embed = embed(vocab_size, d_model, rngs=rngs)
        self.pos_embed = embed(max_len, d_model, rngs=rngs)
        self.layers = make_blocks(num_layers, d_model, num_heads, d_ff or 4 * d_model, norm, use_bias, rngs)
        if norm == "pre":
            self.final_norm = nnx.LayerNorm(d_model, use_bias=use_bias, rngs=rngs)
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, mask: jax.Array | None = None, return_attention: bool = False):
        s = x.shape[1]
        if s > self.max_len:
            raise ValueError(f"sequence length {s} exceeds max_len={self.max_len}")
        h = self.embed(x) + self.pos_embed(jnp.arange(s))[None]
        attn_mask = None if mask is None else mask[:, None, None, :].astype(bool)
        h, attn = run_layers(self.layers, h, attn_mask)
        if self.norm == "pre":
            h = self.final_norm(h)
        if self.pool == "first":
            pooled = h[:, 0]
        elif mask is None:
            pooled = jnp.mean(h, axis=1)
        else:
            m = mask.astype(h.dtype)[..., None]
            pooled = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
        logits = self.head(pooled)
        return (logits, attn) if return_attention else logits
