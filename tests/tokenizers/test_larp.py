"""LARP: shapes, the stochastic VQ, the prior loss and its scheduled sampling, counts, golden parity, jit.

The golden fixture (tests/fixtures/larp, written by tools/make_larp_fixtures.py from hywang66/LARP's own code,
commit in manifest.json) holds the official tokenizer's argmax codes, latents, reconstruction, quantizer loss, prior
logits and prior loss for two random clips; its weights are drawn again from the manifest's keys, shapes and seed.
"""

import functools
import hashlib
import importlib.util
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import larp as importer
from mixtok.models.registry import count_params
from mixtok.tokenizers.larp import LARP, sincos_1d, sincos_3d
from mixtok.tokenizers.larp_prior import LARPPrior, prior_from_size, prior_loss, scheduled_sampling_ratio
from mixtok.tokenizers.registry import create_tokenizer, tokenizer_spec
from mixtok.tokenizers.stochastic_vq import StochasticVectorQuantizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "larp")
TOLERANCE = 2e-5  # reconstructions up to ~3.5, latents up to ~5: float32 rounding through 3 blocks 32 wide

TINY = dict(
    frames=8,
    image_size=16,
    patch_size=8,
    temporal_patch_size=4,
    num_latent_tokens=8,
    encoder_width=32,
    encoder_depth=1,
    encoder_heads=4,
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=4,
    quantizer=dict(name="stochastic_vq", codebook_size=64, code_dim=16),
)
TINY_PRIOR = dict(width=32, depth=1, num_heads=2, max_length=8, dropout=0.0, attn_dropout=0.0)


def _clips(batch=2, seed=0):
    return jax.random.uniform(jax.random.PRNGKey(seed), (batch, 8, 16, 16, 3), minval=-1.0, maxval=1.0)


@functools.cache
def tiny():
    model = LARP(**TINY)
    return model, jax.jit(model.init)(jax.random.PRNGKey(1), _clips())


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_shapes_and_decode_indices_reproduce_the_reconstruction():
    model, variables = tiny()

    @jax.jit
    def run(variables, clips):
        out = model.apply(variables, clips)
        return out, model.apply(variables, out.quantizer.indices, method=model.decode_indices)

    out, from_indices = run(variables, _clips())
    assert out.reconstruction.shape == (2, 8, 16, 16, 3)
    assert out.quantizer.quantized.shape == (2, 8, 16) and out.quantizer.indices.shape == (2, 8)
    assert int(out.num_tokens) == 8
    np.testing.assert_array_equal(np.asarray(from_indices), np.asarray(out.reconstruction))
    # The codes are unit vectors of the codebook (cosine VQ).
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out.quantizer.quantized), axis=-1), 1.0, atol=1e-6)


def test_a_clip_of_another_size_is_refused_naming_its_shape():
    model, variables = tiny()
    with pytest.raises(ValueError, match=r"\(2, 4, 16, 16, 3\)"):
        model.apply(variables, jnp.zeros((2, 4, 16, 16, 3)))


def test_patchify_and_unpatchify_are_inverse_and_order_tokens_t_h_w():
    model = LARP(**TINY)
    clips = np.arange(2 * 8 * 16 * 16 * 3, dtype=np.float32).reshape(2, 8, 16, 16, 3)
    patches = model.patchify(jnp.asarray(clips))
    assert patches.shape == (2, 8, 3 * 4 * 8 * 8)
    # token 3 = (t 0, h 1, w 1); its first channel is (c 0, pt 0, y 0, x 0) of that patch
    assert patches[0, 3, 0] == clips[0, 0, 8, 8, 0]
    # the head's channels are ordered (pt, p, p, c): a [N, pt p p c] tensor of the clip's own values round-trips
    heads = clips.reshape(2, 2, 4, 2, 8, 2, 8, 3).transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(2, 8, -1)
    np.testing.assert_array_equal(np.asarray(model.unpatchify(jnp.asarray(heads))), clips)


def test_sincos_tables_follow_the_mae_formula():
    table = sincos_1d(8, np.arange(3))
    omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
    np.testing.assert_allclose(table[2], np.concatenate([np.sin(2 * omega), np.cos(2 * omega)]))
    pe = sincos_3d(8, 2, 3)  # tokens (t, h, w); the first half of the spatial part encodes w
    t, h, w = 1, 2, 0
    expected = sincos_1d(8, [t])[0] + np.concatenate([sincos_1d(4, [w])[0], sincos_1d(4, [h])[0]])
    np.testing.assert_allclose(pe[t * 9 + h * 3 + w], expected, rtol=1e-6)


def test_stochastic_vq_samples_with_the_softmax_frequencies_and_eval_takes_the_argmax():
    quantizer = StochasticVectorQuantizer(codebook_size=6, code_dim=4, temperature=1.0)
    draws = 40_000
    z = jnp.broadcast_to(jnp.asarray([0.3, -0.2, 0.5, 0.1]), (draws, 4))
    variables = quantizer.init(jax.random.PRNGKey(0), z[:1])
    codebook = _unit(np.asarray(nn.meta.unbox(variables["params"])["codebook"], np.float64))
    logits = codebook @ _unit(np.asarray(z[0], np.float64)) / 1.0
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    assert probs.max() < 0.5  # several codes are likely: the check sees the sampling, not an argmax

    out = jax.jit(lambda v, z, key: quantizer.apply(v, z, train=True, rngs={"noise": key}))(
        variables, z, jax.random.PRNGKey(7)
    )
    frequencies = np.bincount(np.asarray(out.indices), minlength=6) / draws
    # each frequency has std <= sqrt(0.25 / 40000) = 0.0025; 0.012 is ~5 std
    np.testing.assert_allclose(frequencies, probs, atol=0.012)
    np.testing.assert_allclose(np.asarray(out.quantized), codebook[np.asarray(out.indices)], atol=1e-6)

    evaluated = quantizer.apply(variables, z[:3])
    np.testing.assert_array_equal(np.asarray(evaluated.indices), np.full(3, np.argmax(logits)))
    unit_z = _unit(np.asarray(z[0], np.float64))
    code = codebook[np.argmax(logits)]
    expected = 0.25 * np.mean((code - unit_z) ** 2) + 1.0 * np.mean((code - unit_z) ** 2)
    np.testing.assert_allclose(float(evaluated.loss), expected, rtol=1e-5)


def test_stochastic_vq_passes_gradients_straight_through_the_normalisation():
    quantizer = StochasticVectorQuantizer(codebook_size=6, code_dim=4)
    z = jnp.asarray([[0.3, -0.2, 0.5, 0.1]])
    variables = quantizer.init(jax.random.PRNGKey(0), z)
    direction = jnp.asarray([1.0, 2.0, -1.0, 0.5])
    grad = jax.grad(lambda z: jnp.sum(quantizer.apply(variables, z).quantized * direction))(z)
    expected = jax.grad(lambda z: jnp.sum(z / jnp.linalg.norm(z) * direction))(z)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(expected), rtol=1e-6)


def test_scheduled_sampling_ratio_follows_its_formula():
    max_steps = 1000
    for step in (0, 1, 150, 299, 300, 301, 500, 1000):
        official = min(step / (max_steps * 0.3) * 0.5, 0.5)  # prior_ar_predict_n_rounds_ss
        assert float(scheduled_sampling_ratio(step / max_steps)) == pytest.approx(official, abs=1e-6)
    assert float(scheduled_sampling_ratio(0.15, max_ratio=0.8, peak=0.5)) == pytest.approx(0.24)


def _prior_inputs(batch=2, length=8, codes=64, seed=0):
    rng = np.random.default_rng(seed)
    codebook = _unit(rng.standard_normal((codes, 16))).astype(np.float32)
    indices = rng.integers(0, codes, (batch, length)).astype(np.int32)
    return jnp.asarray(codebook[indices]), jnp.asarray(indices), jnp.asarray(codebook)


def _cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, np.asarray(labels)[..., None], -1)[..., 0]


def test_prior_loss_is_the_cross_entropy_of_the_cosine_logits():
    prior = LARPPrior(**TINY_PRIOR)
    latents, indices, codebook = _prior_inputs()
    variables = prior.init(jax.random.PRNGKey(0), latents)
    predictions = np.asarray(prior.apply(variables, latents), np.float64)
    assert predictions.shape == (2, 8, 16)
    np.testing.assert_allclose(predictions[:, 0], np.asarray(latents[:, 0]), rtol=1e-6)  # position 0 is the input
    logits = predictions[:, 1:] @ np.asarray(codebook, np.float64).T  # latent_ce_temperature 1
    expected = _cross_entropy(logits, indices[:, 1:]).mean()  # both rounds see the same codes in eval
    loss, stats = prior.apply(variables, latents, indices, codebook, 0.7, method=LARPPrior.prior_loss)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    top1 = np.mean(np.argmax(logits, -1) == np.asarray(indices[:, 1:]))
    assert float(stats["prior_top1_accuracy"]) == pytest.approx(top1)
    # Training at progress 0: the scheduled-sampling ratio is 0, so nothing is replaced.
    out = prior_loss(prior, variables, _Codes(latents, indices), codebook, 0.0, train=True, rngs=_rngs(3))
    assert float(out[0]) == pytest.approx(expected, rel=1e-5)


class _Codes:
    def __init__(self, quantized, indices):
        self.quantized, self.indices = quantized, indices


def _rngs(seed):
    return {"noise": jax.random.PRNGKey(seed), "dropout": jax.random.PRNGKey(seed + 1)}


def test_prior_second_round_feeds_back_its_own_sampled_codes():
    # ratio 1 (scheduled_sampling off) and a temperature so low that sampling is the argmax: round 2 sees
    # [x_0, E[argmax logits_1]] and the loss is the mean of the two rounds' cross-entropies.
    prior = LARPPrior(**TINY_PRIOR, scheduled_sampling=False, latent_ce_temperature=1e-4)
    latents, indices, codebook = _prior_inputs(seed=1)
    variables = prior.init(jax.random.PRNGKey(0), latents)
    logits_1 = prior.apply(variables, latents, codebook, method=LARPPrior.logits)
    fed_back = jnp.concatenate([latents[:, :1], codebook[jnp.argmax(logits_1, -1)]], axis=1)
    logits_2 = prior.apply(variables, fed_back, codebook, method=LARPPrior.logits)
    expected = np.mean([_cross_entropy(lg, indices[:, 1:]).mean() for lg in (logits_1, logits_2)])
    loss, stats = prior.apply(
        variables, latents, indices, codebook, 0.0, train=True, rngs=_rngs(5), method=LARPPrior.prior_loss
    )
    assert float(stats["scheduled_sampling_ratio"]) == 1.0
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_named_variant_and_prior_have_the_official_counts():
    spec = tokenizer_spec("larp_l_long")
    model = create_tokenizer("larp_l_long")
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 16, 128, 128, 3), jnp.float32))
    count = count_params(nn.meta.unbox(shapes))
    width, blocks, tokens, patch = 768, 12, 1024, 3 * 4 * 8 * 8
    block = 12 * width**2 + 10 * width  # qkv (no bias) + proj + 4x MLP + two LayerNorms
    closed_form = (
        2 * blocks * block
        + tokens * width  # queries
        + (patch + 1) * width  # patch embedding
        + (width + 1) * 16
        + (16 + 1) * width
        + 8192 * 16  # bottleneck Linears, codebook
        + width  # decoder token-type embedding
        + 2 * width
        + (width + 1) * patch  # output LayerNorm + Linear
    )
    assert count == closed_form == spec.official_params == 172_179_984
    # official GPTC_*(n_ind=16) of models/gptc.py (tools/make_larp_fixtures.py --counts); LARP trains gptc-S
    official = {"gptc-S": 21_700_240, "gptc-B": 85_867_792, "gptc-XXS": 5_009_680}
    codes = jax.ShapeDtypeStruct((1, 1024, 16), jnp.float32)
    for size, expected in official.items():
        prior = prior_from_size(size)
        assert count_params(nn.meta.unbox(jax.eval_shape(prior.init, jax.random.PRNGKey(0), codes))) == expected, size


@functools.cache
def _tool():
    path = os.path.join(REPO_ROOT, "tools", "make_larp_fixtures.py")
    spec = importlib.util.spec_from_file_location("make_larp_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _golden():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        manifest = json.load(f)
    path = os.path.join(FIXTURES, manifest["file"])
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == manifest["sha256"], f"{path} is not the file the tool wrote"
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    state_dict = _tool().random_state_dict(manifest["state_dict_keys"], manifest["seed"])
    assert _tool().state_dict_sha256(state_dict) == manifest["state_dict_sha256"], "numpy drew other weights"
    return manifest, arrays, state_dict


def test_official_weights_give_the_official_codes_and_reconstruction():
    manifest, golden, state_dict = _golden()
    model, prior = LARP(**manifest["mixtok_kwargs"]), LARPPrior(**manifest["mixtok_prior_kwargs"])
    variables = importer.convert(manifest["mixtok_kwargs"], state_dict)
    prior_variables = importer.convert_prior(manifest["mixtok_prior_kwargs"], state_dict)

    @jax.jit
    def run(variables, prior_variables, clips):
        codes = model.apply(variables, clips, method=LARP.encode)
        latents = model.apply(variables, clips, method=LARP.encode_latents)
        reconstruction = model.apply(variables, clips).reconstruction
        codebook = model.apply(variables, method=lambda m: m.quantize.codebook())
        logits = prior.apply(prior_variables, codes.quantized, codebook, method=LARPPrior.logits)
        loss, _ = prior.apply(
            prior_variables, codes.quantized, codes.indices, codebook, 0.0, method=LARPPrior.prior_loss
        )
        return codes, latents, reconstruction, logits, loss

    codes, latents, reconstruction, logits, loss = run(variables, prior_variables, golden["videos"])
    np.testing.assert_array_equal(np.asarray(codes.indices), golden["indices"])
    np.testing.assert_allclose(np.asarray(latents), golden["latents"], atol=TOLERANCE)
    np.testing.assert_allclose(np.asarray(reconstruction), golden["reconstruction"], atol=TOLERANCE)
    np.testing.assert_allclose(float(codes.loss), golden["quantizer_loss"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), golden["prior_logits"], atol=TOLERANCE)
    np.testing.assert_allclose(float(loss), golden["prior_loss"], rtol=1e-5)


def test_conversion_round_trips_and_names_a_missing_key():
    manifest, _, state_dict = _golden()
    kwargs = manifest["mixtok_kwargs"]
    back = importer.to_official(kwargs, importer.convert(kwargs, state_dict))
    prior_back = importer.prior_to_official(
        manifest["mixtok_prior_kwargs"], importer.convert_prior(manifest["mixtok_prior_kwargs"], state_dict)
    )
    for key, value in state_dict.items():
        np.testing.assert_array_equal((back | prior_back)[key], value, err_msg=key)
    broken = {k: v for k, v in state_dict.items() if k != "final_layer.linear.bias"}
    with pytest.raises(ValueError, match="final_layer.linear.bias"):
        importer.convert(kwargs, broken)


def test_training_step_is_jittable_and_the_prior_loss_reaches_the_encoder():
    model, variables = tiny()
    prior = LARPPrior(**TINY_PRIOR)
    clips = _clips()
    codes = model.apply(variables, clips, method=LARP.encode)
    prior_variables = prior.init(jax.random.PRNGKey(2), codes.quantized)

    @jax.jit
    def losses(params, prior_params, key):
        noise, prior_noise = jax.random.split(key)
        out = model.apply({"params": params}, clips, train=True, rngs={"noise": noise})
        reconstruction = jnp.mean(jnp.abs(out.reconstruction - clips)) + 0.1 * out.quantizer.loss
        codebook = model.apply({"params": params}, method=lambda m: m.quantize.codebook())
        latent_ce, _ = prior.apply(
            {"params": prior_params},
            out.quantizer.quantized,
            out.quantizer.indices,
            codebook,
            0.5,
            train=True,
            rngs={"noise": prior_noise},
            method=LARPPrior.prior_loss,
        )
        return reconstruction, latent_ce

    grads = jax.jit(jax.grad(lambda p, q, key: losses(p, q, key)[1], argnums=(0, 1)))(
        variables["params"], prior_variables["params"], jax.random.PRNGKey(3)
    )
    encoder_grad = nn.meta.unbox(grads[0])["encoder"]["blocks_0"]["attn"]["qkv"]["kernel"]
    assert np.all(np.isfinite(np.asarray(encoder_grad))) and np.abs(np.asarray(encoder_grad)).max() > 0
    # the codebook gets no gradient from the prior (official get_emb().detach())
    assert np.abs(np.asarray(nn.meta.unbox(grads[0])["quantize"]["codebook"])).max() == 0
    prior_grad = nn.meta.unbox(grads[1])["head"]["kernel"]
    assert np.abs(np.asarray(prior_grad)).max() > 0
    a = losses(variables["params"], prior_variables["params"], jax.random.PRNGKey(3))
    b = losses(variables["params"], prior_variables["params"], jax.random.PRNGKey(3))
    assert float(a[0]) == float(b[0]) and float(a[1]) == float(b[1])  # the same keys draw the same codes


def test_prior_predicts_each_code_from_the_codes_before_it_only():
    prior = LARPPrior(**TINY_PRIOR)
    latents, _, _ = _prior_inputs()
    variables = prior.init(jax.random.PRNGKey(0), latents)
    changed = latents.at[:, 5].set(-latents[:, 5])
    before, after = (np.asarray(prior.apply(variables, x)) for x in (latents, changed))
    np.testing.assert_array_equal(after[:, :6], before[:, :6])  # position j sees codes 0 .. j-1
    assert np.abs(after[:, 6] - before[:, 6]).max() > 1e-3
