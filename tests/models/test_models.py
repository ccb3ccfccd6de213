"""Every model builds, runs forward/backward at toy size, and has contract paths and roles."""
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import heterogeneity.models as M
from heterogeneity import partition as hp
from heterogeneity.tree import paths

# NumPy inputs and host-side checks: every eager jnp op would cost one XLA compilation per shape.
RNG = np.random.default_rng(0)
IMG = RNG.standard_normal((3, 8, 8, 3)).astype(np.float32)
TOKENS = RNG.integers(0, 32, (3, 9)).astype(np.int32)
INPUTS = {"mlp": RNG.standard_normal((3, 16)).astype(np.float32), "cnn": IMG, "resnet": IMG, "transformer": TOKENS[:, :8],
          "gpt": TOKENS, "vit": IMG, "mixer": IMG}
NUM_CLASSES = {"mlp": 4, "cnn": 4, "resnet": 4, "transformer": 2, "vit": 4, "mixer": 4}

L = r"layers/\d+/"
CONTRACT = {  # every parameter path of each model must match one of these (naming contract, COMMON.md)
    "mlp": [rf"{L}(kernel|bias)", r"head/(kernel|bias)"],
    "cnn": [r"convs/\d+/(kernel|bias)", r"norms/\d+/(scale|bias)", r"head/(kernel|bias)"],
    "resnet": [r"convs/\d+/kernel", r"norms/\d+/(scale|bias)", r"shortcuts/\d+/kernel", r"norms_shortcut/\d+/(scale|bias)",
               r"head/(kernel|bias)"],
    "transformer": [r"embed/embedding", r"pos_embed/embedding", rf"{L}attn/(query|key|value|out)/(kernel|bias)",
                    rf"{L}mlp/(fc_in|fc_out)/(kernel|bias)", rf"{L}(norm_attn|norm_mlp)/(scale|bias)",
                    r"final_norm/(scale|bias)", r"head/(kernel|bias)"],
    "mixer": [r"patch_embed/(kernel|bias)", rf"{L}(token_mixing|channel_mixing)/(fc_in|fc_out)/(kernel|bias)",
              rf"{L}(norm_token|norm_channel)/(scale|bias)", r"final_norm/(scale|bias)", r"head/(kernel|bias)"],
}
CONTRACT["gpt"] = CONTRACT["transformer"]
CONTRACT["vit"] = [r"patch_embed/(kernel|bias)", r"pos_embed"] + CONTRACT["transformer"][2:]

TRANSFORMER_ROLES = {"embedding", "query", "key", "value", "attn_out", "mlp_in", "mlp_out", "norm", "head", "bias"}
ROLES = {  # by_role(per_layer=False, default="other") must give exactly these roles
    "mlp": {"other", "head", "bias"},
    "cnn": {"other", "head", "bias"},
    "resnet": {"other", "norm", "head", "bias"},
    "transformer": TRANSFORMER_ROLES,
    "gpt": TRANSFORMER_ROLES,
    "vit": TRANSFORMER_ROLES,
    # the token- and channel-mixing MLPs are separate blocks ([Zhang24, Fig. 5] treats them apart)
    "mixer": {"embedding", "token_mixing/mlp_in", "token_mixing/mlp_out", "token_mixing/bias",
              "channel_mixing/mlp_in", "channel_mixing/mlp_out", "channel_mixing/bias", "norm", "head", "bias"},
}


def _rngs(seed=0):
    # RBG keys compile ~10x faster than threefry on CPU; model code is key-implementation agnostic.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


# One block per stack keeps compile time (which dominates these tests) low; the default configs
# (2 layers) are checked abstractly in test_default_configs.
TOY = {"transformer": dict(num_layers=1), "gpt": dict(num_layers=1), "vit": dict(num_layers=1),
       "mixer": dict(num_layers=1)}


@functools.lru_cache(maxsize=None)
def _built(name, seed=0):
    """Build each toy model once per test session (construction and compilation dominate test time)."""
    return M.build(name, rngs=_rngs(seed), **TOY.get(name, {}))


@pytest.mark.parametrize("name", sorted(M.MODELS))
def test_default_configs(name):
    """``build(name)`` with no config gives the documented tiny defaults (2 blocks / 2 hidden layers)."""
    model = nnx.eval_shape(lambda: M.build(name))
    ps = paths(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    if name in ("transformer", "gpt", "vit", "mixer", "mlp"):
        assert any(k.startswith("layers/1/") for k in ps) and not any(k.startswith("layers/2/") for k in ps)
    assert any(k.startswith("head/") for k in ps)


def _loss(name, apply_fn):
    if name == "gpt":
        return M.lm_loss(apply_fn), {"tokens": INPUTS["gpt"]}
    return M.classification_loss(apply_fn), {"x": INPUTS[name], "y": np.arange(3) % NUM_CLASSES[name]}


@pytest.mark.parametrize("name", sorted(M.MODELS))
def test_model_forward_backward_paths_roles(name):
    model = _built(name)
    apply_fn, params = M.functional(model)
    loss_fn, batch = _loss(name, apply_fn)
    out, (loss, grads) = jax.jit(lambda p, b: (apply_fn(p, INPUTS[name]), jax.value_and_grad(loss_fn)(p, b)))(
        params, batch)
    want_shape = (3, 9, 65) if name == "gpt" else (3, NUM_CLASSES[name])
    assert out.shape == want_shape
    assert np.isfinite(float(loss))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    grads = jax.tree.map(np.asarray, grads)  # host-side checks: no per-shape XLA compilations
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert sum(float(np.sum(g.astype(np.float64) ** 2)) for g in jax.tree.leaves(grads)) > 0
    if name == "mlp":  # the pure apply_fn reproduces the stateful model
        np.testing.assert_allclose(np.asarray(model(INPUTS[name])), np.asarray(out), rtol=1e-5, atol=1e-6)
    # naming contract
    bad = [p for p in paths(params) if not any(re.fullmatch(c, p) for c in CONTRACT[name])]
    assert not bad, f"{name}: paths outside the naming contract: {bad}"
    # roles: by_role covers every leaf with exactly the expected roles
    part = hp.by_role(per_layer=False, default="other")
    assert set(part.labels(params)) == ROLES[name]
    assert sum(part.sizes(params).values()) == sum(x.size for x in jax.tree.leaves(params))
    if ROLES[name] <= TRANSFORMER_ROLES:  # transformer-family models need no default at all
        per_layer = hp.by_role(per_layer=True)
        labels = per_layer.labels(params)
        for role in ROLES[name] - {"embedding", "head"}:
            assert f"layers/0/{role}" in labels, (name, role, labels)


def test_transformer_qkv_are_separate_blocks():
    _, params = M.functional(_built("transformer"))
    sizes = hp.by_role(per_layer=True).sizes(params)
    for role in ("query", "key", "value", "attn_out"):
        assert sizes[f"layers/0/{role}"] == 32 * 32
    assert sizes["layers/0/mlp_in"] == 32 * 128 and sizes["embedding"] == 32 * 32 + 16 * 32


def test_norm_placement_changes_computation():
    pre = _built("transformer")
    fn_pre, p_pre = M.functional(pre)
    flat_pre = dict(zip(paths(p_pre), jax.tree.leaves(p_pre)))
    x = INPUTS["transformer"]
    outs = {"pre": jax.jit(fn_pre)(p_pre, x)}
    for norm in ("post", "none"):
        # shapes only (no init compile); then run with the pre-LN model's weights: identical shared leaves
        fn, p = M.functional(nnx.eval_shape(lambda: M.build("transformer", norm=norm, **TOY["transformer"])))
        same = jax.tree.unflatten(jax.tree.structure(p), [flat_pre[k] for k in paths(p)])
        outs[norm] = jax.jit(fn)(same, x)
        if norm == "none":
            assert not [k for k in paths(p) if "norm" in k], "No-LN must have no norm parameters"
        else:
            assert "final_norm/scale" not in paths(p) and "layers/0/norm_attn/scale" in paths(p)
    assert "final_norm/scale" in flat_pre
    for a, b in (("pre", "post"), ("pre", "none"), ("post", "none")):
        assert np.max(np.abs(np.asarray(outs[a]) - np.asarray(outs[b]))) > 1e-3, (a, b)


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
def test_block_matches_its_equations(norm):
    """[Tomihari25, §4.7]: Pre-LN x+F(LN x); Post-LN LN(x+F(x)); No-LN x+F(x) — checked against the sub-modules."""
    weights = nnx.to_pure_dict(nnx.state(_built("transformer").layers[0]))  # d_model 32, 2 heads, d_ff 128
    if norm == "none":
        weights = {k: v for k, v in weights.items() if not k.startswith("norm")}
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: M.TransformerBlock(32, 2, 128, norm=norm, rngs=nnx.Rngs(0))))
    x = RNG.standard_normal((2, 5, 32)).astype(np.float32)

    @jax.jit
    def run(weights, x):
        blk = nnx.merge(graphdef, weights)
        att = lambda h: blk.attn(h)[0]
        if norm == "pre":
            h = x + att(blk.norm_attn(x))
            want = h + blk.mlp(blk.norm_mlp(h))
        elif norm == "post":
            h = blk.norm_attn(x + att(x))
            want = blk.norm_mlp(h + blk.mlp(h))
        else:
            h = x + att(x)
            want = h + blk.mlp(h)
        return blk(x), want

    (y, probs), want = run(weights, x)
    if norm == "post":
        np.testing.assert_allclose(np.mean(np.asarray(y), -1), 0.0, atol=1e-5)  # LN output (scale 1, bias 0)
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert probs.shape == (2, 2, 5, 5)


def test_attention_probabilities():
    fn, params = M.functional(_built("transformer"))
    x = INPUTS["transformer"]
    mask = np.arange(8)[None, :] < np.array([[8], [5], [3]])
    fwd = jax.jit(lambda p, x: fn(p, x, mask=mask, return_attention=True))
    logits, attn = fwd(params, x)
    assert logits.shape == (3, 2) and attn.shape == (1, 3, 2, 8, 8)  # (layers, B, H, S, S)
    np.testing.assert_allclose(np.asarray(attn.sum(-1)), 1.0, rtol=1e-5)
    attn = np.asarray(attn)
    assert np.max(attn[:, 1, :, :, 5:]) == 0.0  # padded keys get no attention
    assert np.max(attn[:, 2, :, :, 3:]) == 0.0
    # padding content does not matter for the pooled prediction
    x2 = x.copy()
    x2[1, 6] = (x[1, 6] + 1) % 32
    np.testing.assert_allclose(np.asarray(fwd(params, x2)[0]), np.asarray(logits), rtol=1e-5, atol=1e-6)
    vfn, vparams = M.functional(_built("vit"))
    _, vit_attn = jax.jit(lambda p, x: vfn(p, x, return_attention=True))(vparams, IMG)
    assert vit_attn.shape == (1, 3, 2, 4, 4)
    np.testing.assert_allclose(np.asarray(vit_attn.sum(-1)), 1.0, rtol=1e-5)


def test_gpt_is_causal():
    model = _built("gpt")
    fn, params = M.functional(model)
    x = INPUTS["gpt"][:, :8]
    fwd = jax.jit(lambda p, x: fn(p, x, return_attention=True))
    logits, attn = fwd(params, x)
    j = 5
    x2 = x.copy()
    x2[:, j] = (x[:, j] + 7) % 65
    logits2, _ = fwd(params, x2)
    np.testing.assert_allclose(np.asarray(logits2[:, :j]), np.asarray(logits[:, :j]), rtol=1e-5, atol=1e-6)
    logits, logits2, attn = np.asarray(logits), np.asarray(logits2), np.asarray(attn)
    assert np.min(np.max(np.abs(logits2[:, j:] - logits[:, j:]), axis=-1)) > 1e-4
    upper = np.triu(np.ones((8, 8), bool), k=1)
    assert np.max(np.where(upper, attn, 0.0)) == 0.0
    with pytest.raises(ValueError, match="max_len"):
        model(np.zeros((1, 33), np.int32))


def test_lm_and_classification_losses():
    fn, params = M.functional(_built("gpt"))
    tok = INPUTS["gpt"]
    loss_fn = M.lm_loss(fn)

    @jax.jit
    def run(params, tok):
        a = loss_fn(params, {"tokens": tok})
        b = loss_fn(params, {"x": tok[:, :-1], "y": tok[:, 1:]})
        logp = jax.nn.log_softmax(fn(params, tok[:, :-1]))
        return a, b, -jnp.mean(jnp.take_along_axis(logp, tok[:, 1:, None], axis=-1))

    a, b, manual = run(params, tok)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
    np.testing.assert_allclose(float(a), float(manual), rtol=1e-5)
    with pytest.raises(ValueError, match="keys"):
        loss_fn(params, {"inputs": tok})
    cfn, cparams = M.functional(_built("mlp"))
    y = np.array([0, 3, 1])
    closs, logits = jax.jit(lambda p: (M.classification_loss(cfn)(p, {"x": INPUTS["mlp"], "y": y}),
                                       cfn(p, INPUTS["mlp"])))(cparams)
    logits = np.asarray(logits, np.float64)
    logp = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) - logits.max(-1, keepdims=True)
    np.testing.assert_allclose(float(closs), -np.mean(logp[np.arange(3), np.asarray(y)]), rtol=1e-5)
    with pytest.raises(ValueError, match="keys"):
        M.classification_loss(cfn)(cparams, {"x": INPUTS["mlp"]})


def test_mlp_output_scale():
    """[Zhang24, App. D.3]: every layer's output scaled by c; with zero biases f_c = c^L f_1 (ReLU is 1-homogeneous)."""
    f1, p = M.functional(_built("mlp"))
    f2, _ = M.functional(nnx.eval_shape(lambda: M.build("mlp", output_scale=2.0)))
    fs, _ = M.functional(nnx.eval_shape(lambda: M.build("mlp", output_scale=(1.0, 1.0, 3.0))))
    p0 = jax.tree_util.tree_map_with_path(lambda kp, v: v * 0 if "bias" in jax.tree_util.keystr(kp) else v, p)
    x = INPUTS["mlp"]
    y1, y2, y1p, ys = jax.jit(lambda p, p0: (f1(p0, x), f2(p0, x), f1(p, x), fs(p, x)))(p, p0)
    np.testing.assert_allclose(np.asarray(y2), 8.0 * np.asarray(y1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ys), 3.0 * np.asarray(y1p), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="output_scale"):
        M.build("mlp", output_scale=(1.0, 2.0))


def test_batchnorm_eval_vs_batch_statistics():
    model = M.build("cnn", batch_norm=True, rngs=_rngs())
    # make the running statistics differ from any batch's statistics
    for bn in model.norms:
        bn.mean[...] = bn.mean[...] + 0.5
        bn.var[...] = bn.var[...] * 3.0
    running = [np.asarray(bn.mean[...]).copy() for bn in model.norms]
    f_eval, params = M.functional(model, batch_stats="eval")
    f_batch, params_b = M.functional(model, batch_stats="batch")
    assert jax.tree.structure(params) == jax.tree.structure(params_b)
    assert "norms/0/scale" in paths(params) and not [k for k in paths(params) if k.endswith(("mean", "var"))]
    batch = {"x": IMG, "y": np.arange(3)}

    @jax.jit
    def run(params, batch):
        out = {}
        for mode, f in (("eval", f_eval), ("batch", f_batch)):
            x = batch["x"]
            x_other = x.at[1:].multiply(-3.0)  # same first example, different rest of the batch
            out[mode] = (f(params, x), f(params, x_other), jax.grad(M.classification_loss(f))(params, batch))
        return out

    out = jax.tree.map(np.asarray, run(params, batch))
    (ye, ye_other, ge), (yb, yb_other, gb) = out["eval"], out["batch"]
    assert np.max(np.abs(ye - yb)) > 1e-3  # the two curvature conventions differ
    # "eval" is a deterministic per-example function of params: the rest of the batch does not matter
    np.testing.assert_allclose(np.asarray(ye_other[0]), np.asarray(ye[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(run(params, batch)["eval"][0]), np.asarray(ye))
    # "batch" normalises with the batch's own statistics, so the rest of the batch matters
    assert np.max(np.abs(yb_other[0] - yb[0])) > 1e-4
    # both are pure: the module's running statistics are untouched; gradients are finite and differ
    for bn, r in zip(model.norms, running):
        np.testing.assert_array_equal(np.asarray(bn.mean[...]), r)
    for g in (ge, gb):
        assert all(np.all(np.isfinite(v)) for v in jax.tree.leaves(g))
    assert np.max(np.abs(ge["convs"][0]["kernel"] - gb["convs"][0]["kernel"])) > 1e-6
    with pytest.raises(ValueError, match="batch_stats"):
        M.functional(model, batch_stats="train")


def test_float64_curvature():
    """With float64 params the whole forward pass runs in float64: HVPs are symmetric to ~1e-13."""
    # a 1-layer width-4 GPT ([Zhang24, App. D.2] scale); shapes from eval_shape, deterministic float64 weights
    fn, shapes = M.functional(nnx.eval_shape(lambda: M.build("gpt", vocab_size=5, max_len=4, d_model=4, num_heads=2,
                                                             num_layers=1, d_ff=4, norm="pre")))
    loss = M.lm_loss(fn)
    batch = {"tokens": np.array([[0, 3, 1, 4], [2, 2, 0, 1]])}
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(0.5 * np.sin(1.0 + 0.37 * np.arange(a.size)).reshape(a.shape)), shapes)
        u = jax.tree.map(lambda a: jnp.asarray(np.sin(np.arange(a.size)).reshape(a.shape)), p64)
        v = jax.tree.map(lambda a: jnp.asarray(np.cos(3.0 * np.arange(a.size)).reshape(a.shape)), p64)

        @jax.jit
        def bilinear(p, u, v):
            hvp = lambda t: jax.jvp(jax.grad(lambda q: loss(q, batch)), (p,), (t,))[1]
            dot = lambda a, b: sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
            return dot(u, hvp(v)), dot(v, hvp(u))

        uhv, vhu = bilinear(p64, u, v)
        jaxpr = jax.make_jaxpr(lambda q: fn(q, batch["tokens"]))(p64)
    assert uhv.dtype == jnp.float64
    assert abs(float(uhv - vhu)) <= 1e-11 * max(1.0, abs(float(uhv)))
    assert "f32" not in str(jaxpr), "some op computes in float32 when params are float64"


def test_build_registry_and_presets():
    assert set(M.MODELS) == {"mlp", "cnn", "resnet", "transformer", "gpt", "vit", "mixer"}
    with pytest.raises(ValueError, match="unknown model 'bert'"):
        M.build("bert")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['depth'\]"):
        M.build("gpt", depth=3)
    with pytest.raises(ValueError, match="unknown preset"):
        M.build("gpt", preset="llama")
    with pytest.raises(ValueError, match="norm must be one of"):
        M.build("transformer", norm="sandwich")
    with pytest.raises(ValueError, match="divisible"):
        M.build("gpt", d_model=30, num_heads=4)
    # presets resolve to the published parameter counts (shapes only, nothing allocated)
    count = lambda m: sum(x.size for x in jax.tree.leaves(nnx.state(m, nnx.Param)))
    assert count(nnx.eval_shape(lambda: M.build("resnet", preset="resnet18"))) == 11_173_962  # CIFAR ResNet-18
    assert count(nnx.eval_shape(lambda: M.build("mlp", preset="mnist_mlp"))) == 784 * 300 + 300 * 128 + 128 * 64 + 64 * 10 + 300 + 128 + 64 + 10
    small = nnx.eval_shape(lambda: M.build("gpt", preset="tiny_no_ln", vocab_size=7))  # keys override presets
    assert small.embed.embedding.shape == (7, 4) and len(small.layers) == 2 and small.norm == "none"
    with pytest.warns(DeprecationWarning, match="'tiny_no_ln'"):  # the old preset names work for one release
        old = nnx.eval_shape(lambda: M.build("gpt", preset="seed001_tiny_no_ln", vocab_size=7))
    assert old.embed.embedding.shape == (7, 4)


def test_build_compiles_one_initializer_per_config():
    """New seeds reuse the jitted initializer of the same class and config; values still differ by seed."""
    M._INIT_PROGRAMS.clear()  # the cache is bounded: start below its bound
    cfg = dict(in_channels=1, channels=[4, 4], num_classes=3)
    a = M.build("cnn", seed=1, **cfg)
    n = len(M._INIT_PROGRAMS)
    b = M.build("cnn", seed=2, **cfg)
    assert len(M._INIT_PROGRAMS) == n  # a cache hit, no new program
    M.build("cnn", seed=2, **{**cfg, "channels": (4, 4)})  # a tuple is another config (the model sees its type)
    assert len(M._INIT_PROGRAMS) == n + 1
    la, lb = jax.tree.leaves(nnx.state(a, nnx.Param)), jax.tree.leaves(nnx.state(b, nnx.Param))
    assert any(not np.array_equal(x, y) for x, y in zip(la, lb))
    c = M.build("cnn", seed=1, **cfg)
    assert all(np.array_equal(x, y) for x, y in zip(la, jax.tree.leaves(nnx.state(c, nnx.Param))))
