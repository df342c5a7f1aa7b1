"""depthwise_conv2d (every impl) against lax.conv_general_dilated(feature_group_count=C), forward and gradients,
and Conv2d against flax's nn.Conv: the same parameters (tree, logical axes, values) and the same outputs."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers import Conv2d, conv2d, depthwise_conv2d
from mixtok.layers.depthwise import IMPLEMENTATIONS
from mixtok.layers.partitioning import param_with_axes

CHANNELS = 6


def _reference(x, kernel, stride, padding):
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
        precision="highest",
    )


def _inputs(shape, kernel_size, dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=shape), dtype)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, shape[-1])) / kernel_size, dtype)
    return x, kernel


def _forward_and_grads(fn, x, kernel, cotangent):
    """fn's output and its VJP to (x, kernel), under jit."""

    @jax.jit
    def run(x, kernel, cotangent):
        y, vjp = jax.vjp(fn, x, kernel)
        return y, *vjp(cotangent)

    return [np.asarray(a, np.float32) for a in run(x, kernel, cotangent)]


def _check(impl, x, kernel, stride, padding, atol, rtol=0.0):
    y_ref = _reference(x, kernel, stride, padding)
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=y_ref.shape), x.dtype)
    expected = _forward_and_grads(lambda a, b: _reference(a, b, stride, padding), x, kernel, cotangent)
    actual = _forward_and_grads(
        lambda a, b: depthwise_conv2d(a, b, stride=stride, padding=padding, impl=impl), x, kernel, cotangent
    )
    for name, got, want in zip(("y", "dx", "dkernel"), actual, expected, strict=True):
        assert got.shape == want.shape, name
        scale = max(1.0, float(np.max(np.abs(want))))  # the kernel gradient sums B * H * W products
        np.testing.assert_allclose(got, want, atol=atol * scale, rtol=rtol, err_msg=name)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("kernel_size,stride", list(itertools.product((3, 5, 7, 9), (1, 2))))
def test_depthwise_conv2d_equals_grouped_conv_and_its_gradients_fp32(impl, kernel_size, stride):
    pad = kernel_size // 2
    for grid in ((9, 9), (10, 7)):  # odd and even sides
        x, kernel = _inputs((2, *grid, CHANNELS), kernel_size)
        _check(impl, x, kernel, stride, ((pad, pad), (pad, pad)), atol=1e-5)


@pytest.mark.parametrize("impl", ("shifted", "auto"))
@pytest.mark.parametrize(
    "kernel_size,stride,padding",
    [
        (4, 1, ((1, 2), (2, 1))),  # an even kernel, uneven padding
        (2, 2, "VALID"),  # S2AFormer's strided reduction: kernel = stride
        (4, 4, "VALID"),
        (3, 2, "SAME"),
        (5, 2, ((0, 0), (3, 1))),
        (3, 1, 0),
        (3, 2, ((2, 3), (4, 0))),  # more padding than the kernel reaches: zero gradient there
    ],
)
def test_depthwise_conv2d_paddings_even_kernels_and_strides(impl, kernel_size, stride, padding):
    for grid in ((8, 8), (9, 6)):
        x, kernel = _inputs((2, *grid, CHANNELS), kernel_size, seed=kernel_size)
        _check(impl, x, kernel, stride, padding, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("kernel_size,stride", [(3, 2), (7, 2), (7, 1)])
def test_depthwise_conv2d_with_a_channel_multiplier_is_the_grouped_conv(impl, kernel_size, stride):
    # FFNet's downsampling: C groups, 2C outputs; output channel o reads input channel o // 2.
    rng = np.random.default_rng(kernel_size)
    x = jnp.asarray(rng.normal(size=(2, 9, 8, CHANNELS)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, 2 * CHANNELS)) / kernel_size, jnp.float32)
    pad = kernel_size // 2
    _check(impl, x, kernel, stride, ((pad, pad), (pad, pad)), atol=1e-5)


@pytest.mark.parametrize("kernel_size,stride", [(3, 1), (7, 1), (3, 2), (9, 2)])
def test_depthwise_conv2d_bf16_matches_within_bf16_tolerance(kernel_size, stride):
    pad = kernel_size // 2
    x, kernel = _inputs((2, 11, 8, CHANNELS), kernel_size, jnp.bfloat16)
    y = depthwise_conv2d(x, kernel, stride=stride, padding=pad, impl="shifted")
    assert y.dtype == jnp.bfloat16
    # Both against the float32 conv of the same (bf16-rounded) values, and XLA's own bf16 conv.
    exact = _reference(x.astype(jnp.float32), kernel.astype(jnp.float32), stride, ((pad, pad), (pad, pad)))
    np.testing.assert_allclose(np.asarray(y, np.float32), np.asarray(exact), atol=2e-2, rtol=1e-2)
    _check("shifted", x, kernel, stride, ((pad, pad), (pad, pad)), atol=2e-2, rtol=2e-2)


def test_depthwise_conv2d_auto_is_xla_on_gpu_and_shifted_on_cpu():
    x, kernel = _inputs((1, 6, 6, CHANNELS), 3)

    def primitives(platform):
        jaxpr = jax.make_jaxpr(lambda a, b: depthwise_conv2d(a, b, padding=1, platform=platform))(x, kernel)
        return str(jaxpr)

    assert "conv_general_dilated" in primitives("gpu") and "conv_general_dilated" in primitives("tpu")
    assert "conv_general_dilated" not in primitives("cpu")


def test_depthwise_conv2d_rejects_bad_arguments_in_one_line():
    x, kernel = _inputs((1, 6, 6, CHANNELS), 3)
    with pytest.raises(
        ValueError, match=r"^depthwise_conv2d: impl 'fast' is not one of \('auto', 'xla', 'shifted'\)\.$"
    ):
        depthwise_conv2d(x, kernel, impl="fast")
    with pytest.raises(ValueError, match=r"kernel \[kh, kw, 1, C \* m\]; got x \(1, 6, 6, 6\), kernel \(3, 3, 2, 6\)"):
        depthwise_conv2d(x, jnp.zeros((3, 3, 2, CHANNELS)))
    with pytest.raises(ValueError, match=r"^padding 'CIRCULAR' is not 'SAME', 'VALID'"):
        depthwise_conv2d(x, kernel, padding="CIRCULAR")
    with pytest.raises(ValueError, match=r"^stride must be a positive int or a pair of them; got 0\.$"):
        depthwise_conv2d(x, kernel, stride=0)
    with pytest.raises(ValueError, match=r"smaller than the kernel \(3\)"):
        depthwise_conv2d(x[:, :2], kernel)


# ---- Conv2d against nn.Conv -------------------------------------------------------------------------------------


def _conv_pair(features, kernel_size, **kwargs):
    """(Conv2d, nn.Conv) built alike, with logical-axis-boxed initialisers as mixtok's convs have."""
    kwargs.setdefault(
        "kernel_init", param_with_axes(nn.initializers.truncated_normal(0.3), (None, None, None, "conv_out"))
    )
    kwargs.setdefault("bias_init", param_with_axes(nn.initializers.normal(0.5), ("conv_out",)))
    kernel = (kernel_size, kernel_size)
    return Conv2d(features, kernel, **kwargs), nn.Conv(features, kernel, **kwargs)


CONV_CASES = {
    "depthwise 7x7": (8, 7, dict(padding=((3, 3), (3, 3)), feature_group_count=8)),
    "depthwise 3x3 stride 2, no bias": (8, 3, dict(strides=2, padding=1, feature_group_count=8, use_bias=False)),
    "depthwise 2x2 VALID stride 2": (8, 2, dict(strides=(2, 2), padding="VALID", feature_group_count=8)),
    "depthwise SAME": (8, 5, dict(feature_group_count=8)),
    "dense 3x3": (5, 3, dict(padding=1)),
    "grouped (2 groups)": (6, 3, dict(padding=((1, 1), (0, 2)), feature_group_count=2)),
    "depthwise, channel multiplier 2": (16, 3, dict(padding=1, feature_group_count=8)),
    "bf16 compute": (8, 3, dict(padding=1, feature_group_count=8, dtype=jnp.bfloat16)),
    "bf16 params": (8, 3, dict(padding=1, feature_group_count=8, param_dtype=jnp.bfloat16)),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_has_nn_convs_parameters_and_outputs(case):
    features, kernel_size, kwargs = CONV_CASES[case]
    ours, flax_conv = _conv_pair(features, kernel_size, **kwargs)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 9, 8, 8)), jnp.float32)
    key = jax.random.PRNGKey(3)
    boxed, boxed_flax = ours.init(key, x), flax_conv.init(key, x)
    # The same tree, logical axis names, shapes, dtypes and values for the same key.
    assert jax.tree_util.tree_structure(boxed) == jax.tree_util.tree_structure(boxed_flax)
    for leaf, leaf_flax in zip(
        jax.tree_util.tree_leaves(boxed, is_leaf=lambda v: isinstance(v, nn.Partitioned)),
        jax.tree_util.tree_leaves(boxed_flax, is_leaf=lambda v: isinstance(v, nn.Partitioned)),
        strict=True,
    ):
        assert leaf.names == leaf_flax.names
        assert leaf.value.dtype == leaf_flax.value.dtype
        np.testing.assert_array_equal(np.asarray(leaf.value), np.asarray(leaf_flax.value))
    variables = nn.meta.unbox(boxed)
    y, y_flax = jax.jit(ours.apply)(variables, x), jax.jit(flax_conv.apply)(variables, x)
    assert y.shape == y_flax.shape and y.dtype == y_flax.dtype
    tolerance = 2e-2 if jnp.bfloat16 in (kwargs.get("dtype"), kwargs.get("param_dtype")) else 1e-5
    np.testing.assert_allclose(
        np.asarray(y, np.float32), np.asarray(y_flax, np.float32), atol=tolerance, rtol=tolerance
    )


def test_conv2d_takes_any_leading_batch_axes_as_nn_conv():
    ours, flax_conv = _conv_pair(8, 3, padding=1, feature_group_count=8)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 6, 5, 8)), jnp.float32)
    variables = nn.meta.unbox(flax_conv.init(jax.random.PRNGKey(0), x))
    for inputs in (x, x[0, 0]):  # two batch axes; none
        y, y_flax = ours.apply(variables, inputs), flax_conv.apply(variables, inputs)
        assert y.shape == y_flax.shape
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_flax), atol=1e-5)


def test_conv2d_depthwise_impls_agree_and_gradients_match_nn_conv():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 10, 9, 8)), jnp.float32)
    flax_conv = nn.Conv(8, (7, 7), padding=3, feature_group_count=8)
    variables = flax_conv.init(jax.random.PRNGKey(0), x)

    def loss(module):
        return jax.jit(jax.grad(lambda v, x: jnp.sum(jnp.sin(module.apply(v, x))), argnums=(0, 1)))(variables, x)

    expected = loss(flax_conv)
    for impl in IMPLEMENTATIONS:
        got = loss(Conv2d(8, (7, 7), padding=3, feature_group_count=8, depthwise_impl=impl))
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-5)


def test_conv2d_factory_builds_conv2d_with_pytorch_padding_and_logical_axes():
    module = conv2d(8, 3, groups=8, name="dw")
    assert isinstance(module, Conv2d) and module.padding == ((1, 1), (1, 1)) and module.feature_group_count == 8
    boxed = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 5, 8)))["params"]
    assert boxed["kernel"].names == (None, None, None, "conv_out") and boxed["bias"].names == ("conv_out",)
    np.testing.assert_array_equal(np.asarray(boxed["bias"].value), np.zeros(8))


def test_conv2d_rejects_bad_arguments_in_one_line():
    x = jnp.zeros((1, 5, 5, 8))
    with pytest.raises(
        ValueError, match=r"^Conv2d: depthwise_impl 'fast' is not one of \('auto', 'xla', 'shifted'\)\.(\n|$)"
    ):
        Conv2d(8, 3, feature_group_count=8, depthwise_impl="fast").init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match=r"^Conv2d: feature_group_count=3 must divide the input channels \(8\)"):
        Conv2d(6, 3, feature_group_count=3).init(jax.random.PRNGKey(0), x)
