"""GPT-style causal character LM (nanoGPT-like; [Tomihari25, App. D.10], [Zhang24, App. D.1–D.2]).

Token + learned positional embeddings, ``num_layers`` causal `TransformerBlock`s (Pre-LN by
default, as GPT-2/nanoGPT; ``norm="none"`` gives [Zhang24, App. D.2]'s LayerNorm-free model),
final LayerNorm (Pre-LN only) and an untied LM head without bias (nanoGPT's ``lm_head``;
untied so the head is its own Hessian block). Paths as in `heterogeneity.models._transformer`.

``__call__(tokens (B, S), *, return_attention=False)`` → logits (B, S, vocab_size)
(and ``attn: (num_layers, B, H, S, S)``). Position ``i`` only attends to positions ``≤ i``.
Use with `lm_loss` (``{"tokens": ...}`` or ``{"x": tokens[:, :-1], "y": tokens[:, 1:]}``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from heterogeneity.models._transformer import _check_norm, embed, make_blocks, run_layers

__all__ = ["GPT"]


class GPT(nnx.Module):
    """Decoder-only causal Transformer LM."""

    def __init__(
        self,
        *,
        vocab_size: int = 65,
        max_len: int = 32,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int | None = None,
        norm: str = "pre",
        use_bias: bool = True,
        rngs: nnx.Rngs,
    ):
        self.norm, self.max_len = _check_norm(norm), int(max_len)
        self.embed = embed(vocab_size, d_model, rngs=rngs)
        self.pos_embed = embed(max_len, d_model, rngs=rngs)
        self.layers = make_blocks(num_layers, d_model, num_heads, d_ff or 4 * d_model, norm, use_bias, rngs)
        if norm == "pre":
            self.final_norm = nnx.LayerNorm(d_model, use_bias=use_bias, rngs=rngs)
        self.head = nnx.Linear(d_model, vocab_size, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array, *, return_attention: bool = False):
        s = x.shape[1]
        if s > self.max_len:
            raise ValueError(f"sequence length {s} exceeds max_len={self.max_len}")
        h = self.embed(x) + self.pos_embed(jnp.arange(s))[None]
        causal = jnp.tril(jnp.ones((s, s), dtype=bool))[None, None]
        h, attn = run_layers(self.layers, h, causal)
        if self.norm == "pre":
            h = self.final_norm(h)
        logits = self.head(h)
        return (logits, attn) if return_attention else logits
