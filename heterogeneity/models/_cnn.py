"""Small CNN and ResNet (the block-homogeneous models of [Zhang24, Fig. 3–4], [Tomihari25, Fig. 3]).

Inputs are NHWC images. Parameter paths follow the naming contract:
``convs/{i}/{kernel,bias}``, BatchNorm ``norms/{i}/{scale,bias}`` (running statistics
``mean``/``var`` are `nnx.BatchStat`, not parameters), classifier ``head/{kernel,bias}``.
The ResNet adds 1×1 projection shortcuts ``shortcuts/{j}/kernel`` with their norms
``norms_shortcut/{j}``. With BatchNorm the conv before it has no bias (it would be absorbed).

BatchNorm is optional (``batch_norm=False`` removes every norm). How curvature is taken with
BatchNorm (running vs per-batch statistics) is chosen in `functional(model, batch_stats=...)`.
`by_role` gives ``norm`` and ``head``; conv kernels have no transformer role, so use
``by_role(default="conv")`` or `by_leaf` / `by_layer` ([Zhang24] takes each conv layer as a block).
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["CNN", "ResNet"]


def _bn(n: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(n, momentum=0.9, epsilon=1e-5, rngs=rngs)


class CNN(nnx.Module):
    """``[conv3×3 → (BatchNorm) → ReLU → 2×2 avg-pool] × len(channels)`` → global mean → head."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: Sequence[int] = (8, 16),
        num_classes: int = 4,
        batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        widths = (int(in_channels),) + tuple(int(c) for c in channels)
        self.batch_norm = bool(batch_norm)
        self.convs = nnx.List([
            nnx.Conv(widths[i], widths[i + 1], (3, 3), padding="SAME", use_bias=not batch_norm, rngs=rngs)
            for i in range(len(channels))
        ])
        if batch_norm:
            self.norms = nnx.List([_bn(c, rngs) for c in widths[1:]])
        self.head = nnx.Linear(widths[-1], int(num_classes), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if self.batch_norm:
                x = self.norms[i](x)
            x = nnx.avg_pool(jax.nn.relu(x), (2, 2), strides=(2, 2), padding="SAME")
        return self.head(jnp.mean(x, axis=(1, 2)))


class ResNet(nnx.Module):
    """Basic-block ResNet (He et al.): stem conv, ``blocks`` basic blocks per stage, mean pool, head.

    ``preset="resnet18"`` in `build` gives ResNet-18 widths/depths (64…512, 2-2-2-2; 3×3 stem,
    no max-pool, i.e. the CIFAR variant). Stage ``s > 0`` starts with stride 2 and a 1×1
    projection shortcut.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        channels: Sequence[int] = (8, 16),
        blocks: Sequence[int] = (1, 1),
        num_classes: int = 4,
        batch_norm: bool = True,
        rngs: nnx.Rngs,
    ):
        channels = tuple(int(c) for c in channels)
        blocks = tuple(int(b) for b in blocks)
        if len(channels) != len(blocks) or not channels or min(blocks) < 1:
            raise ValueError(f"ResNet: channels {channels} and blocks {blocks} must be non-empty, same length, blocks >= 1")
        self.batch_norm = bool(batch_norm)
        conv = lambda cin, cout, k, s: nnx.Conv(cin, cout, (k, k), strides=(s, s), padding="SAME",
                                                use_bias=not batch_norm, rngs=rngs)
        convs, norms, shortcuts, norms_sc, plan = [conv(in_channels, channels[0], 3, 1)], [channels[0]], [], [], []
        cin = channels[0]
        for s, (cout, nb) in enumerate(zip(channels, blocks)):
            for b in range(nb):
                stride = 2 if (s > 0 and b == 0) else 1
                ia = len(convs)
                convs += [conv(cin, cout, 3, stride), conv(cout, cout, 3, 1)]
                norms += [cout, cout]
                sc = -1
                if stride != 1 or cin != cout:
                    sc = len(shortcuts)
                    shortcuts.append(nnx.Conv(cin, cout, (1, 1), strides=(stride, stride), use_bias=not batch_norm,
                                              rngs=rngs))
                    norms_sc.append(cout)
                plan.append((ia, sc))
                cin = cout
        self.plan = tuple(plan)
        self.convs = nnx.List(convs)
        self.shortcuts = nnx.List(shortcuts)
        if batch_norm:
            self.norms = nnx.List([_bn(c, rngs) for c in norms])
            self.norms_shortcut = nnx.List([_bn(c, rngs) for c in norms_sc])
        self.head = nnx.Linear(cin, int(num_classes), rngs=rngs)

    def _conv_norm(self, i: int, x: jax.Array) -> jax.Array:
        x = self.convs[i](x)
        return self.norms[i](x) if self.batch_norm else x

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(self._conv_norm(0, x))
        for ia, sc in self.plan:
            y = jax.nn.relu(self._conv_norm(ia, x))
            y = self._conv_norm(ia + 1, y)
            if sc >= 0:
                x = self.shortcuts[sc](x)
                x = self.norms_shortcut[sc](x) if self.batch_norm else x
            x = jax.nn.relu(x + y)
        return self.head(jnp.mean(x, axis=(1, 2)))
