"""The many-block model of the scale tier, in plain jnp, and its float64 reference Hessian.

`make_deep_mlp`: a tanh network regression on 41 input features with 86 blocks: an input
embedding, then 20 tanh layers (two stages of 10 parallel layers: stage 2 layer i reads stage 1
layer i, so every block's HVP runs through up to three layers, not a 20-deep chain whose 40
pruned per-group HVPs would cost minutes of compile on 2 cores), then a linear head on the
concatenated outputs:

* ``embed`` (41, 3), split into 41 row blocks of 3 (one `Split` group: all blocks in one leaf);
* ``gain`` (3,), `Elementwise`: 3 blocks of size 1 (a group of size-1 blocks);
* ``layers/<i>/{w,b}`` for 20 layers of odd widths (by-leaf: 40 groups, sizes 2..45, some
  larger than the Lanczos step counts used, most smaller);
* ``head/w`` (Σ widths, 1), larger than any step count, and ``head/b`` (1,): a by-leaf block of size 1.

Everything about the block layout the tests need (labels, their order, each block's flat
coordinates) is rebuilt here from the model's own shapes, not from `heterogeneity.partition`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from heterogeneity import partition as hp

FEATURES, EMBED = 41, 3
STAGE1 = (5, 4, 7, 2, 5, 3, 6, 4, 9, 15)  # widths of the 10 stage-1 layers (EMBED -> width)
STAGE2 = (3, 5, 2, 4, 7, 1, 5, 4, 3, 3)  # widths of the 10 stage-2 layers (stage-1 width -> width)


def make_deep_mlp(dtype=jnp.float32, seed=0, n=48):
    """``(loss_fn, params, batch)``; call inside ``jax.enable_x64(True)`` for float64."""
    rng = np.random.default_rng(seed)
    params = {
        "embed": rng.normal(size=(FEATURES, EMBED)) * 1.2 / np.sqrt(FEATURES),
        "gain": 1.0 + 0.2 * rng.normal(size=EMBED),
        "layers": [{"w": rng.normal(size=(a, b)) * 1.4 / np.sqrt(a), "b": 0.2 * rng.normal(size=b)}
                   for a, b in list(zip((EMBED,) * 10, STAGE1)) + list(zip(STAGE1, STAGE2))],
        "head": {"w": rng.normal(size=(sum(STAGE2), 1)) / np.sqrt(sum(STAGE2)), "b": np.array([0.1])},
    }
    batch = {"x": rng.normal(size=(n, FEATURES)), "y": rng.normal(size=(n, 1))}
    # float32-rounded values in either dtype: the float32 and float64 models are the same function
    params, batch = jax.tree.map(lambda x: jnp.asarray(np.asarray(x, np.float32), dtype), (params, batch))

    def loss_fn(p, b):
        h0 = (b["x"] @ p["embed"]) * p["gain"]
        first = [jnp.tanh(h0 @ layer["w"] + layer["b"]) for layer in p["layers"][:10]]
        second = [jnp.tanh(h @ layer["w"] + layer["b"]) for h, layer in zip(first, p["layers"][10:])]
        out = jnp.concatenate(second, -1) @ p["head"]["w"] + p["head"]["b"]
        return 0.5 * jnp.mean(jnp.sum((out - b["y"]) ** 2, -1)) + 0.05 * jnp.mean(out**4)

    return loss_fn, params, batch


def _label(path: str, kind: str) -> str:
    """Label of a by-leaf-style leaf: itself ("leaf"), its layer ("layer": w and b together) or its
    stage ("stage": layers 0-9 -> "stage1", 10-19 -> "stage2")."""
    if not path.startswith("layers/") or kind == "leaf":
        return path
    if kind == "layer":
        return path.rsplit("/", 1)[0]
    return "stage1" if int(path.split("/")[1]) < 10 else "stage2"


def partition(kind: str = "leaf"):
    """``embed`` split by rows (41 blocks), ``gain`` elementwise (3), and the other leaves:
    ``kind="leaf"``: every leaf its own block (86 blocks, 44 groups); ``"layer"``: each layer's w
    and b one block ``layers/<i>`` (66 blocks spanning two leaves, 24 groups); ``"stage"``: the
    two stages of 10 layers one block each (48 blocks; 6 groups, blocks spanning 20 leaves)."""
    assert kind in ("leaf", "layer", "stage"), kind
    return hp.from_fn(lambda path: hp.Split("embed", axis=0, parts=FEATURES) if path == "embed"
                      else hp.Elementwise("gain") if path == "gain" else _label(path, kind),
                      name=f"scale_mlp_{kind}")


def element_labels(params, kind: str = "leaf") -> np.ndarray:
    """The block label of every coordinate of ``ravel_pytree(params)`` (built from the shapes)."""
    def leaf_labels(path, x):
        name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        shape = np.shape(x)
        if name == "embed":
            return np.array([[f"embed/{r}"] * shape[1] for r in range(shape[0])], dtype=object)
        if name == "gain":
            return np.array([f"gain[{i}]" for i in range(shape[0])], dtype=object)
        return np.full(shape, _label(name, kind), dtype=object)

    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    return np.concatenate([leaf_labels(path, x).reshape(-1) for path, x in leaves])


def expected_labels(params, kind: str = "leaf") -> tuple[str, ...]:
    """Block labels in order of first appearance along the raveled parameters."""
    return tuple(dict.fromkeys(element_labels(params, kind).tolist()))


def block_indices(params, kind: str = "leaf") -> dict[str, np.ndarray]:
    """``{label: flat coordinates of the block}`` (ascending, i.e. ravel order)."""
    lab = element_labels(params, kind)
    return {label: np.flatnonzero(lab == label) for label in expected_labels(params, kind)}


_DENSE: dict = {}


def dense_reference(seed=0):
    """``(H, g, loss)`` of the float64 model as NumPy: the dense Hessian by `jax.hessian` (float64;
    jitted, since op-by-op takes ~1 min here), the float64 gradient and loss. Cached per process.
    Call inside ``jax.enable_x64(True)``.

    The Hessian program is itself checked against central differences of a separately compiled
    float64 gradient along random directions (``(g(x+εv) − g(x−εv))/2ε``, error ~ε² ≈ 1e-10
    relative), so the reference does not rest on one XLA program."""
    if seed in _DENSE:
        return _DENSE[seed]
    loss_fn, params, batch = make_deep_mlp(jnp.float64, seed)
    flat, unravel = ravel_pytree(params)
    f = lambda v: loss_fn(unravel(v), batch)  # noqa: E731
    h = np.asarray(jax.jit(jax.hessian(f))(flat))
    grad = jax.jit(jax.grad(f))
    g = np.asarray(grad(flat))
    rng = np.random.default_rng(seed)
    eps = 1e-5
    for _ in range(3):
        v = rng.normal(size=flat.shape)
        fd = (np.asarray(grad(flat + eps * v)) - np.asarray(grad(flat - eps * v))) / (2 * eps)
        hv = h @ v
        assert np.max(np.abs(fd - hv)) <= 1e-7 * np.max(np.abs(hv)), np.max(np.abs(fd - hv)) / np.max(np.abs(hv))
    assert np.allclose(h, h.T, rtol=0, atol=1e-12 * np.abs(h).max())
    _DENSE[seed] = (h, g, float(f(flat)))
    return _DENSE[seed]
