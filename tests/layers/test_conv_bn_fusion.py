"""ConvBN against a direct lax conv + BatchNorm formula, and its fusion into one conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers.conv import ConvBN, conv_bn_variables, fuse_conv_bn, pad_kernel


def _randomised(variables, seed=1):
    """Random BatchNorm affine weights and running statistics, so the fusion test means something."""
    rng = np.random.default_rng(seed)
    out = jax.tree_util.tree_map(lambda v: jnp.asarray(rng.normal(size=v.shape), v.dtype), variables)
    out["batch_stats"]["bn"]["var"] = jnp.abs(out["batch_stats"]["bn"]["var"]) + 0.5
    return out


@pytest.mark.parametrize("kernel_size,stride,groups", [(3, 1, 1), (3, 2, 4), (7, 1, 8), (1, 1, 1)])
def test_fused_conv_equals_conv_then_batchnorm_in_eval_mode(kernel_size, stride, groups):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 9, 8)), jnp.float32)
    module = ConvBN(8, kernel_size, stride, groups)
    variables = _randomised(nn.meta.unbox(module.init(jax.random.PRNGKey(0), x)))
    y = module.apply(variables, x)
    kernel, bias = fuse_conv_bn(*conv_bn_variables(variables, ()))
    pad = (kernel_size - 1) // 2
    fused = (
        jax.lax.conv_general_dilated(
            x,
            kernel,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups,
            precision="highest",
        )
        + bias
    )
    np.testing.assert_allclose(np.asarray(y), np.asarray(fused), rtol=1e-5, atol=1e-5)


def test_train_mode_normalises_with_batch_statistics_and_updates_the_running_ones():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6, 6, 3)) * 3 + 1, jnp.float32)
    module = ConvBN(5, 3)
    variables = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))
    y, updated = module.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(y.mean((0, 1, 2))), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(y.var((0, 1, 2))), 1.0, rtol=1e-3)
    z = jax.lax.conv_general_dilated(
        x,
        variables["params"]["conv"]["kernel"],
        (1, 1),
        ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision="highest",
    )
    np.testing.assert_allclose(
        np.asarray(updated["batch_stats"]["bn"]["mean"]), 0.1 * np.asarray(z.mean((0, 1, 2))), rtol=1e-4, atol=1e-6
    )  # PyTorch's momentum 0.1 from a zero start


def test_pad_kernel_centres_a_small_kernel():
    kernel = jnp.ones((3, 3, 1, 2))
    padded = pad_kernel(kernel, 7)
    assert padded.shape == (7, 7, 1, 2) and float(padded.sum()) == 18.0 and float(padded[3, 3, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="3x3 kernel in 6x6"):
        pad_kernel(kernel, 6)


def test_groups_that_do_not_divide_the_channels_are_rejected():
    with pytest.raises(ValueError, match="groups=3"):
        ConvBN(8, 3, groups=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 8)))
