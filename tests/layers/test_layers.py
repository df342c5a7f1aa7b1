"""Norms, activations, MLP and drop path against numpy forms written from the papers' formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import meta

from mixtok.layers import DropPath, GroupNorm1, LayerNorm, Mlp, MlpHead, SquaredReLU, StarReLU, get_activation, get_norm


def _unboxed(variables):
    return meta.unbox(variables)


def test_star_relu_is_scale_times_squared_relu_plus_bias():
    x = np.linspace(-3, 3, 13, dtype=np.float32)
    module = StarReLU()
    variables = {"params": {"scale": np.array([0.8], np.float32), "bias": np.array([-0.3], np.float32)}}
    out = np.asarray(module.apply(variables, x))
    np.testing.assert_allclose(out, 0.8 * np.maximum(x, 0) ** 2 - 0.3, rtol=1e-6)
    # Official init: s = 1, b = 0, both of shape (1,).
    init = _unboxed(module.init(jax.random.PRNGKey(0), x))["params"]
    assert init["scale"].shape == (1,) and float(init["scale"][0]) == 1.0 and float(init["bias"][0]) == 0.0


def test_squared_relu():
    x = np.array([-2.0, -0.1, 0.0, 0.5, 3.0], np.float32)
    np.testing.assert_allclose(np.asarray(SquaredReLU().apply({}, x)), [0, 0, 0, 0.25, 9.0])


def test_gelu_is_the_exact_erf_form_like_pytorch():
    from scipy.special import erf

    x = np.linspace(-4, 4, 17).astype(np.float32)
    out = np.asarray(get_activation("gelu").apply({}, x))
    np.testing.assert_allclose(out, 0.5 * x * (1 + erf(x / np.sqrt(2))), atol=1e-6)


def test_layernorm_without_bias_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (2, 5, 7, 12)).astype(np.float32)
    module = get_norm("layernorm_nobias", epsilon=1e-6)
    scale = rng.uniform(0.5, 1.5, 12).astype(np.float32)
    out = np.asarray(module.apply({"params": {"scale": scale}}, x))
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-6) * scale, rtol=1e-5, atol=1e-5)
    assert "bias" not in _unboxed(module.init(jax.random.PRNGKey(0), x))["params"]


def test_groupnorm1_normalises_over_height_width_and_channels_with_per_channel_affine():
    rng = np.random.default_rng(1)
    x = rng.normal(-1.0, 2.0, (3, 4, 6, 8)).astype(np.float32)
    scale, bias = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    out = np.asarray(GroupNorm1(epsilon=1e-5).apply({"params": {"scale": scale, "bias": bias}}, x))
    mean = x.mean((1, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5) * scale + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, axes", [("layernorm", (-1,)), ("groupnorm1", (1, 2, 3))])
def test_norm_gradients_equal_autodiff_of_the_two_pass_formula(kind, axes):
    """The closed-form VJP against jax's own differentiation of the same formula, in float64 numpy terms."""
    rng = np.random.default_rng(4)
    x = rng.normal(1.5, 2.0, (2, 5, 7, 12)).astype(np.float32)
    cotangent = rng.normal(size=x.shape).astype(np.float32)
    module = get_norm(kind, epsilon=1e-5)
    variables = module.init(jax.random.PRNGKey(0), x)
    variables = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype) * 0.3, variables)

    def reference(variables, x):
        params = _unboxed(variables)["params"]
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
        return (x - mean) / jnp.sqrt(var + 1e-5) * params["scale"] + params["bias"]

    def vjp(f):
        with jax.enable_x64():
            args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (variables, x))
            return jax.vjp(f, *args)[1](jnp.asarray(cotangent, jnp.float64))

    want = vjp(reference)
    got = jax.vjp(module.apply, variables, x)[1](jnp.asarray(cotangent))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=2e-5)


def test_norms_compute_in_float32_for_bfloat16_inputs():
    x = (np.random.default_rng(2).normal(size=(2, 4, 4, 16)) * 100 + 1000).astype(np.float32)
    module = LayerNorm(epsilon=1e-6, use_bias=False)
    variables = module.init(jax.random.PRNGKey(0), x)
    out32 = np.asarray(module.apply(variables, x))
    out16 = module.apply(variables, jnp.asarray(x, jnp.bfloat16))
    assert out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.1)


def test_mlp_is_fc_act_fc():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 3, 8)).astype(np.float32)
    module = Mlp(mlp_ratio=4, activation="gelu", use_bias=True)
    params = jax.tree_util.tree_map(np.asarray, _unboxed(module.init(jax.random.PRNGKey(0), x))["params"])
    params["fc1"]["bias"] = rng.normal(size=32).astype(np.float32)
    out = np.asarray(module.apply({"params": params}, x))
    from scipy.special import erf

    h = x @ params["fc1"]["kernel"] + params["fc1"]["bias"]
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    np.testing.assert_allclose(out, h @ params["fc2"]["kernel"] + params["fc2"]["bias"], rtol=1e-4, atol=1e-5)


def test_mlp_head_is_fc_squared_relu_layernorm_fc():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 16)).astype(np.float32)
    module = MlpHead(num_classes=5, norm_epsilon=1e-6)
    params = jax.tree_util.tree_map(np.asarray, _unboxed(module.init(jax.random.PRNGKey(0), x))["params"])
    out = np.asarray(module.apply({"params": params}, x))
    h = np.maximum(x @ params["fc1"]["kernel"] + params["fc1"]["bias"], 0) ** 2
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6)
    h = h * params["norm"]["scale"] + params["norm"]["bias"]
    np.testing.assert_allclose(out, h @ params["fc2"]["kernel"] + params["fc2"]["bias"], rtol=1e-4, atol=1e-5)


def test_drop_path_drops_whole_samples_and_rescales_the_rest():
    x = jnp.ones((4000, 3, 3, 2))
    out = np.asarray(DropPath(0.25).apply({}, x, train=True, rngs={"drop_path": jax.random.PRNGKey(0)}))
    per_sample = out.reshape(4000, -1)
    assert np.all((per_sample == 0).all(1) | np.isclose(per_sample, 1 / 0.75).all(1))
    assert abs((per_sample[:, 0] == 0).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(np.asarray(DropPath(0.25).apply({}, x, train=False)), np.asarray(x))


@pytest.mark.parametrize(
    "kind,factory",
    [("norm", lambda: get_norm("layernrom", epsilon=1e-6)), ("activation", lambda: get_activation("star_rleu"))],
)
def test_unknown_names_suggest_close_matches(kind, factory):
    with pytest.raises(ValueError, match=f"Unknown {kind} .*Did you mean"):
        factory()


@pytest.mark.parametrize("before", [True, False])
def test_classifier_head_drops_before_an_mlp_head_only_when_asked(before):
    # timm drops before the MlpHead and inside it; the official MetaFormer code only inside (before fc2).
    from mixtok.layers.heads import ClassifierHead

    head = ClassifierHead(5, mlp_ratio=2.0, head_dropout=0.5, dropout_before_mlp=before)
    features = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 8))
    variables = head.init(jax.random.PRNGKey(1), features)
    _, state = head.apply(
        variables,
        features,
        train=True,
        rngs={"dropout": jax.random.PRNGKey(2)},
        capture_intermediates=True,
        mutable=["intermediates"],
    )
    pooled = np.asarray(state["intermediates"]["pre_logits"][0])
    fc1 = meta.unbox(variables)["params"]["fc"]["fc1"]
    fc1_out = np.asarray(state["intermediates"]["fc"]["fc1"]["__call__"][0])
    undropped = pooled @ np.asarray(fc1["kernel"]) + np.asarray(fc1["bias"])
    assert np.allclose(fc1_out, undropped, atol=1e-5) is (not before)
