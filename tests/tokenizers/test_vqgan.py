"""MaskGIT's VQGAN: the official parameter count, a torch rendering of the official PyTorch port, the contract."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mixtok.models import count_params
from mixtok.tokenizers import vqgan_variants
from mixtok.tokenizers.registry import create_tokenizer, list_tokenizers, tokenizer_spec
from mixtok.tokenizers.vqgan import VQGAN, average_pool_2x2, upsample_nearest_2x

# bytedance/1d-tokenizer @ 942a96f: modeling/modules/maskgit_vqgan.py, built as TiTok's PretrainedTokenizer:
# encoder 23,775,104 + decoder 30,478,339 + quantize (1024 x 256 codebook) 262,144.
OFFICIAL_MASKGIT_VQGAN_PARAMS = 54_515_587
TINY = dict(
    filters=32,
    channel_multipliers=(1, 2, 2),
    num_res_blocks=1,
    quantizer={"name": "vq", "codebook_size": 64, "code_dim": 8},
)


def _images(batch, height, width, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, size=(batch, height, width, 3)), jnp.float32)


def _random_variables(model, images, seed=0):
    """Variables of the model's shapes, drawn in numpy: kernels N(0, 1 / fan_in), norm scales 1 + N(0, 0.1^2),
    biases N(0, 0.1^2), codebooks N(0, 1) (spread like the encoder's outputs, so nearest codes differ by position).
    Cheaper than compiling flax's initialisers, and no parameter is left at a value that would hide a mix-up."""
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), images))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            values = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name == "scale":
            values = 1.0 + 0.1 * rng.normal(size=shape)
        else:
            values = (0.1 if name == "bias" else 1.0) * rng.normal(size=shape)
        return jnp.asarray(values, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@pytest.fixture(scope="module")
def tiny():
    """TINY on non-square 16 x 24 images, random variables, and every output the tests read, from one jit."""
    model = VQGAN(image_size=16, **TINY)
    images = _images(2, 16, 24, seed=1)

    variables = _random_variables(model, images)

    @jax.jit
    def run(variables, images):
        out = model.apply(variables, images)
        encoded = model.apply(variables, images, method="encode")
        return dict(
            out=out,
            encoded=encoded,
            latents=model.apply(variables, images, method=lambda module, x: module.encoder(x)),
            from_indices=model.apply(variables, encoded.indices, method="decode_indices"),
            from_values=model.apply(variables, encoded.quantized, method="decode"),
        )

    outputs = run(variables, images)
    return model, images, variables, outputs


def expected_params(filters, channel_multipliers, num_res_blocks, codebook_size, code_dim, conv_downsample=False):
    """The parameter count of the architecture in the module docstring, by formula."""

    def conv(k, c_in, c_out, bias=True):
        return k * k * c_in * c_out + (c_out if bias else 0)

    def block(c_in, c_out):  # two norms (scale + bias), two 3x3 convs without bias, the 1x1 shortcut if needed
        return (
            2 * c_in
            + 2 * c_out
            + conv(3, c_in, c_out, False)
            + conv(3, c_out, c_out, False)
            + (conv(1, c_out, c_out, False) if c_in != c_out else 0)
        )

    widths = [filters * m for m in channel_multipliers]
    total, width = conv(3, 3, filters, False), filters
    for level, level_width in enumerate(widths):
        for _ in range(num_res_blocks):
            total, width = total + block(width, level_width), level_width
        if conv_downsample and level < len(widths) - 1:
            total += conv(4, width, width)
    total += num_res_blocks * block(width, width) + 2 * width + conv(1, width, code_dim)
    total += conv(3, code_dim, width) + num_res_blocks * block(width, width)
    for level in reversed(range(len(widths))):
        for _ in range(num_res_blocks):
            total, width = total + block(width, widths[level]), widths[level]
        if level > 0:
            total += conv(3, width, width)
    return total + 2 * width + conv(3, width, 3) + codebook_size * code_dim


def test_the_zoo_has_maskgit_vqgan_and_a_tiny_stand_in_of_the_expected_sizes():
    assert {"maskgit_vqgan", "vqgan_tiny"} <= set(list_tokenizers("*vqgan*"))
    assert tokenizer_spec("vqgan_tiny").official_params is None
    assert expected_params(128, (1, 1, 2, 2, 4), 2, 1024, 256) == OFFICIAL_MASKGIT_VQGAN_PARAMS
    tiny = vqgan_variants.VQGAN_TINY
    model = create_tokenizer("vqgan_tiny")
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    assert count_params(variables) == expected_params(
        tiny["filters"],
        tiny["channel_multipliers"],
        tiny["num_res_blocks"],
        tiny["quantizer"]["codebook_size"],
        tiny["quantizer"]["code_dim"],
    )
    assert model.num_latent_tokens == 16 * 16
    strided = VQGAN(image_size=16, conv_downsample=True, **TINY)
    variables = jax.eval_shape(strided.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32))
    assert count_params(variables) == expected_params(32, (1, 2, 2), 1, 64, 8, conv_downsample=True)


def test_maskgit_vqgan_has_the_official_parameter_count_and_a_16x16_grid():
    model = create_tokenizer("maskgit_vqgan")
    images = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
    assert count_params(variables) == OFFICIAL_MASKGIT_VQGAN_PARAMS == tokenizer_spec("maskgit_vqgan").official_params
    assert variables["params"]["quantizer"]["codebook"].value.shape == (1024, 256)
    encoded = jax.eval_shape(lambda v, x: model.apply(v, x, method="encode"), variables, images)
    assert encoded.indices.shape == (1, 16, 16) and encoded.quantized.shape == (1, 16, 16, 256)
    assert model.downsampling_factor == 16 and model.num_latent_tokens == 256


def test_shapes_follow_the_downsampling_factor_on_non_square_images(tiny):
    model, images, _, outputs = tiny
    out = outputs["out"]
    assert model.downsampling_factor == 4 and model.num_latent_tokens == 16
    assert out.reconstruction.shape == images.shape and out.reconstruction.dtype == jnp.float32
    assert out.quantizer.indices.shape == (2, 4, 6) and out.quantizer.quantized.shape == (2, 4, 6, 8)
    assert int(out.num_tokens) == 24
    assert out.quantizer.loss.shape == () and np.isfinite(float(out.quantizer.loss))


def test_dtype_sets_the_computation_and_param_dtype_the_encoder_and_decoder_parameters():
    model = VQGAN(image_size=16, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16, **TINY)
    images = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
    params = nn.meta.unbox(variables)["params"]
    assert {leaf.dtype for name in ("encoder", "decoder") for leaf in jax.tree_util.tree_leaves(params[name])} == {
        jnp.dtype(jnp.bfloat16)
    }
    assert params["quantizer"]["codebook"].dtype == jnp.float32  # the quantizer's own param_dtype (its mapping's)
    out = jax.eval_shape(model.apply, variables, images)
    # The quantizer works in float32 (mixtok.tokenizers.quantizers); the decoder computes in bfloat16.
    assert out.quantizer.quantized.dtype == jnp.float32 and out.reconstruction.dtype == jnp.bfloat16


def test_image_sides_must_be_multiples_of_the_downsampling_factor(tiny):
    model, _, variables, _ = tiny
    with pytest.raises(ValueError, match=r"18x16 is not divisible by the model's total stride 4"):
        model.apply(variables, _images(1, 18, 16))
    with pytest.raises(ValueError, match="image_size 18 is not a multiple of the downsampling factor 4"):
        VQGAN(image_size=18, **TINY).apply(variables, _images(1, 16, 16))


def test_vqgan_has_no_prefix_decoding(tiny):
    model, images, variables, _ = tiny
    assert VQGAN.PREFIX_DECODING is False
    with pytest.raises(ValueError, match="VQGAN has no prefix decoding"):
        model.apply(variables, images, num_tokens=8)
    with pytest.raises(ValueError, match="VQGAN has no prefix decoding"):
        model.apply(variables, jnp.zeros((1, 4, 6), jnp.int32), num_tokens=8, method="decode_indices")


def test_bad_options_name_the_value_and_the_valid_ones():
    images = _images(1, 16, 16)
    with pytest.raises(ValueError, match="Unknown norm_type 'BN'.*Valid norm_types: GN, LN"):
        VQGAN(image_size=16, **{**TINY, "norm_type": "BN"}).init(jax.random.PRNGKey(0), images)
    with pytest.raises(ValueError, match=r"norm_groups=32 .* widths \[16, 32\]"):
        VQGAN(image_size=16, **{**TINY, "filters": 16}).init(jax.random.PRNGKey(0), images)


def test_decode_indices_of_the_codes_equals_decode_of_the_quantized_values(tiny):
    _, _, _, outputs = tiny
    assert len(np.unique(np.asarray(outputs["encoded"].indices))) > 4
    np.testing.assert_array_equal(np.asarray(outputs["from_indices"]), np.asarray(outputs["from_values"]))
    np.testing.assert_array_equal(np.asarray(outputs["from_values"]), np.asarray(outputs["out"].reconstruction))


def test_any_quantizer_plugs_in_fsq_sets_the_encoder_output_width():
    # FSQ levels (8, 5, 5, 5): the encoder ends in 4 channels and the decoder starts from 4 code channels.
    model = VQGAN(image_size=16, **{**TINY, "quantizer": {"name": "fsq", "levels": (8, 5, 5, 5)}})

    images = _images(2, 16, 16)
    variables = _random_variables(model, images)

    @jax.jit
    def run(variables, images):
        out = model.apply(variables, images)
        return out, model.apply(variables, out.quantizer.indices, method="decode_indices")

    out, from_indices = run(variables, images)
    assert variables["params"]["encoder"]["Conv_1"]["kernel"].shape == (1, 1, 64, 4)
    assert variables["params"]["decoder"]["Conv_0"]["kernel"].shape == (3, 3, 4, 64)
    assert out.quantizer.indices.shape == (2, 4, 4) and int(jnp.max(out.quantizer.indices)) < 1000
    np.testing.assert_array_equal(np.asarray(from_indices), np.asarray(out.reconstruction))


def test_resampling_is_the_2x2_mean_and_pixel_repetition():
    x = _images(1, 4, 6)
    pooled = np.asarray(x).reshape(1, 2, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(average_pool_2x2(x)), pooled, rtol=1e-6)
    # The official layers.upsample is jax.image.resize(method="nearest") by 2.
    expected = jax.image.resize(x, (1, 8, 12, 3), method="nearest")
    np.testing.assert_array_equal(np.asarray(upsample_nearest_2x(x)), np.asarray(expected))


# ------------------------------------------------------------------ the official PyTorch port, rendered in torch


def to_port_state_dict(params, levels, blocks, conv_downsample=False):
    """mixtok params -> the PyTorch port's state dict, by the mapping of mixtok/tokenizers/vqgan.py's docstring.

    `encoder.downsample_conv.{i}` (conv_downsample=True only) is not in the port, which has no such option.
    """
    state, used = {}, []

    def params_at(*path):
        tree = params
        for key in path:
            tree = tree[key]
        return tree

    def take(*path):
        used.append(path)
        return np.asarray(params_at(*path))

    def conv(name, *path):
        state[f"{name}.weight"] = take(*path, "kernel").transpose(3, 2, 0, 1)
        if "bias" in params_at(*path):
            state[f"{name}.bias"] = take(*path, "bias")

    def norm(name, *path):
        state[f"{name}.weight"], state[f"{name}.bias"] = take(*path, "scale"), take(*path, "bias")

    def block(name, *path):
        norm(f"{name}.norm1", *path, "GroupNorm_0")
        conv(f"{name}.conv1", *path, "Conv_0")
        norm(f"{name}.norm2", *path, "GroupNorm_1")
        conv(f"{name}.conv2", *path, "Conv_1")
        if "Conv_2" in params_at(*path):
            conv(f"{name}.nin_shortcut", *path, "Conv_2")

    conv("encoder.conv_in", "encoder", "Conv_0")
    for i in range(levels):
        for j in range(blocks):
            block(f"encoder.down.{i}.block.{j}", "encoder", f"ResBlock_{i * blocks + j}")
        if conv_downsample and i < levels - 1:
            conv(f"encoder.downsample_conv.{i}", "encoder", f"Conv_{1 + i}")
    for j in range(blocks):
        block(f"encoder.mid.{j}", "encoder", f"ResBlock_{levels * blocks + j}")
    norm("encoder.norm_out", "encoder", "GroupNorm_0")
    conv("encoder.conv_out", "encoder", f"Conv_{levels if conv_downsample else 1}")
    conv("decoder.conv_in", "decoder", "Conv_0")
    for j in range(blocks):
        block(f"decoder.mid.{j}", "decoder", f"ResBlock_{j}")
    for i in range(levels):
        for j in range(blocks):
            block(f"decoder.up.{i}.block.{j}", "decoder", f"ResBlock_{blocks + (levels - 1 - i) * blocks + j}")
        if i > 0:
            conv(f"decoder.up.{i}.upsample_conv", "decoder", f"Conv_{levels - i}")
    norm("decoder.norm_out", "decoder", "GroupNorm_0")
    conv("decoder.conv_out", "decoder", f"Conv_{levels}")
    state["quantize.embedding.weight"] = take("quantizer", "codebook")
    assert len(used) == len(jax.tree_util.tree_leaves(params)), "the mapping must cover every parameter once"
    return state


def torch_port_forward(torch, state, images, levels, blocks, conv_downsample=False):
    """The port's Encoder -> VectorQuantizer -> Decoder forward (NCHW), written with torch.nn.functional.

    Returns (encoder output, indices, decoder output of the quantized codes), all NHWC numpy arrays.
    """
    F = torch.nn.functional
    w = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}

    def conv(x, name, stride=1):
        kernel = w[f"{name}.weight"]
        padding = (kernel.shape[-1] - 1) // 2 if stride == 1 else 1
        return F.conv2d(x, kernel, w.get(f"{name}.bias"), stride=stride, padding=padding)

    def norm_act(x, name):
        return F.silu(F.group_norm(x, 32, w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-6))

    def block(x, name):
        h = conv(norm_act(x, f"{name}.norm1"), f"{name}.conv1")
        h = conv(norm_act(h, f"{name}.norm2"), f"{name}.conv2")
        # The port (and the official flax ResBlock) apply the shortcut conv to the branch output.
        return h + (conv(h, f"{name}.nin_shortcut") if f"{name}.nin_shortcut.weight" in w else x)

    with torch.no_grad():
        x = conv(torch.from_numpy(np.array(images)).permute(0, 3, 1, 2), "encoder.conv_in")
        for i in range(levels):
            for j in range(blocks):
                x = block(x, f"encoder.down.{i}.block.{j}")
            if i < levels - 1:
                x = conv(x, f"encoder.downsample_conv.{i}", stride=2) if conv_downsample else F.avg_pool2d(x, 2, 2)
        for j in range(blocks):
            x = block(x, f"encoder.mid.{j}")
        latents = conv(norm_act(x, "encoder.norm_out"), "encoder.conv_out").permute(0, 2, 3, 1)

        codebook = w["quantize.embedding.weight"]
        flat = latents.reshape(-1, codebook.shape[1])
        distances = (flat**2).sum(1, keepdim=True) + (codebook**2).sum(1)[None] - 2 * flat @ codebook.T
        indices = distances.argmin(1).reshape(latents.shape[:-1])

        x = conv(codebook[indices].permute(0, 3, 1, 2), "decoder.conv_in")
        for j in range(blocks):
            x = block(x, f"decoder.mid.{j}")
        for i in reversed(range(levels)):
            for j in range(blocks):
                x = block(x, f"decoder.up.{i}.block.{j}")
            if i > 0:
                x = conv(F.interpolate(x, scale_factor=2.0, mode="nearest"), f"decoder.up.{i}.upsample_conv")
        decoded = conv(norm_act(x, "decoder.norm_out"), "decoder.conv_out").permute(0, 2, 3, 1)
    return latents.numpy(), indices.numpy(), decoded.numpy()


def _assert_equals_the_torch_port(torch, variables, images, latents, out, conv_downsample):
    levels, blocks = len(TINY["channel_multipliers"]), TINY["num_res_blocks"]
    state = to_port_state_dict(variables["params"], levels, blocks, conv_downsample)
    torch_latents, torch_indices, torch_decoded = torch_port_forward(
        torch, state, images, levels, blocks, conv_downsample
    )
    np.testing.assert_allclose(np.asarray(latents), torch_latents, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.quantizer.indices), torch_indices)
    np.testing.assert_allclose(np.asarray(out.reconstruction), torch_decoded, rtol=1e-5, atol=1e-5)


def test_encoder_quantizer_and_decoder_equal_a_torch_rendering_of_the_official_port(tiny):
    torch = pytest.importorskip("torch")
    _, images, variables, outputs = tiny
    _assert_equals_the_torch_port(torch, variables, images, outputs["latents"], outputs["out"], False)


def test_strided_conv_downsampling_equals_torch_conv_4x4_stride_2_pad_1():
    # The official conv_downsample=True option (not in the port): conv 4x4 stride 2, "SAME" = one pixel per side.
    torch = pytest.importorskip("torch")
    model = VQGAN(image_size=16, conv_downsample=True, **TINY)
    images = _images(1, 16, 16, seed=2)

    variables = _random_variables(model, images, seed=3)
    latents, out = jax.jit(
        lambda v, x: (model.apply(v, x, method=lambda module, x: module.encoder(x)), model.apply(v, x))
    )(variables, images)
    _assert_equals_the_torch_port(torch, variables, images, latents, out, True)


def test_a_few_adam_steps_lower_the_reconstruction_error():
    model = VQGAN(
        image_size=16,
        filters=16,
        channel_multipliers=(1, 2),
        num_res_blocks=1,
        norm_groups=8,
        quantizer={"name": "vq", "codebook_size": 64, "code_dim": 8},
    )
    grid = np.linspace(0, 2 * np.pi, 16)
    rng = np.random.default_rng(0)
    images = jnp.asarray(
        np.stack(
            [  # smooth images: a few low-frequency waves per channel, in [-1, 1]
                np.stack(
                    [np.sin(a * grid[:, None] + b * grid[None, :] + c) for a, b, c in rng.uniform(0, 2, (3, 3))], -1
                )
                for _ in range(4)
            ]
        ),
        jnp.float32,
    )
    params = _random_variables(model, images)["params"]
    optimizer = optax.adam(2e-3)

    def loss_fn(params):
        out = model.apply({"params": params}, images, train=True)
        mse = jnp.mean(jnp.square(out.reconstruction - images))
        return mse + out.quantizer.loss, mse

    @jax.jit
    def step(params, opt_state):
        (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, mse

    opt_state = optimizer.init(params)
    errors = []
    for _ in range(20):
        params, opt_state, mse = step(params, opt_state)
        errors.append(float(mse))
    final = float(loss_fn(params)[1])
    assert np.isfinite(errors).all()
    assert final < 0.5 * errors[0], (errors[0], final)
