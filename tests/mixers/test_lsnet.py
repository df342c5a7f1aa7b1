"""LSNet's SKA against an explicit loop with the interleaved channel-to-kernel mapping; LSConv as a mixer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.mixers.lsnet import LSConv, small_kernel_aggregation
from mixtok.mixers.registry import get as get_mixer
from tests.helpers import random_variables


def _loop_ska(x, kernels, group_of_channel):
    """out[b, h, w, c] = sum over the 3x3 taps of x[b, h + kh - 1, w + kw - 1, c] * kernels[b, h, w, g(c), tap]."""
    x, kernels = np.asarray(x, np.float64), np.asarray(kernels, np.float64)
    batch, height, width, channels = x.shape
    out = np.zeros_like(x)
    for b in range(batch):
        for h in range(height):
            for w in range(width):
                for c in range(channels):
                    for kh in range(3):
                        for kw in range(3):
                            hh, ww = h + kh - 1, w + kw - 1
                            if 0 <= hh < height and 0 <= ww < width:
                                g = group_of_channel(c)
                                out[b, h, w, c] += x[b, hh, ww, c] * kernels[b, h, w, g, 3 * kh + kw]
    return out


def _inputs(channels=16, groups=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, 5, channels)).astype(np.float32)
    kernels = rng.normal(size=(2, 3, 5, groups, 9)).astype(np.float32)
    return x, kernels


def test_ska_equals_the_pixel_loop_with_interleaved_groups():
    x, kernels = _inputs()
    groups = kernels.shape[3]
    got = jax.jit(small_kernel_aggregation)(x, kernels)
    np.testing.assert_allclose(np.asarray(got), _loop_ska(x, kernels, lambda c: c % groups), rtol=1e-5, atol=1e-5)


def test_ska_is_not_the_blocked_c_div_8_mapping():
    # The official Triton kernel reads weight group `ci % wc`; a blocked mapping (channels 0-7 -> group 0, ...)
    # is a different operator, and this test fails if SKA used it.
    x, kernels = _inputs(channels=16, groups=2)
    got = np.asarray(jax.jit(small_kernel_aggregation)(x, kernels))
    blocked = _loop_ska(x, kernels, lambda c: c // 8)
    assert np.abs(got - blocked).max() > 1e-1
    # Group 0's kernel is the identity (centre tap 1) and group 1's is zero: channels 0, 2, 4, ... pass unchanged.
    identity = np.zeros_like(kernels)
    identity[..., 0, 4] = 1.0
    out = np.asarray(small_kernel_aggregation(x, identity))
    np.testing.assert_allclose(out[..., 0::2], x[..., 0::2])
    np.testing.assert_array_equal(out[..., 1::2], 0.0)


def test_ska_rejects_mismatched_kernels():
    x, kernels = _inputs(channels=16, groups=4)
    with pytest.raises(ValueError, match="odd square number of taps; got 8"):
        small_kernel_aggregation(x, kernels[..., :8])
    with pytest.raises(ValueError, match="G dividing the 16 channels"):
        small_kernel_aggregation(x, np.zeros((2, 3, 5, 3, 9), np.float32))


def _random_variables(module, x, seed=0):
    return random_variables(module, x, seed=seed, std=0.3)


def test_ls_conv_layout_training_statistics_and_gradients():
    assert get_mixer("ls_conv") is LSConv
    x = np.random.default_rng(1).normal(size=(2, 6, 5, 16)).astype(np.float32)
    mixer = LSConv(dim=16)
    variables = _random_variables(mixer, x)
    params = variables["params"]
    # LKP: C -> C/2 bottleneck, depthwise 7x7, then 9 taps for each of the C/8 kernel groups.
    assert params["lkp"]["cv2"]["conv"]["kernel"].shape == (7, 7, 1, 8)
    assert params["lkp"]["cv4"]["kernel"].shape == (1, 1, 8, 18)
    assert params["lkp"]["norm"]["scale"].shape == (18,)

    def loss(p):
        y, state = mixer.apply(
            {"params": p, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(jnp.sin(y)), (y, state["batch_stats"])

    (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert y.shape == x.shape
    for path, leaf in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(leaf))) and float(jnp.abs(leaf).sum()) > 0, path
    assert not np.allclose(np.asarray(stats["bn"]["mean"]), np.asarray(variables["batch_stats"]["bn"]["mean"]))
    # Evaluation with running statistics: BN(SKA(x, LKP(x))) + x, each sample on its own.
    evaluate = jax.jit(lambda x: mixer.apply(variables, x))
    first = evaluate(x)
    moved = np.asarray(evaluate(np.concatenate([x[:1], -x[1:]])))
    np.testing.assert_allclose(moved[0], np.asarray(first)[0], rtol=1e-5, atol=1e-6)


def test_ls_conv_bad_width_names_the_value():
    with pytest.raises(ValueError, match="dim=20 must be even and divisible by channels_per_kernel=8"):
        jax.eval_shape(LSConv(20).init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 20)))
