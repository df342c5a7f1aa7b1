"""FFNet's FFNified attention: the official formula, its inference fusion, gradients, BatchNorm state."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers.conv import pad_kernel
from mixtok.mixers import registry
from mixtok.mixers.ffnet import FFNifiedAttention, fuse_ffnified_attention, fuse_repvgg_dw
from tests.helpers import random_variables


def _random_variables(module, x, seed=0):
    """Every parameter and BatchNorm statistic drawn at random (scale/var positive), on init's shapes."""
    return random_variables(module, x, seed=seed, std=0.3)


def _depthwise(z, kernel, bias=0.0):
    """Direct zero-padded k x k depthwise correlation of z [H, W, C] with kernel [k, k, 1, C]."""
    k, (h, w, _) = kernel.shape[0], z.shape
    padded = np.pad(z, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = np.zeros_like(z) + bias
    for i in range(k):
        for j in range(k):
            out += padded[i : i + h, j : j + w] * kernel[i, j, 0]
    return out


def _bn(z, p, s):
    return (z - s["mean"]) / np.sqrt(s["var"] + 1e-5) * p["scale"] + p["bias"]


def _gelu(a):
    from scipy.special import erf

    return 0.5 * a * (1.0 + erf(a / np.sqrt(2.0)))


def _direct_token_mixer(x, params, stats):
    """The official Token_Mixer.forward (un-fused, eval mode) per sample in float64 numpy."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    s = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), stats)

    def conv(z, name):
        if "conv1" in p[name]:  # RepVGGDW: BN(dw7x7) + BN(dw3x3)
            return sum(
                _bn(_depthwise(z, p[name][b]["conv"]["kernel"]), p[name][b]["bn"], s[name][b]["bn"])
                for b in ("conv", "conv1")
            )
        return _depthwise(z, p[name]["kernel"], p[name]["bias"])

    out = []
    for sample in np.asarray(x, np.float64):
        y = _bn(sample @ p["fc"]["conv"]["kernel"][0, 0], p["fc"]["bn"], s["fc"]["bn"])
        out.append(conv(_gelu(conv(y, "conv1")), "conv2"))
    return np.stack(out)


def test_ffnified_attention_is_registered_by_name():
    assert registry.get("ffnified_attention") is FFNifiedAttention


@pytest.mark.parametrize("kernel_sizes", [(7, 7), (3, 7), (3, 3)])
def test_token_mixer_matches_the_official_formula_written_out_directly(kernel_sizes):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 8, 4)), jnp.float32)
    mixer = FFNifiedAttention(4, *kernel_sizes)
    variables = _random_variables(mixer, x)
    got = jax.jit(mixer.apply)(variables, x)
    expected = _direct_token_mixer(x, variables["params"], variables["batch_stats"])
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_sizes", [(7, 7), (3, 7)])
def test_fused_mixer_equals_the_training_form_in_eval_mode(kernel_sizes):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 10, 7, 6)), jnp.float32)
    mixer = FFNifiedAttention(6, *kernel_sizes)
    variables = _random_variables(mixer, x)
    fused_variables = fuse_ffnified_attention(variables)
    fused = FFNifiedAttention(6, *kernel_sizes, fused=True)
    shapes = nn.meta.unbox(jax.eval_shape(fused.init, jax.random.PRNGKey(0), x))
    assert jax.tree_util.tree_structure(shapes) == jax.tree_util.tree_structure(fused_variables)
    assert fused_variables["params"]["conv2"]["kernel"].shape == (7, 7, 1, 6)  # one 7x7 dw conv per RepVGGDW
    expected = jax.jit(mixer.apply)(variables, x)
    got = jax.jit(fused.apply)(fused_variables, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)


def test_repvgg_fusion_pads_the_3x3_branch_into_the_centre_of_the_7x7():
    rng = np.random.default_rng(3)
    branch = lambda k: {
        "conv": {"kernel": jnp.asarray(rng.normal(size=(k, k, 1, 2)), jnp.float32)},  # noqa
        "bn": {"scale": jnp.ones(2), "bias": jnp.asarray([0.5, -1.0])},
    }
    params = {"conv": branch(7), "conv1": branch(3)}
    stats = {name: {"bn": {"mean": jnp.zeros(2), "var": jnp.full(2, 1.0 - 1e-5)}} for name in params}
    fused = fuse_repvgg_dw(params, stats)  # identity BatchNorms: the kernels just add up
    expected = params["conv"]["conv"]["kernel"] + pad_kernel(params["conv1"]["conv"]["kernel"], 7)
    np.testing.assert_allclose(np.asarray(fused["kernel"]), np.asarray(expected), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(fused["bias"]), [1.0, -2.0], rtol=1e-6)


def test_gradients_are_finite_and_training_updates_the_running_statistics():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(2, 8, 8, 4)) + 0.5, jnp.float32)
    mixer = FFNifiedAttention(4)
    variables = _random_variables(mixer, x)

    def loss(params):
        y, state = mixer.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(jnp.sin(y)), state["batch_stats"]

    grads, new_stats = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).sum()) > 0, path
    old, new = variables["batch_stats"]["fc"]["bn"], new_stats["fc"]["bn"]
    assert not np.allclose(np.asarray(old["mean"]), np.asarray(new["mean"]))


def test_bad_kernel_sizes_and_channels_are_rejected_with_the_values():
    x = jnp.zeros((1, 8, 8, 4))
    with pytest.raises(ValueError, match="odd and positive.*kernel_size1=4"):
        FFNifiedAttention(4, kernel_size1=4).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"FFNifiedAttention\(dim=6\).*\(1, 8, 8, 4\)"):
        FFNifiedAttention(6).init(jax.random.PRNGKey(0), x)
