"""MLP-Mixer (Tolstikhin et al.; [Zhang24, Fig. 5(b, c)]: block heterogeneity without attention).

Patch embedding ``patch_embed`` (strided conv), then per layer ``i``:
``x ← x + token_mixing(LN_token(x)ᵀ)ᵀ`` (an MLP across patches) and
``x ← x + channel_mixing(LN_channel(x))`` (an MLP across channels), final LayerNorm, mean
pooling, ``head``. Paths: ``layers/{i}/{norm_token,norm_channel}/...``,
``layers/{i}/{token_mixing,channel_mixing}/{fc_in,fc_out}/{kernel,bias}``. Input: NHWC images.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from heterogeneity.models._transformer import FeedForward
from heterogeneity.models._vit import num_patches

__all__ = ["MLPMixer", "MixerBlock"]


class MixerBlock(nnx.Module):
    def __init__(self, n_patches: int, d_model: int, tokens_hidden: int, channels_hidden: int, *, rngs: nnx.Rngs):
        self.norm_token = nnx.LayerNorm(d_model, rngs=rngs)
        self.token_mixing = FeedForward(n_patches, tokens_hidden, rngs=rngs)
        self.norm_channel = nnx.LayerNorm(d_model, rngs=rngs)
        self.channel_mixing = FeedForward(d_model, channels_hidden, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.swapaxes(self.norm_token(x), 1, 2)            # (B, d, N)
        x = x + jnp.swapaxes(self.token_mixing(y), 1, 2)
        return x + self.channel_mixing(self.norm_channel(x))


class MLPMixer(nnx.Module):
    def __init__(
        self,
        *,
        image_size: int = 8,
        patch_size: int = 4,
        in_channels: int = 3,
        d_model: int = 32,
        tokens_hidden: int = 16,
        channels_hidden: int = 64,
        num_layers: int = 2,
        num_classes: int = 4,
        rngs: nnx.Rngs,
    ):
        self.image_size = int(image_size)
        n = num_patches(image_size, patch_size)
        self.patch_embed = nnx.Conv(in_channels, d_model, (patch_size, patch_size),
                                    strides=(patch_size, patch_size), padding="VALID", rngs=rngs)
        self.layers = nnx.List([MixerBlock(n, d_model, tokens_hidden, channels_hidden, rngs=rngs)
                                for _ in range(int(num_layers))])
        self.final_norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(f"expected NHWC images of size {self.image_size}, got shape {x.shape}")
        h = self.patch_embed(x)
        h = h.reshape(h.shape[0], -1, h.shape[-1])
        for layer in self.layers:
            h = layer(h)
        return self.head(jnp.mean(self.final_norm(h), axis=1))
