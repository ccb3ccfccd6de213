"""Tiny Vision Transformer ([Tomihari25, Fig. 3(b)], [Zhang24, Fig. 4] ViT-base).

Non-overlapping ``patch_size`` patches embedded by a strided conv (``patch_embed/{kernel,bias}``),
learned positional embedding ``pos_embed`` (a (1, N, d) parameter), Transformer blocks with
``norm`` placement, final LayerNorm (Pre-LN), mean pooling over patches (no CLS token, so
every parameter has a transformer role) and ``head``. Input: NHWC images.
``__call__(x, *, return_attention=False)``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from heterogeneity.models._transformer import _check_norm, make_blocks, run_layers

__all__ = ["ViT"]


def num_patches(image_size: int, patch_size: int) -> int:
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be divisible by patch_size={patch_size}")
    return (image_size // patch_size) ** 2


class ViT(nnx.Module):
    def __init__(
        self,
        *,
        image_size: int = 8,
        patch_size: int = 4,
        in_channels: int = 3,
        d_model: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        d_ff: int | None = None,
        num_classes: int = 4,
        norm: str = "pre",
        rngs: nnx.Rngs,
    ):
        self.norm, self.image_size = _check_norm(norm), int(image_size)
        n = num_patches(image_size, patch_size)
        self.patch_embed = nnx.Conv(in_channels, d_model, (patch_size, patch_size),
                                    strides=(patch_size, patch_size), padding="VALID", rngs=rngs)
        self.pos_embed = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, n, d_model)))
        self.layers = make_blocks(num_layers, d_model, num_heads, d_ff or 4 * d_model, norm, True, rngs)
        if norm == "pre":
            self.final_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, return_attention: bool = False):
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"expected NHWC images of size {self.image_size}, got shape {x.shape}")
        h = self.patch_embed(x)
        h = h.reshape(h.shape[0], -1, h.shape[-1]) + self.pos_embed[...]
        h, attn = run_layers(self.layers, h, None)
        if self.norm == "pre":
            h = self.final_norm(h)
        logits = self.head(jnp.mean(h, axis=1))
        return (logits, attn) if return_attention else logits
