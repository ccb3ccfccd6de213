"""Plain MLP with a per-layer output scale [Zhang24, App. D.3, Fig. 5(a)].

[Zhang24] trains a 4-layer ReLU MLP on MNIST (hidden widths 300, 128, 64) and "changes the
degree of heterogeneity by scaling the output of each layer with constant c", c = 1 … 15.
Here layer ``i`` computes ``c_i · (W_i x + b_i)`` (then ReLU for hidden layers); the head
is scaled by ``c_L``. A scalar ``output_scale=c`` scales every layer (head included) by the
same ``c``, the paper's setting; a sequence gives one scale per layer (hidden layers, then
head) for custom schemes. Parameter paths: ``layers/{i}/{kernel,bias}``, ``head/{kernel,bias}``.
"""
from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

__all__ = ["MLP"]


class MLP(nnx.Module):
    """``MLP(in_features=784, hidden=(300, 128, 64), num_classes=10, output_scale=1.0)``."""

    def __init__(
        self,
        *,
        in_features: int = 16,
        hidden: Sequence[int] = (32, 16),
        num_classes: int = 4,
        output_scale: float | Sequence[float] = 1.0,
        rngs: nnx.Rngs,
    ):
        hidden = tuple(int(h) for h in hidden)
        n_layers = len(hidden) + 1
        if isinstance(output_scale, (int, float)):
            scales = (float(output_scale),) * n_layers
        else:
            scales = tuple(float(s) for s in output_scale)
            if len(scales) != n_layers:
                raise ValueError(f"output_scale needs {n_layers} entries (hidden layers + head), got {len(scales)}")
        widths = (int(in_features),) + hidden
        self.layers = nnx.List([nnx.Linear(widths[i], widths[i + 1], rngs=rngs) for i in range(len(hidden))])
        self.head = nnx.Linear(widths[-1], int(num_classes), rngs=rngs)
        self.scales = scales

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for layer, c in zip(self.layers, self.scales):
            x = jax.nn.relu(c * layer(x))
        return self.scales[-1] * self.head(x)
