"""FlexTok-style tokenizer: register attention mask, nested dropout, prefix decoding, training."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mixtok.tokenizers.flextok import FlexTok, causal_last_mask, sample_keep_k, sincos_2d_embedding

TINY = dict(
    image_size=16,
    patch_size=4,
    encoder_width=32,
    encoder_depth=1,
    encoder_heads=4,
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=4,
    num_registers=8,
)


def _images(batch=3, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (batch, 16, 16, 3), minval=-1.0, maxval=1.0)


@pytest.fixture(scope="module")
def tiny():
    model = FlexTok(**TINY)
    return model, jax.jit(model.init)(jax.random.PRNGKey(1), _images())


def test_shapes_and_fsq_vocabulary(tiny):
    model, variables = tiny
    out = jax.jit(lambda v, x: model.apply(v, x))(variables, _images())
    assert out.reconstruction.shape == (3, 16, 16, 3)
    assert out.quantizer.quantized.shape == (3, 8, 6) and out.quantizer.indices.shape == (3, 8)
    assert model.bind(variables).quantize.codebook_size == 8 * 8 * 8 * 5 * 5 * 5 == 64_000
    np.testing.assert_array_equal(out.num_tokens, [8, 8, 8])


def test_causal_last_mask_matches_the_official_prefix_lm_rule():
    prefix, registers = 5, 4
    mask = causal_last_mask(prefix, registers)
    for query in range(prefix + registers):
        for key in range(prefix + registers):
            # flex_seq_packing.py generate_prefix_packed_seq_mask: causal(q, kv) | (kv < prefix_len)
            assert mask[query, key] == ((query >= key) or (key < prefix))
    assert not mask[:prefix, prefix:].any()  # patches never see registers


def test_a_register_depends_only_on_earlier_registers(tiny):
    model, variables = tiny
    images = _images()

    @jax.jit
    def register_latents(params):
        _, state = model.apply({"params": params}, images, method=model.encode, capture_intermediates=True)
        return state["intermediates"]["to_quantizer"]["__call__"][0]

    params = variables["params"]
    perturbed = params["registers"].value.at[5].add(jnp.linspace(-1.0, 1.0, 32))  # not a constant: LN removes those
    changed = {**params, "registers": params["registers"].replace_boxed(perturbed)}
    before, after = register_latents(params), register_latents(changed)
    np.testing.assert_array_equal(before[:, :5], after[:, :5])
    assert np.all(np.abs(np.asarray(before[:, 5:] - after[:, 5:])).max(axis=(0, 2)) > 1e-4)


def test_prefix_decoding_ignores_the_dropped_registers_and_matches_per_sample_keeps(tiny):
    model, variables = tiny
    encoded = jax.jit(lambda v, x: model.apply(v, x, method=model.encode))(variables, _images())
    quantized, indices = encoded.quantized, encoded.indices
    decode = jax.jit(lambda q, k: model.apply(variables, q, num_tokens=k, method=model.decode))
    scrambled = quantized.at[:, 3:].set(-quantized[:, 3:])
    np.testing.assert_array_equal(decode(quantized, jnp.int32(3)), decode(scrambled, jnp.int32(3)))
    assert np.abs(np.asarray(decode(quantized, jnp.int32(4)) - decode(scrambled, jnp.int32(4)))).max() > 1e-5
    per_sample = decode(quantized, jnp.array([1, 3, 8], jnp.int32))
    for row, keep in enumerate((1, 3, 8)):
        np.testing.assert_allclose(per_sample[row], decode(quantized, jnp.int32(keep))[row], atol=1e-6)
    full = jax.jit(lambda q: model.apply(variables, q, method=model.decode))(quantized)
    np.testing.assert_allclose(decode(quantized, jnp.int32(8)), full, atol=1e-6)
    # A prefix of indices decodes like num_tokens = its length.
    from_prefix = jax.jit(lambda i: model.apply(variables, i, method=model.decode_indices))(indices[:, :3])
    np.testing.assert_allclose(from_prefix, decode(quantized, jnp.int32(3)), atol=1e-6)


def test_dropped_registers_become_the_learned_mask_token(tiny):
    model, variables = tiny

    @jax.jit
    def run(variables, images):
        quantized = model.apply(variables, images, method=model.encode).quantized
        seen = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and context.module.name in ("decoder", "decoder_embed"):
                seen[context.module.name] = (args[0], out)
            return out

        with nn.intercept_methods(record):
            model.apply(variables, quantized, num_tokens=3, method=model.decode)
        return seen["decoder_embed"][1], seen["decoder"][0]

    embedded, decoder_inputs = map(np.asarray, run(variables, _images()))
    register_inputs = decoder_inputs[:, 16:]  # after the 4 x 4 patch queries
    params = variables["params"]
    expected = embedded.copy()
    expected[:, 3:] = np.asarray(params["dropout_mask_token"].value)
    expected += np.asarray(params["register_pos_embed"].value)
    np.testing.assert_allclose(register_inputs, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["pow2", "uniform", "uniform_pow2"])
def test_keep_k_sampling_modes(mode):
    draws = np.asarray(sample_keep_k(jax.random.PRNGKey(0), 8000, 16, mode))
    values, counts = np.unique(draws, return_counts=True)
    if mode == "pow2":
        np.testing.assert_array_equal(values, [1, 2, 4, 8, 16])
        np.testing.assert_allclose(counts / 8000, 0.2, atol=0.03)
    elif mode == "uniform":
        np.testing.assert_array_equal(values, np.arange(1, 17))
        np.testing.assert_allclose(counts / 8000, 1 / 16, atol=0.02)
    else:
        uniform = np.asarray(sample_keep_k(jax.random.PRNGKey(0), 8000, 16, "uniform"))
        rounded = np.array([k if k & (k - 1) == 0 else 1 << int(k).bit_length() for k in uniform])
        np.testing.assert_array_equal(draws, rounded)  # official sample_keep_k, same draws


def test_sincos_embedding_matches_the_formula():
    emb = sincos_2d_embedding(3, 4, 8)
    for row in range(3):
        for col in range(4):
            expected = []
            for fn, pos in ((math.sin, row), (math.cos, row), (math.sin, col), (math.cos, col)):
                expected += [fn(pos / 10000.0 ** (i / 2)) for i in range(2)]
            np.testing.assert_allclose(emb[row * 4 + col], expected, atol=1e-6)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="nested_dropout_mode 'geometric'"):
        FlexTok(**TINY, nested_dropout_mode="geometric").init(jax.random.PRNGKey(0), _images(1))
    with pytest.raises(ValueError, match="power-of-two num_registers"):
        FlexTok(**{**TINY, "num_registers": 6}).init(jax.random.PRNGKey(0), _images(1))


def test_a_few_adam_steps_lower_the_reconstruction_error():
    model = FlexTok(**TINY, nested_dropout_mode="uniform")
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0, np.pi, 16)
    phases = rng.uniform(0, 2 * np.pi, (4, 1, 1, 3))
    images = jnp.asarray(np.sin(grid[None, :, None, None] + phases) * np.cos(grid[None, None, :, None]), jnp.float32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), images)["params"]
    optimizer = optax.adam(3e-3)
    state = optimizer.init(params)

    @jax.jit
    def step(params, state, key):
        def loss_fn(params):
            out = model.apply({"params": params}, images, train=True, rngs={"noise": key})
            return jnp.mean(jnp.square(out.reconstruction - images))

        updates, state = optimizer.update(jax.grad(loss_fn)(params), state, params)
        return optax.apply_updates(params, updates), state

    mse = jax.jit(lambda params: jnp.mean(jnp.square(model.apply({"params": params}, images).reconstruction - images)))
    before = float(mse(params))
    for key in jax.random.split(jax.random.PRNGKey(1), 20):
        params, state = step(params, state, key)
    baseline = float(np.mean(np.square(np.asarray(images) - np.asarray(images).mean(0))))
    assert float(mse(params)) < baseline + 0.5 * (before - baseline)
