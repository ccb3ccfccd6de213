"""`_restrict`: a linear operator restricted to some leaves equals the full operator applied to a
zero-padded tangent and read on those leaves, while emitting fewer operations; and every
`group_by` of `blockwise_slq` gives the same spectra, equal to `eigh` of the dense blocks.

References: the unrestricted HVP (`linearized_hvp`) on a tangent that is explicitly zero outside
the leaves, and the dense float64 Hessian (`jax.hessian`)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curvature_tiny import make_attention, make_mlp
from heterogeneity import curvature as hc
from heterogeneity import partition as hp
from heterogeneity.curvature._restrict import Traced, restrict


def _looped_model(seed=0):
    """A loss with the control flow the rules must not see through: a `lax.scan` over two
    layers, a `lax.cond`, a nested `jax.jit`, an integer power and a `where` on the data."""
    rng = np.random.default_rng(seed)
    params = {"stack": jnp.asarray(rng.normal(size=(2, 5, 5)) / 3), "scale": jnp.asarray(1.2),
              "head": jnp.asarray(rng.normal(size=(5, 3)) / 3), "bias": jnp.asarray(0.1 * rng.normal(size=3))}
    batch = {"x": jnp.asarray(rng.normal(size=(7, 5))), "y": jnp.asarray(rng.normal(size=(7, 3)))}

    @jax.jit
    def act(h):
        return jnp.tanh(h) + 0.1 * h ** 3

    def loss_fn(p, b):
        h, _ = jax.lax.scan(lambda h, w: (act(h @ w), None), b["x"], p["stack"])
        h = jax.lax.cond(p["scale"] > 0, lambda h: p["scale"] * h, lambda h: -h, h)
        out = jnp.where(b["x"][:, :3] > 0, h @ p["head"] + p["bias"], 0.5 * (h @ p["head"]))
        return jnp.mean((out - b["y"]) ** 2)

    return loss_fn, params, batch


MODELS = {"mlp": make_mlp, "attention": make_attention, "looped": _looped_model}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_restricted_hvp_equals_the_zero_padded_full_hvp(name):
    with jax.enable_x64(True):
        loss_fn, params, batch = MODELS[name]()
        leaves, treedef = jax.tree.flatten(params)
        n = len(leaves)
        rng = np.random.default_rng(1)
        subsets = [(i,) for i in range(n)] + [tuple(c) for c in itertools.combinations(range(n), 2)][:6]
        subsets.append(tuple(range(n)))

        @jax.jit
        def both(p, b, vs):
            mv = hc.linearized_hvp(loss_fn, p, b)
            traced = Traced(mv, p)
            out = []
            for sub in subsets:
                t = [jnp.zeros_like(x) for x in jax.tree.leaves(p)]
                for k in sub:
                    t[k] = vs[k]
                full = jax.tree.leaves(mv(jax.tree.unflatten(treedef, t)))
                out.append(([full[k] for k in sub], traced.restrict(sub)(*[vs[k] for k in sub])))
            return out

        vs = [jnp.asarray(rng.normal(size=np.shape(x))) for x in leaves]
        for sub, (want, got) in zip(subsets, both(params, batch, vs)):
            for w, g in zip(want, got):
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-12, atol=1e-13, err_msg=str(sub))


def test_restriction_emits_fewer_operations():
    """The head's restricted HVP drops the layers below it: far fewer equations than the full one."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        n = len(jax.tree.leaves(params))
        head = [i for i, (path, _) in enumerate(jax.tree_util.tree_leaves_with_path(params))
                if "head" in jax.tree_util.keystr(path)]

        def count(fn):
            return len(jax.make_jaxpr(fn)(params, batch).jaxpr.eqns)

        def full(p, b):
            return jax.tree.leaves(hc.linearized_hvp(loss_fn, p, b)(p))

        def restricted(p, b, sub):
            return restrict(hc.linearized_hvp(loss_fn, p, b), p, sub)(*[jax.tree.leaves(p)[k] for k in sub])

        base = count(lambda p, b: jax.linearize(lambda q: jax.grad(loss_fn)(q, b), p)[0])  # the primal part
        assert count(lambda p, b: restricted(p, b, head)) - base < 0.5 * (count(full) - base)
        assert count(lambda p, b: restricted(p, b, tuple(range(n)))) - base <= count(full) - base


def test_linear_operator_and_a_zero_output_leaf():
    """A hand-written linear operator whose output on one leaf ignores the input entirely."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)))

    def mv(t):
        return {"u": a @ t["u"] + 2.0 * t["v"][:4], "v": jnp.zeros(6), "w": t["w"] * 3.0}

    like = {"u": jnp.ones(4), "v": jnp.ones(6), "w": jnp.ones(())}
    x = jnp.arange(4.0)
    out = restrict(mv, like, [0])(x)  # leaves order: u, v, w
    np.testing.assert_allclose(np.asarray(out[0]), np.asarray(a @ x), rtol=1e-6)
    v_only = restrict(mv, like, [1])(jnp.arange(6.0))
    np.testing.assert_array_equal(np.asarray(v_only[0]), np.zeros(6))
    np.testing.assert_allclose(np.asarray(restrict(mv, like, [2])(jnp.asarray(2.0))[0]), 6.0)


def test_every_grouping_gives_the_exact_block_spectra():
    """num_steps ≥ every block: each grouping's quadrature equals the dense blocks' eigenvalues,
    and all groupings agree with each other (same probes whatever the packing). Blocks: column
    halves of the first kernel (not contiguous), the head's kernel and bias as one block over two
    leaves, the rest by leaf."""
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp(n=16, sizes=(4, 6, 5, 3))
        part = hp.by_regex([(r"layers/0/kernel", hp.Split("l0k", axis=1, parts=2)), (r"head/", "head"),
                            (r"(.*)", r"\1")])
        m = max(part.sizes(params).values())
        key = jax.random.key(4)
        h = np.asarray(hc.dense_hessian(loss_fn, params, batch))
        flat_ids = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(part.block_ids(params))])
        ref = hc.blockwise_slq(loss_fn, params, batch, key, partition=part, num_steps=m, num_probes=2,
                               group_by="leaf", batch_size=None)
        for group_by in ("module", "layer", "all", hp.by_layer(depth=1)):
            out = hc.blockwise_slq(loss_fn, params, batch, key, partition=part, num_steps=m, num_probes=2,
                                   group_by=group_by)
            assert out.labels == tuple(part.labels(params))
            for b, label in enumerate(part.labels(params)):
                ix = np.nonzero(flat_ids == b)[0]
                lam = np.linalg.eigvalsh(h[np.ix_(ix, ix)])
                nodes, weights = np.asarray(out.block(label).nodes), np.asarray(out.block(label).weights)
                scale = max(np.abs(lam).max(), 1e-300)
                heavy = weights > 1e-10
                assert np.all(np.min(np.abs(nodes[heavy][:, None] - lam[None]), axis=1) <= 1e-7 * scale), label
                # the same measure as the reference run (its padding past a breakdown may be ordered differently)
                rn, rw = np.asarray(ref.block(label).nodes), np.asarray(ref.block(label).weights)
                for k in range(7):
                    np.testing.assert_allclose(np.sum(weights * (nodes / scale) ** k, axis=-1),
                                               np.sum(rw * (rn / scale) ** k, axis=-1), rtol=1e-8, atol=1e-10,
                                               err_msg=f"{group_by} {label} moment {k}")


def test_group_by_is_checked():
    with jax.enable_x64(True):
        loss_fn, params, batch = make_mlp()
        with pytest.raises(ValueError, match="group_by must be one of"):
            hc.blockwise_slq(loss_fn, params, batch, jax.random.key(0), partition=hp.by_leaf(params),
                             num_steps=4, group_by="layers")
        with pytest.raises(ValueError, match="group_by must be one of"):
            hc.blockwise_slq(loss_fn, params, batch, jax.random.key(0), partition=hp.by_leaf(params),
                             num_steps=4, group_by=3)


def test_groupings_pack_as_documented():
    """`block_packing`: one group per leaf / per module / per layer / per size class."""
    with jax.enable_x64(True):
        _, params, _ = make_mlp()  # layers/0, layers/1 (kernel, bias), head (kernel, bias)
        part = hp.by_leaf(params)
        count = {g: len(hc.block_packing(part, params, group_by=g)) for g in ("leaf", "module", "layer", "all")}
        assert count == {"leaf": 6, "module": 3, "layer": 3, "all": 1}
        for g in hc.block_packing(part, params, group_by="all"):
            assert g.contiguous and sorted(g.sizes.tolist()) == sorted(part.sizes(params).values())
