"""TiTok and One-D-Piece: shapes, prefix decoding, official parameter counts, a PyTorch reference, training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mixtok.tokenizers.titok_variants as variants
from mixtok.interop import titok as titok_interop
from mixtok.models.registry import count_params
from mixtok.tokenizers.registry import create_tokenizer, tokenizer_spec
from mixtok.tokenizers.titok import TiTok, prefix_key_mask, sample_tail_token_drop_length

TINY = dict(
    image_size=16,
    patch_size=4,
    encoder_width=32,
    encoder_depth=1,
    encoder_heads=4,
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=4,
    num_latent_tokens=6,
    quantizer={"name": "vq", "codebook_size": 32, "code_dim": 4, "l2_normalize": True},
)


def _images(batch=2, size=16, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (batch, size, size, 3), minval=-1.0, maxval=1.0)


def _smooth_images(batch=4, size=16, seed=0):
    """Low-frequency colour patterns: learnable in a few steps, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, np.pi, size)
    freq, phase = rng.uniform(0.5, 2.0, (batch, 1, 1, 3, 2)), rng.uniform(0, 2 * np.pi, (batch, 1, 1, 3, 2))
    rows, cols = grid[None, :, None, None], grid[None, None, :, None]
    pattern = np.sin(freq[..., 0] * rows + phase[..., 0]) * np.cos(freq[..., 1] * cols + phase[..., 1])
    return jnp.asarray(pattern, jnp.float32)


@pytest.fixture(scope="module")
def tiny():
    model = TiTok(**TINY, tail_token_drop=True)
    variables = jax.jit(model.init)(jax.random.PRNGKey(1), _images())
    return model, variables


def test_shapes_and_decode_indices_reproduce_the_reconstruction(tiny):
    model, variables = tiny
    images = _images()

    @jax.jit
    def run(variables, images):
        out = model.apply(variables, images)
        return out, model.apply(variables, out.quantizer.indices, method=model.decode_indices)

    out, from_indices = run(variables, images)
    assert out.reconstruction.shape == images.shape
    assert out.quantizer.indices.shape == (2, 6) and out.quantizer.quantized.shape == (2, 6, 4)
    assert int(out.num_tokens) == 6
    np.testing.assert_allclose(from_indices, out.reconstruction, atol=1e-6)
    assert model.PREFIX_DECODING and not TiTok(**TINY).PREFIX_DECODING


def test_masked_prefix_equals_decoding_the_sliced_prefix(tiny):
    model, variables = tiny

    @jax.jit
    def run(variables, images):
        quantized = model.apply(variables, images, method=model.encode).quantized

        def decode(q, **kwargs):
            return model.apply(variables, q, method=model.decode, **kwargs)

        masked = [decode(quantized, num_tokens=jnp.int32(k)) for k in (2, 6)]
        masked.append(decode(quantized, num_tokens=jnp.array([2, 6], jnp.int32)))  # per sample
        sliced = [decode(quantized[:, :2]), decode(quantized)]
        return masked, sliced, decode(quantized, num_tokens=2)  # a Python int slices

    (masked_2, masked_6, per_sample), (sliced_2, sliced_6), int_prefix = run(variables, _images())
    np.testing.assert_allclose(masked_2, sliced_2, atol=2e-6)
    np.testing.assert_allclose(masked_6, sliced_6, atol=2e-6)
    np.testing.assert_array_equal(int_prefix, sliced_2)
    np.testing.assert_allclose(per_sample[0], sliced_2[0], atol=2e-6)
    np.testing.assert_allclose(per_sample[1], sliced_6[1], atol=2e-6)
    assert np.abs(np.asarray(sliced_2 - sliced_6)).max() > 1e-4  # the tail tokens do matter


def test_prefix_key_mask_hides_exactly_the_tail_tokens():
    mask = np.asarray(prefix_key_mask(jnp.array([1, 3]), num_tokens=4, num_prefix=2))
    expected = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(mask[:, 0, 0, :], expected)


def test_tail_token_drop_draws_one_length_per_step_and_decodes_that_prefix(tiny):
    model, variables = tiny

    @jax.jit
    def run(variables, images, key):
        out = model.apply(variables, images, train=True, rngs={"noise": key})
        # eval-mode prefix decoding with the drawn k (masked == sliced is tested above)
        return out, model.apply(variables, out.quantizer.quantized, num_tokens=out.num_tokens, method=model.decode)

    drawn = set()
    for seed in range(4):
        out, prefix = run(variables, _images(), jax.random.PRNGKey(seed))
        assert np.shape(out.num_tokens) == () and 1 <= int(out.num_tokens) <= 6
        np.testing.assert_allclose(out.reconstruction, prefix, atol=1e-6)
        drawn.add(int(out.num_tokens))
    assert len(drawn) > 1  # a new k per step
    draws = np.asarray(
        jax.vmap(lambda key: sample_tail_token_drop_length(key, 6))(jax.random.split(jax.random.PRNGKey(0), 6000))
    )
    counts = np.bincount(draws, minlength=7)
    assert counts[0] == 0 and draws.max() == 6
    np.testing.assert_allclose(counts[1:] / 6000, np.full(6, 1 / 6), atol=0.03)  # U{1..K}


def test_plain_titok_keeps_every_token_in_training(tiny):
    _, variables = tiny  # the same parameters: tail token drop changes training only
    model = TiTok(**TINY)
    out = jax.jit(lambda v, x: model.apply(v, x, train=True))(variables, _images())
    assert int(out.num_tokens) == 6


def test_bad_token_counts_are_rejected(tiny):
    model, variables = tiny
    quantized = jnp.zeros((1, 7, 4))
    with pytest.raises(ValueError, match="num_latent_tokens = 6"):
        model.apply(variables, quantized, method=model.decode)
    with pytest.raises(ValueError, match="num_tokens 0"):
        model.apply(variables, quantized[:, :6], num_tokens=0, method=model.decode)


@pytest.mark.parametrize("name", sorted(variants.VARIANTS))
def test_parameter_count_equals_the_official_count(name):
    spec = tokenizer_spec(name)
    model = create_tokenizer(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3)))
    # Independent formula: 12 W^2 + 13 W per block; embeddings, patch embed, heads, latents, codebook.
    width, depth = model.encoder_width, model.encoder_depth
    grid, tokens = 16, model.num_latent_tokens
    encoder = (
        depth * (12 * width**2 + 13 * width)
        + (768 * width + width)
        + width
        + (grid**2 + 1) * width
        + tokens * width
        + 4 * width
        + (width * 12 + 12)
    )
    decoder = (
        depth * (12 * width**2 + 13 * width)
        + (12 * width + width)
        + width
        + (grid**2 + 1) * width
        + width
        + tokens * width
        + 4 * width
        + (width * 768 + 768)
        + (81 + 3)
    )
    assert count_params(shapes) == encoder + decoder + tokens * width + 4096 * 12 == spec.official_params


# ------------------------------------------------------------------------- PyTorch reference (official maths)


def _torch_reference(torch, config):
    """TiTok's forward re-stated in PyTorch with the official module names (bytedance/1d-tokenizer @ 942a96f,
    modeling/modules/blocks.py, is_legacy=False), so that its state dict has the official keys."""
    nn = torch.nn
    width, depth, heads, patch = config["width"], config["depth"], config["heads"], config["patch_size"]
    grid, tokens, code_dim = config["image_size"] // patch, config["num_latent_tokens"], config["code_dim"]

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.attn = nn.MultiheadAttention(width, heads)
            self.mlp = nn.Sequential()
            self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
            self.mlp.add_module("gelu", nn.GELU())
            self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

        def forward(self, x):  # x: [L, N, D]
            y = self.ln_1(x)
            x = x + self.attn(y, y, y, need_weights=False)[0]
            return x + self.mlp(self.ln_2(x))

    def embeddings(module, with_mask_token):
        module.class_embedding = nn.Parameter(torch.randn(1, width))
        module.positional_embedding = nn.Parameter(torch.randn(grid**2 + 1, width))
        module.latent_token_positional_embedding = nn.Parameter(torch.randn(tokens, width))
        if with_mask_token:
            module.mask_token = nn.Parameter(torch.randn(1, 1, width))
        module.ln_pre, module.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        module.transformer = nn.ModuleList([Block() for _ in range(depth)])

    def run(module, x):
        x = module.ln_pre(x).permute(1, 0, 2)
        for block in module.transformer:
            x = block(x)
        return x.permute(1, 0, 2)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, width, patch, patch)
            embeddings(self, False)
            self.conv_out = nn.Conv2d(width, code_dim, 1)

        def forward(self, images, latent_tokens):
            x = self.patch_embed(images).flatten(2).permute(0, 2, 1)
            x = torch.cat([self.class_embedding.expand(x.shape[0], -1, -1), x], 1) + self.positional_embedding
            latents = (latent_tokens + self.latent_token_positional_embedding).expand(x.shape[0], -1, -1)
            x = self.ln_post(run(self, torch.cat([x, latents], 1))[:, 1 + grid**2 :])
            return self.conv_out(x.permute(0, 2, 1)[..., None])[..., 0].permute(0, 2, 1)  # [B, K, C]

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder_embed = nn.Linear(code_dim, width)
            embeddings(self, True)
            self.ffn = nn.Sequential(nn.Conv2d(width, patch * patch * 3, 1))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, quantized):  # [B, K', C]
            x = self.decoder_embed(quantized)
            batch = x.shape[0]
            queries = torch.cat([self.class_embedding[None], self.mask_token.expand(1, grid**2, -1)], 1)
            queries = (queries + self.positional_embedding).expand(batch, -1, -1)
            x = x + self.latent_token_positional_embedding[: x.shape[1]]
            x = self.ln_post(run(self, torch.cat([queries, x], 1))[:, 1 : 1 + grid**2])
            x = self.ffn(x.permute(0, 2, 1).reshape(batch, width, grid, grid))
            x = x.reshape(batch, patch, patch, 3, grid, grid).permute(0, 3, 4, 1, 5, 2)
            return self.conv_out(x.reshape(batch, 3, grid * patch, grid * patch))

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = Encoder(), Decoder()
            self.latent_tokens = nn.Parameter(torch.randn(tokens, width))

    return Reference()


def test_matches_a_pytorch_restatement_of_the_official_forward():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    config = dict(width=32, depth=2, heads=4, patch_size=4, image_size=16, num_latent_tokens=6, code_dim=4)
    reference = _torch_reference(torch, config).eval()
    kwargs = {**TINY, "encoder_depth": 2, "decoder_depth": 2}
    model = TiTok(**kwargs)
    # The restatement has no quantizer; the codes below are given to the decoder directly.
    state_dict = {k: v.numpy() for k, v in reference.state_dict().items()}
    variables = titok_interop.convert(
        kwargs, {**state_dict, "quantize.embedding.weight": np.zeros((32, 4), np.float32)}
    )
    images = np.array(_images())
    with torch.no_grad():
        latents = reference.encoder(torch.from_numpy(images).permute(0, 3, 1, 2), reference.latent_tokens)
        codes = torch.nn.functional.normalize(latents, dim=-1)  # what the decoder gets for exact codes
        pixels = reference.decoder(codes[:, :4]).permute(0, 2, 3, 1).numpy()

    @jax.jit
    def run(variables, images, codes):
        latents = model.apply(variables, images, method=lambda m, x: m.encoder(x, m.latent_tokens))
        return latents, model.apply(variables, codes, num_tokens=4, method=model.decode)

    ours_latents, ours = run(variables, jnp.asarray(images), jnp.asarray(codes.numpy()))
    np.testing.assert_allclose(ours_latents, latents.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours, pixels, atol=1e-5)


def test_a_few_adam_steps_lower_the_reconstruction_error():
    model = TiTok(**{**TINY, "num_latent_tokens": 8}, tail_token_drop=True)
    images = _smooth_images()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), images)
    optimizer = optax.adam(3e-3)
    params = variables["params"]
    state = optimizer.init(params)

    def loss_fn(params, key):
        out = model.apply({"params": params}, images, train=True, rngs={"noise": key})
        return jnp.mean(jnp.square(out.reconstruction - images)) + out.quantizer.loss

    @jax.jit
    def step(params, state, key):
        grads = jax.grad(loss_fn)(params, key)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    @jax.jit
    def mse(params):
        out = model.apply({"params": params}, images)
        return jnp.mean(jnp.square(out.reconstruction - images))

    before = mse(params)
    for key in jax.random.split(jax.random.PRNGKey(1), 20):
        params, state = step(params, state, key)
    # The best image-independent output is the mean image (a numpy baseline); close half the gap to it.
    baseline = float(np.mean(np.square(np.asarray(images) - np.asarray(images).mean(0))))
    assert float(mse(params)) < baseline + 0.5 * (float(before) - baseline)
