"""CAS-ViT's additive token mixer (CATM): the official formula, gradients, BatchNorm state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers import registry
from mixtok.mixers.cas_vit import AdditiveTokenMixer
from tests.helpers import random_variables


def _random_variables(module, x, seed=0):
    """Every parameter and BatchNorm statistic drawn at random (scale/var positive), on init's shapes."""
    return random_variables(module, x, seed=seed, std=0.5)


def _depthwise3x3(z, conv):
    """Direct zero-padded 3x3 depthwise correlation of z [H, W, C] with conv {kernel [3, 3, 1, C], bias}."""
    h, w, _ = z.shape
    padded = np.pad(z, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros_like(z) + conv["bias"]
    for i in range(3):
        for j in range(3):
            out += padded[i : i + h, j : j + w] * conv["kernel"][i, j, 0]
    return out


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _direct_catm(x, params, stats):
    """The official AdditiveTokenMixer.forward written out per sample in float64 numpy (eval mode)."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    s = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), stats)
    c = x.shape[-1]
    out = []
    for sample in np.asarray(x, np.float64):
        qkv = sample @ p["qkv"]["kernel"][0, 0]
        branches = []
        for name, z in (("q", qkv[..., :c]), ("k", qkv[..., c : 2 * c])):
            spatial, channel = p[f"oper_{name}_0"], p[f"oper_{name}_1"]
            bn, bn_stats = spatial["block_1"], s[f"oper_{name}_0"]["block_1"]
            g = _depthwise3x3(z, spatial["block_0"])
            g = (g - bn_stats["mean"]) / np.sqrt(bn_stats["var"] + 1e-5) * bn["scale"] + bn["bias"]
            z = z * _sigmoid(np.maximum(g, 0.0) @ spatial["block_3"]["kernel"][0, 0])
            z = z * _sigmoid(z.mean(axis=(0, 1)) @ channel["block_1"]["kernel"][0, 0])
            branches.append(z)
        mixed = _depthwise3x3(branches[0] + branches[1], p["dwc"]) * qkv[..., 2 * c :]
        out.append(_depthwise3x3(mixed, p["proj"]))
    return np.stack(out)


def test_catm_is_registered_by_name():
    assert registry.get("additive_token_mixer") is AdditiveTokenMixer


def test_catm_matches_the_official_formula_written_out_directly():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 6, 4)), jnp.float32)
    mixer = AdditiveTokenMixer(dim=4)
    variables = _random_variables(mixer, x)
    params = variables["params"]
    assert params["qkv"]["kernel"].shape == (1, 1, 4, 12) and "bias" not in params["qkv"]  # attn_bias=False
    assert params["oper_q_0"]["block_3"]["kernel"].shape == (1, 1, 4, 1)  # one spatial gate per position
    got = jax.jit(mixer.apply)(variables, x)
    expected = _direct_catm(x, params, variables["batch_stats"])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5, atol=2e-5)


def test_gradients_reach_every_parameter_and_are_finite():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 4, 8)), jnp.float32)
    mixer = AdditiveTokenMixer(dim=8)
    variables = _random_variables(mixer, x)

    def loss(params):
        y, _ = mixer.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(jnp.sin(y))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))), path
        assert float(jnp.abs(leaf).sum()) > 0, path


def test_training_updates_the_running_statistics_and_eval_uses_them():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 4, 8)) + 1.0, jnp.float32)
    mixer = AdditiveTokenMixer(dim=8)
    variables = _random_variables(mixer, x)
    _, state = mixer.apply(variables, x, train=True, mutable=["batch_stats"])
    old, new = variables["batch_stats"]["oper_k_0"]["block_1"], state["batch_stats"]["oper_k_0"]["block_1"]
    assert not np.allclose(np.asarray(old["mean"]), np.asarray(new["mean"]))
    # Eval normalises with the running statistics: a sample's output ignores the rest of the batch.
    evaluate = jax.jit(mixer.apply)
    trained = {"params": variables["params"], "batch_stats": state["batch_stats"]}
    first, second = evaluate(trained, x), evaluate(trained, x.at[1].set(3.0 * x[1]))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(second[0]), rtol=1e-6, atol=1e-6)


def test_wrong_channel_count_is_rejected_with_the_shape():
    with pytest.raises(ValueError, match=r"AdditiveTokenMixer\(dim=8\) takes NHWC.*\(1, 4, 4, 6\)"):
        AdditiveTokenMixer(dim=8).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 6)))
