"""Tests for heterogeneity.partition against brute-force NumPy bookkeeping."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from heterogeneity import partition as hp
from heterogeneity import tree as ht


def transformer_like():
    rng = np.random.default_rng(0)
    f = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)  # noqa: E731
    return {
        "embed": {"embedding": f(11, 8)},
        "layers": [
            {
                "attn": {n: {"kernel": f(8, 8), "bias": f(8)} for n in ("query", "key", "value", "out")},
                "mlp": {"fc_in": {"kernel": f(8, 16), "bias": f(16)}, "fc_out": {"kernel": f(16, 8), "bias": f(8)}},
                "norm_attn": {"scale": f(8), "bias": f(8)},
            }
            for _ in range(2)
        ],
        "final_norm": {"scale": f(8)},
        "head": {"kernel": f(8, 3), "bias": f(3)},
    }


def reference_block_of_elements(p, params):
    """Label of every scalar, computed independently with NumPy from the public pieces."""
    labels = []
    for path, x in ht.leaves_with_paths(params):
        target = p.rule(path)
        n = int(np.size(x))
        if isinstance(target, hp.Split):
            moved = np.moveaxis(np.arange(n).reshape(np.shape(x)), target.axis, 0)
            part_of = np.empty(n, dtype=object)
            for i, chunk in enumerate(np.split(moved, target.parts, axis=0)):
                part_of[chunk.reshape(-1)] = f"{target.label}/{i}"
            labels.extend(part_of)
        elif isinstance(target, hp.Elementwise):
            labels.extend(f"{target.label}[{i}]" for i in range(n))
        else:
            labels.extend([target] * n)
    return np.array(labels, dtype=object)


HEADS = hp.by_regex([(r"attn/(query|key|value)/kernel", hp.Split("heads", axis=-1, parts=2)), (r".*", "rest")])
PARTITIONS = {
    "leaf": lambda params: hp.by_leaf(params),
    "role": lambda params: hp.by_role(per_layer=True),
    "role_flat": lambda params: hp.by_role(per_layer=False, bias="with_weight"),
    "layer": lambda params: hp.by_layer(),
    "single": lambda params: hp.single_block(),
    "coord": lambda params: hp.by_coordinate(),
    "heads": lambda params: hp.by_regex([
        (r"layers/(\d+)/attn/(query|key|value)/kernel", hp.Split(r"layers/\1/\2", axis=-1, parts=2)),
        (r".*", "rest")]),
}


@pytest.mark.parametrize("name", sorted(PARTITIONS))
def test_block_math_matches_bruteforce(name):
    params = transformer_like()
    p = PARTITIONS[name](params)
    ref = reference_block_of_elements(p, params)
    flat = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(params)])
    labels = p.labels(params)
    assert set(labels) == set(ref)
    assert p.num_blocks(params) == len(labels)
    sizes = p.sizes(params)
    for label in labels:
        assert sizes[label] == int((ref == label).sum())
    # block sums and squared norms, jitted
    sums = jax.jit(p.block_sum)(params)
    sq = jax.jit(p.block_sq_norms)(params)
    for b, label in enumerate(labels):
        np.testing.assert_allclose(sums[b], flat[ref == label].sum(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sq[b], (flat[ref == label] ** 2).sum(), rtol=1e-5)
    # broadcast / block_ids put each element's block value on it
    values = jnp.arange(len(labels), dtype=jnp.float32) * 1.5
    spread = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(p.broadcast(values, params))])
    ids = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(p.block_ids(params))])
    index = {label: b for b, label in enumerate(labels)}
    expected_ids = np.array([index[label] for label in ref])
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_array_equal(p.flat_block_ids(params), expected_ids)  # ravel_pytree order
    np.testing.assert_allclose(spread, expected_ids * 1.5)


@pytest.mark.parametrize("name", ["leaf", "role", "heads", "coord"])
def test_gather_scatter_roundtrip_and_mask(name):
    params = transformer_like()
    p = PARTITIONS[name](params)
    ref = reference_block_of_elements(p, params)
    flat = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(params)])
    labels = p.labels(params)
    for label in labels[:6] + labels[-2:]:
        got = np.asarray(p.gather(params, label))
        np.testing.assert_array_equal(np.sort(got), np.sort(flat[ref == label]))
        new = -jnp.arange(got.size, dtype=jnp.float32) - 1
        out = p.scatter(params, label, new)
        out_flat = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(out)])
        np.testing.assert_array_equal(out_flat[ref != label], flat[ref != label])  # others untouched
        np.testing.assert_array_equal(np.asarray(p.gather(out, label)), np.asarray(new))  # exact inverse
        m = np.concatenate([np.asarray(x).reshape(-1) for x in jax.tree.leaves(p.mask(params, label))])
        np.testing.assert_array_equal(m, (ref == label).astype(np.float32))


def test_split_one_block_per_head():
    params = {"attn": {"query": {"kernel": jnp.arange(24.0).reshape(4, 6)}}}
    p = hp.by_regex([(r"query/kernel", hp.Split("q_head", axis=1, parts=3))])
    assert p.labels(params) == ("q_head/0", "q_head/1", "q_head/2")
    np.testing.assert_array_equal(p.gather(params, "q_head/1"), np.arange(24.0).reshape(4, 6)[:, 2:4].T.reshape(-1))
    np.testing.assert_allclose(p.block_sum(params), [np.arange(24.0).reshape(4, 6)[:, 2 * i:2 * i + 2].sum()
                                                     for i in range(3)])
    with pytest.raises(ValueError, match="whole leaves only.*attn/query/kernel"):
        p.optax_labels(params)
    with pytest.raises(ValueError, match="cannot split leaf 'attn/query/kernel'"):
        hp.by_regex([(r"kernel", hp.Split("q", axis=1, parts=4))]).layout(params)


def test_optax_labels_drive_optax_partition():
    params = transformer_like()
    p = hp.by_role(per_layer=False)
    labels = p.optax_labels(params)
    assert jax.tree.structure(labels) == jax.tree.structure(params)
    txs = {label: optax.sgd(0.1 if label != "query" else 0.0) for label in p.labels(params)}
    opt = optax.partition(txs, labels)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    assert float(jnp.abs(updates["layers"][0]["attn"]["query"]["kernel"]).max()) == 0.0
    assert float(jnp.abs(updates["layers"][0]["attn"]["key"]["kernel"]).max()) > 0.0


def test_roles_of_transformer_paths():
    params = transformer_like()
    sizes = hp.by_role(per_layer=True).sizes(params)
    expected = {"embedding", "layers/0/query", "layers/0/key", "layers/0/value", "layers/0/attn_out",
                "layers/0/mlp_in", "layers/0/mlp_out", "layers/0/norm", "layers/0/bias", "norm", "head", "bias"}
    assert expected <= set(sizes)
    assert sizes["layers/0/query"] == 64 and sizes["layers/0/norm"] == 16
    assert sizes["layers/0/bias"] == 4 * 8 + 16 + 8
    flat = hp.by_role(per_layer=False, bias="with_weight").sizes(params)
    assert flat["query"] == 2 * (64 + 8) and "bias" not in flat


def test_by_layer_groups():
    params = transformer_like()
    # dict keys flatten in sorted order, so blocks appear as embed, final_norm, head, layers/...
    assert hp.by_layer().labels(params) == ("embed", "final_norm", "head", "layers/0", "layers/1")
    assert hp.by_layer(depth=1).labels(params) == ("embed", "final_norm", "head", "layers")
    assert hp.by_layer().sizes(params)["layers/1"] == sum(
        x.size for x in jax.tree.leaves(params["layers"][1]))


def test_nnx_state_paths_and_partition():
    class Net(nnx.Module):
        def __init__(self):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=nnx.Rngs(0)), nnx.Linear(4, 2, rngs=nnx.Rngs(1))])

    state = nnx.state(Net(), nnx.Param)
    assert ht.paths(state) == ("layers/0/bias", "layers/0/kernel", "layers/1/bias", "layers/1/kernel")
    p = hp.by_layer()
    assert p.sizes(state) == {"layers/0": 16, "layers/1": 10}
    sq = p.block_sq_norms(state)
    np.testing.assert_allclose(sq[0], sum(float(jnp.sum(x ** 2)) for x in jax.tree.leaves(state)[:2]), rtol=1e-6)


def test_bad_input_names_offending_paths():
    params = transformer_like()
    with pytest.raises(ValueError, match=r"covers no block.*head/kernel"):
        hp.by_regex([(r"layers", "body"), (r"embed", "emb"), (r"norm", "norm"), (r"head/bias", "hb")]).layout(params)
    with pytest.raises(ValueError, match=r"covers no block"):
        hp.by_role(per_layer=True).layout({"weird": {"w": jnp.ones(3)}})
    with pytest.raises(ValueError, match=r"empty blocks.*'zero'"):
        hp.by_regex([(r"z", "zero"), (r".*", "rest")]).layout({"a": jnp.ones(3), "z": jnp.ones((0, 4))})
    other = {"a": jnp.ones(3), "b": jnp.ones(2)}
    p = hp.by_leaf(other)
    with pytest.raises(ValueError, match=r"built for other params.*missing leaves \['b'\].*unexpected leaves \['c'\]"):
        p.layout({"a": jnp.ones(3), "c": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"shape changed for a"):
        p.layout({"a": jnp.ones(4), "b": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"rules match no leaf: \['quary'\]"):
        hp.by_regex([("quary", "q"), (".*", "rest")], strict=True).layout(params)
    with pytest.raises(ValueError, match="unknown block label 'nope'"):
        hp.by_leaf(other).gather(other, "nope")
    with pytest.raises(ValueError, match="invalid pattern"):
        hp.by_regex([("(", "x")])
    with pytest.raises(ValueError, match=r"expects values of shape \(2,\)"):
        hp.by_leaf(other).broadcast(jnp.ones(3), other)


def test_layout_resolution_is_static_under_jit():
    params = transformer_like()
    p = hp.by_role()
    traces = []

    @jax.jit
    def f(t):
        traces.append(1)
        return p.block_sq_norms(t)

    f(params)
    f(jax.tree.map(lambda x: x + 1, params))
    assert len(traces) == 1
    assert p.describe(params).splitlines()[-1].split()[1].replace(",", "") == str(ht.size(params))


def test_block_sum_upcasts_bfloat16():
    params = {"w": jnp.full((300,), 1.01, jnp.bfloat16)}
    out = hp.single_block().block_sq_norms(params)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out[0], 300 * float(jnp.bfloat16(1.01)) ** 2, rtol=1e-5)


def test_by_role_keeps_mixer_token_and_channel_mlps_apart():
    mlp = {"fc_in": {"kernel": jnp.ones((4, 8)), "bias": jnp.ones(8)}, "fc_out": {"kernel": jnp.ones((8, 4))}}
    params = {"layers": [{"token_mixing": mlp, "channel_mixing": mlp}]}
    sizes = hp.by_role(per_layer=True).sizes(params)
    assert sizes == {"layers/0/channel_mixing/bias": 8, "layers/0/channel_mixing/mlp_in": 32,
                     "layers/0/channel_mixing/mlp_out": 32, "layers/0/token_mixing/bias": 8,
                     "layers/0/token_mixing/mlp_in": 32, "layers/0/token_mixing/mlp_out": 32}


def test_by_leaf_without_params_is_a_lazy_rule():
    """`hp.by_leaf()` (what three error messages advise) needs no params; with params it keeps its pin."""
    params = transformer_like()
    lazy, pinned = hp.by_leaf(), hp.by_leaf(params)
    assert lazy.labels(params) == pinned.labels(params) == ht.paths(params)
    assert lazy.sizes(params) == pinned.sizes(params) == {p: int(np.size(x)) for p, x in ht.leaves_with_paths(params)}
    np.testing.assert_array_equal(lazy.block_sq_norms(params), pinned.block_sq_norms(params))
    other = {"a": jnp.ones(3), "c": jnp.ones((2, 2))}
    assert lazy.sizes(other) == {"a": 3, "c": 4}  # the same rule on any other pytree
    with pytest.raises(ValueError, match="built for other params"):
        pinned.layout(other)
    # the optimizers whose errors say "e.g. hp.by_leaf()" take it as is
    from heterogeneity import optim as ho

    tx = ho.blockwise_adam(0.1, hp.by_leaf())
    grads = jax.tree.map(jnp.ones_like, other)
    updates, _ = tx.update(grads, tx.init(other), other)
    # all-ones gradients, step 1 with bias correction: m_hat = 1 and v_hat = ||g_b||^2 / d_b = 1, so -lr everywhere
    for u in jax.tree.leaves(updates):
        np.testing.assert_allclose(u, -0.1, rtol=1e-4)


PARTITION_NAME_REFERENCE = {
    "leaf": lambda: hp.by_leaf(),
    "role": lambda: hp.by_role(per_layer=True, default="other"),
    "layer": lambda: hp.by_layer(),
    "single": lambda: hp.single_block("all"),
    "coordinate": lambda: hp.by_coordinate(),
}


@pytest.mark.parametrize("name", sorted(PARTITION_NAME_REFERENCE))
def test_from_name_is_the_one_string_map(name):
    """The CLI (`--partition`), the configs (`opt.partition`) and the deprecated `make_partition` agree."""
    from heterogeneity.experiment import make_partition, partition_from_spec

    params = transformer_like()
    params["extra"] = {"w": jnp.ones(2)}  # matches no role: "role" puts it in "other"
    want = PARTITION_NAME_REFERENCE[name]()
    assert name in hp.PARTITION_NAMES
    assert hp.from_name(name).sizes(params) == want.sizes(params)
    assert partition_from_spec(name, params).sizes(params) == want.sizes(params)
    assert partition_from_spec(name).sizes(params) == want.sizes(params)
    with pytest.warns(DeprecationWarning, match="make_partition is deprecated.*heterogeneity.partition.from_name"):
        old = make_partition(name, params)
    assert old.sizes(params) == want.sizes(params)


def test_from_name_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown partition name 'lyer'\. Did you mean 'layer'\? Valid: leaf, role, "
                                         r"layer, single, coordinate"):
        hp.from_name("lyer")
    with pytest.raises(ValueError, match="unknown partition name 3"):
        hp.from_name(3)
    from heterogeneity.experiment._config import SweepConfig, validate_points

    config = SweepConfig(name="c", build=lambda hp_: None, grid={"optimizer": ["blockwise_adam"], "lr": [0.1]})
    with pytest.raises(ValueError, match=r"opt.partition: unknown partition name 'laef'\. Did you mean 'leaf'"):
        validate_points(config, [{"optimizer": "blockwise_adam", "lr": 0.1, "opt.partition": "laef"}])
    validate_points(config, [{"optimizer": "blockwise_adam", "lr": 0.1, "opt.partition": name}
                             for name in hp.PARTITION_NAMES])  # every name passes


def test_weight_blocks_leave_out_bias_and_norm_blocks():
    """[Zhang24, App. D.1]'s blocks: kernels and embeddings; a block mixing them with biases is not one."""
    params = transformer_like()
    by_path = {p: hp.is_weight(p) for p in ht.paths(params)}
    assert [p for p, w in by_path.items() if w] == [
        "embed/embedding", "head/kernel",
        *[f"layers/{i}/{m}/kernel" for i in range(2)
          for m in ("attn/key", "attn/out", "attn/query", "attn/value", "mlp/fc_in", "mlp/fc_out")]]
    leaf = hp.by_leaf()
    assert hp.weight_blocks(leaf, params) == tuple(p for p, w in by_path.items() if w)
    assert hp.block_selection(leaf, params, "all") == leaf.labels(params)
    assert hp.block_selection(leaf, params, "weights") == hp.weight_blocks(leaf, params)
    role = hp.by_role(per_layer=True)
    assert hp.weight_blocks(role, params) == tuple(
        label for label in role.labels(params) if label.split("/")[-1] not in ("bias", "norm"))
    # by_layer mixes kernels, biases and norms in one block per layer: only the embedding is pure
    assert hp.weight_blocks(hp.by_layer(), params) == ("embed",)
    for path in ("ln_f/scale", "h/0/ln_1/bias", "layers/2/bn1/scale", "encoder/layer_norm/scale", "convs/0/bias"):
        assert not hp.is_weight(path), path
    for path in ("convs/0/kernel", "pos_embed", "wte/embedding", "layers/0/token_mixing/fc_in/kernel"):
        assert hp.is_weight(path), path
    with pytest.raises(ValueError, match="unknown block selection 'kernels'; choose from all, weights"):
        hp.block_selection(leaf, params, "kernels")
