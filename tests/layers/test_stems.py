"""Conv stems and patch embeddings against direct lax convs and numpy norms; position-embedding resizing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers import PatchEmbed, conv_stem, resize_pos_embed


def _conv(x, kernel, stride, pad):
    return np.asarray(
        jax.lax.conv_general_dilated(
            jnp.asarray(x, jnp.float32),
            kernel,
            (stride, stride),
            ((pad, pad), (pad, pad)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision="highest",
        ),
        np.float64,
    )


def _layer_norm(z, params, eps):
    return (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + eps) * np.asarray(
        params["scale"]
    ) + np.asarray(params["bias"])


class _Stem(nn.Module):
    names: tuple
    final_activation: bool = False
    use_bias: bool = False

    @nn.compact
    def __call__(self, x, *, train=False):
        return conv_stem(
            x,
            (4, 8),
            strides=(2, 1),
            names=self.names,
            activation="relu",
            final_activation=self.final_activation,
            use_bias=self.use_bias,
            train=train,
        )


@pytest.mark.parametrize(
    "names,final_activation", [(("stem_0", "stem_1"), False), ((("proj1", "norm1"), ("proj2", "norm2")), True)]
)
def test_conv_stem_is_conv_bn_relu_layers_under_the_given_names(names, final_activation):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 6, 3)), jnp.float32)
    module = _Stem(names, final_activation)
    variables = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))
    rng = np.random.default_rng(1)
    variables = jax.tree_util.tree_map(
        lambda v: jnp.asarray(np.abs(rng.normal(size=v.shape)) + 0.1, v.dtype), variables
    )
    if isinstance(names[0], str):
        assert sorted(variables["params"]) == list(names) and sorted(variables["params"]["stem_0"]) == ["bn", "conv"]
        layers = [
            (variables["params"][n]["conv"], variables["params"][n]["bn"], variables["batch_stats"][n]["bn"])
            for n in names
        ]
    else:
        assert sorted(variables["params"]) == ["norm1", "norm2", "proj1", "proj2"]
        layers = [(variables["params"][c], variables["params"][n], variables["batch_stats"][n]) for c, n in names]
    h = np.asarray(x, np.float64)
    for i, ((conv, bn, stats), stride) in enumerate(zip(layers, (2, 1))):
        h = _conv(h, conv["kernel"], stride, 1)
        h = (h - np.asarray(stats["mean"])) / np.sqrt(np.asarray(stats["var"]) + 1e-5) * np.asarray(bn["scale"])
        h = h + np.asarray(bn["bias"])
        if i == 0 or final_activation:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), h, rtol=1e-4, atol=1e-4)


def test_conv_stem_rejects_a_bias_on_a_conv_bn_and_mismatched_lengths():
    x = jnp.zeros((1, 8, 8, 3))
    with pytest.raises(ValueError, match="layer 'stem_0' is a ConvBN"):
        _Stem(("stem_0", "stem_1"), use_bias=True).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="one entry per layer"):
        _Stem(("stem_0",)).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("kernel_size,stride,norm_first", [(7, 4, False), (3, 2, False), (2, 2, True)])
def test_patch_embed_is_a_strided_conv_and_a_layernorm(kernel_size, stride, norm_first):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 12, 4)), jnp.float32)
    module = PatchEmbed(6 if not norm_first else 5, kernel_size, stride, norm_epsilon=1e-5, norm_first=norm_first)
    variables = nn.meta.unbox(module.init(jax.random.PRNGKey(0), x))
    rng = np.random.default_rng(3)
    params = jax.tree_util.tree_map(lambda v: jnp.asarray(rng.normal(size=v.shape), v.dtype), variables["params"])
    assert sorted(params) == ["norm", "proj"]
    pad = (kernel_size - 1) // 2
    if norm_first:
        z = _conv(_layer_norm(np.asarray(x, np.float64), params["norm"], 1e-5), params["proj"]["kernel"], stride, pad)
        want = z + np.asarray(params["proj"]["bias"])
    else:
        want = _layer_norm(
            _conv(x, params["proj"]["kernel"], stride, pad) + np.asarray(params["proj"]["bias"]), params["norm"], 1e-5
        )
    np.testing.assert_allclose(np.asarray(module.apply({"params": params}, x)), want, rtol=1e-4, atol=1e-4)


def test_resize_pos_embed_is_bilinear_with_half_pixel_centres():
    pos = jnp.asarray([[1.0, 3.0], [5.0, 7.0]]).reshape(1, 2, 2, 1)
    # PyTorch's F.interpolate(scale 2, bilinear, align_corners=False) along one axis: a, .75a+.25b, .25a+.75b, b.
    row = np.array([1.0, 1.5, 2.5, 3.0])
    want = np.stack([row, row + 1.0, row + 3.0, row + 4.0])
    np.testing.assert_allclose(np.asarray(resize_pos_embed(pos, 4, 4))[0, :, :, 0], want, atol=1e-6)
    assert resize_pos_embed(pos, 2, 2) is pos
