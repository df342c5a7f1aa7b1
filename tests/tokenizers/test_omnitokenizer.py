"""OmniTokenizer: images and clips through one model, causality, window attention, the EMA codebook, counts, parity."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop.omnitokenizer import DROPPED, convert, to_official
from mixtok.layers.attention import dot_product_attention
from mixtok.models import count_params
from mixtok.tokenizers import QUANTIZER_STATE, create_tokenizer, tokenizer_spec
from mixtok.tokenizers.omnitokenizer import OmniTokenizer
from mixtok.tokenizers.omnitokenizer_layers import OmniAttention, WindowAttention, relative_position_index
from mixtok.tokenizers.quantizers import VectorQuantizer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "omnitokenizer"
TINY_VQ = {
    "name": "vq",
    "codebook_size": 32,
    "code_dim": 4,
    "l2_normalize": True,
    "normalize_codebook": False,
    "ema_decay": 0.99,
    "ema_epsilon": 1e-7,
    "beta": 0.25,
}
# The fixtures' configurations (tools/make_omnitokenizer_fixtures.py TINY).
TINY = dict(
    patch_size=4,
    temporal_patch_size=2,
    dim=16,
    heads=2,
    dim_head=8,
    ff_mult=2.0,
    temporal_depth=1,
    encoder_blocks="tw",
    decoder_blocks="tt",
    window_size=2,
    quantizer=TINY_VQ,
)
FIXTURE_KWARGS = {
    "rope_vq": dict(TINY, spatial_pos="rope"),
    "rel_biases_vq": dict(TINY, spatial_pos="rel", position_biases=True),
}


def _model(**overrides):
    return OmniTokenizer(**{**FIXTURE_KWARGS["rope_vq"], **overrides})


@pytest.fixture(scope="module")
def tiny():
    model = _model()
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 3)))
    return model, variables


def _clip(seed=0, frames=5):
    return jax.random.uniform(jax.random.PRNGKey(seed), (2, frames, 16, 16, 3), minval=-1.0, maxval=1.0)


def test_images_and_clips_run_through_one_set_of_weights(tiny):
    model, variables = tiny
    clip = _clip()
    image_out = model.apply(variables, clip[:, 0])
    clip_out = model.apply(variables, clip)
    assert image_out.reconstruction.shape == (2, 16, 16, 3) and image_out.quantizer.indices.shape == (2, 4, 4)
    assert clip_out.reconstruction.shape == (2, 5, 16, 16, 3) and clip_out.quantizer.indices.shape == (2, 3, 4, 4)
    # An image is the one-frame clip: the same tokens and pixels.
    one_frame = model.apply(variables, clip[:, :1])
    np.testing.assert_array_equal(one_frame.quantizer.indices[:, 0], image_out.quantizer.indices)
    np.testing.assert_allclose(one_frame.reconstruction[:, 0], image_out.reconstruction, atol=1e-5)
    decoded = model.apply(variables, clip_out.quantizer.indices, method=model.decode_indices)
    np.testing.assert_allclose(decoded, clip_out.reconstruction, atol=1e-5)


def test_a_clip_must_have_one_plus_a_multiple_of_the_temporal_patch_frames(tiny):
    model, variables = tiny
    with pytest.raises(ValueError, match="a clip of 4 frames; frames must be 1 \\+ k \\* temporal_patch_size \\(2\\)"):
        model.apply(variables, _clip(frames=4))


@pytest.mark.parametrize("changed_frame", [1, 3])
def test_with_the_fixed_temporal_peg_tokens_never_depend_on_later_frames(changed_frame):
    model = _model(fix_temporal_peg=True)
    clip = _clip()
    variables = model.init(jax.random.PRNGKey(1), clip)
    changed = clip.at[:, changed_frame].set(-clip[:, changed_frame])
    before = model.apply(variables, clip, method=model.encode_features)
    after = model.apply(variables, changed, method=model.encode_features)
    latent = 1 + (changed_frame - 1) // 2  # frames 1-2 -> latent frame 1, 3-4 -> 2
    np.testing.assert_array_equal(after[:, :latent], before[:, :latent])
    assert np.max(np.abs(after[:, latent:] - before[:, latent:])) > 1e-3
    # And the first latent frame of a clip is the image's.
    image = model.apply(variables, clip[:, 0], method=model.encode_features)
    np.testing.assert_allclose(before[:, 0], image[:, 0], atol=1e-5)


def test_with_the_fixed_temporal_peg_decoded_frames_never_depend_on_later_tokens():
    model = _model(fix_temporal_peg=True)
    clip = _clip()
    variables = model.init(jax.random.PRNGKey(1), clip)
    quantized = model.apply(variables, clip, method=model.encode).quantized  # [2, 3, 4, 4, code_dim]
    changed = quantized.at[:, 2].set(-quantized[:, 2])
    before, after = (model.apply(variables, q, method=model.decode) for q in (quantized, changed))
    np.testing.assert_array_equal(after[:, :3], before[:, :3])  # frame 0 <- latent 0, frames 1-2 <- latent 1
    assert np.max(np.abs(after[:, 3:] - before[:, 3:])) > 1e-3


def test_the_official_temporal_peg_reshape_lets_later_frames_reach_earlier_tokens():
    model = _model()  # fix_temporal_peg=False, as the official code
    clip = _clip()
    variables = model.init(jax.random.PRNGKey(1), clip)
    changed = clip.at[:, 3].set(-clip[:, 3])
    before = model.apply(variables, clip, method=model.encode_features)
    after = model.apply(variables, changed, method=model.encode_features)
    assert np.max(np.abs(after[:, :2] - before[:, :2])) > 1e-3


def test_window_attention_is_full_attention_with_a_block_mask_and_the_table_bias():
    dim, heads, window, height, width = 8, 2, 2, 4, 6
    layer = WindowAttention(dim, heads, window)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, height * width, dim))
    variables = layer.init(jax.random.PRNGKey(1), x, (3, 1, height, width))
    out = layer.apply(variables, x, (3, 1, height, width))

    params = nn.meta.unbox(variables["params"])
    h = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-5) * params["norm"]["scale"]
    qkv = (h @ params["attn"]["qkv"]["kernel"]).reshape(3, height * width, 3, heads, dim // heads)
    rows, cols = np.divmod(np.arange(height * width), width)
    same_window = (rows[:, None] // window == rows[None] // window) & (cols[:, None] // window == cols[None] // window)
    # Position inside the window -> Swin's relative index, for every pair in one window.
    inner = (rows % window) * window + cols % window
    index = relative_position_index(window)[inner[:, None], inner[None]]
    bias = params["relative_position_bias_table"][index].transpose(2, 0, 1)
    full = dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], bias=bias[None], mask=same_window)
    expected = full.reshape(3, height * width, dim) @ params["attn"]["proj"]["kernel"] + params["attn"]["proj"]["bias"]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_the_ema_codebook_step_is_the_official_formula():
    quantizer = VectorQuantizer(**{k: v for k, v in TINY_VQ.items() if k != "name"})
    z = jax.random.normal(jax.random.PRNGKey(0), (6, 5, 4))
    variables = quantizer.init(jax.random.PRNGKey(1), z)
    state = jax.tree_util.tree_map(np.asarray, nn.meta.unbox(variables[QUANTIZER_STATE]))
    out, updated = quantizer.apply(variables, z, train=True, mutable=[QUANTIZER_STATE])

    # OmniTokenizer/modules/codebook.py: nearest raw code to the L2-normalised z; N, z_avg EMAs; Laplace smoothing.
    flat = np.asarray(z).reshape(-1, 4)
    flat = flat / np.linalg.norm(flat, axis=1, keepdims=True)
    codebook = state["codebook"]
    indices = np.argmin(((flat[:, None] - codebook[None]) ** 2).sum(-1), axis=1)
    onehot = np.eye(32)[indices]
    n = 0.99 * state["cluster_size"] + 0.01 * onehot.sum(0)
    z_avg = 0.99 * state["embed_sum"] + 0.01 * (flat.T @ onehot).T
    weights = (n + 1e-7) / (n.sum() + 32 * 1e-7) * n.sum()
    new = nn.meta.unbox(updated[QUANTIZER_STATE])
    np.testing.assert_array_equal(np.asarray(out.indices).reshape(-1), indices)
    np.testing.assert_allclose(out.quantized.reshape(-1, 4), codebook[indices], atol=1e-6)  # raw, unnormalised
    np.testing.assert_allclose(out.loss, 0.25 * np.mean((codebook[indices] - flat) ** 2), rtol=1e-5)
    np.testing.assert_allclose(new["cluster_size"], n, rtol=1e-6)
    np.testing.assert_allclose(new["embed_sum"], z_avg, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["codebook"], z_avg / weights[:, None], rtol=1e-5, atol=1e-7)


# Official per-part counts (tools/make_omnitokenizer_fixtures.py --counts; the variants' docstring).
OFFICIAL_PARTS = {
    "omnitokenizer_vq_stage1": (27_178_432, 27_736_704, 4_104, 4_608),
    "omnitokenizer_vq": (26_839_216, 26_860_512, 4_104, 4_608),
    "omnitokenizer_kl": (26_839_216, 26_860_512, 8_208, 4_608),
}
ENCODER = ("patch_embed_first_frame", "patch_embed", "encoder_spatial", "encoder_temporal")
DECODER = ("decoder_temporal", "decoder_spatial", "to_pixels_first_frame", "to_pixels")


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARTS))
def test_parameter_counts_are_the_official_ones(name):
    model = create_tokenizer(name)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
    params = nn.meta.unbox(shapes["params"])
    parts = tuple(
        sum(count_params({"params": {k: params[k]}}) for k in keys)
        for keys in (ENCODER, DECODER, ("pre_quant",), ("post_quant",))
    )
    assert parts == OFFICIAL_PARTS[name]
    assert count_params(shapes) == tokenizer_spec(name).official_params == sum(parts)


@pytest.mark.parametrize("config", sorted(FIXTURE_KWARGS))
def test_converted_official_weights_reproduce_the_official_outputs_under_jit(config):
    golden = np.load(FIXTURES / f"{config}.npz")
    inputs = np.load(FIXTURES / "rope_vq.npz")  # both fixtures' inputs
    state_dict = {k[3:]: golden[k] for k in golden.files if k.startswith("sd/")}
    kwargs = FIXTURE_KWARGS[config]
    variables = convert(kwargs, state_dict)
    model = OmniTokenizer(**kwargs)
    apply = jax.jit(lambda v, x: model.apply(v, x))
    for key in ("image", "clip"):
        out = apply(variables, inputs[key])
        np.testing.assert_array_equal(out.quantizer.indices, golden[f"{key}_indices"])
        np.testing.assert_allclose(out.reconstruction, golden[f"{key}_recon"], atol=5e-5)
    features = model.apply(variables, inputs["image"], method=model.encode_features)
    np.testing.assert_allclose(features, golden["image_features"], atol=5e-5)
    back = to_official(kwargs, variables)
    assert set(back) == {k for k in state_dict if not DROPPED.search(k)}  # codebook.codebook_usage is dropped
    for key, value in back.items():
        np.testing.assert_array_equal(value, state_dict[key], err_msg=key)


def test_a_state_dict_that_does_not_fit_names_the_keys():
    golden = np.load(FIXTURES / "rope_vq.npz")
    state_dict = {k[3:]: golden[k] for k in golden.files if k.startswith("sd/")}
    state_dict.pop("pre_vq_conv.1.weight")
    state_dict["extra.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match="pre_vq_conv.1.weight") as error:
        convert(FIXTURE_KWARGS["rope_vq"], state_dict)
    assert "extra.weight" in str(error.value)


def test_training_step_updates_the_codebook_and_has_finite_gradients(tiny):
    model, variables = tiny
    clip = _clip()

    def loss(params):
        out, state = model.apply(
            {"params": params, QUANTIZER_STATE: variables[QUANTIZER_STATE]},
            clip,
            train=True,
            mutable=[QUANTIZER_STATE],
        )
        return jnp.mean(jnp.abs(out.reconstruction - clip)) + out.quantizer.loss, state

    grads, state = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])
    assert all(np.isfinite(g).all() for g in jax.tree_util.tree_leaves(grads))
    old, new = (nn.meta.unbox(s[QUANTIZER_STATE])["quantize"]["cluster_size"] for s in (variables, state))
    assert not np.allclose(old, new)


def test_attention_with_null_key_values_alibi_and_causal_mask_is_the_official_einsum_formula():
    dim, heads, width, length, nulls = 8, 2, 4, 5, 2
    layer = OmniAttention(dim, heads, width, causal=True, spatial=False, num_null_kv=nulls, position_biases=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, length, dim))
    variables = layer.init(jax.random.PRNGKey(1), x, (3, length, 1, 1))
    out = np.asarray(layer.apply(variables, x, (3, length, 1, 1)))

    # OmniTokenizer/modules/attention.py `Attention.forward`, the path without scaled_dot_product_attention.
    p = jax.tree_util.tree_map(np.asarray, nn.meta.unbox(variables["params"]))
    x = np.asarray(x, np.float64)
    normed = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * p["norm"]["scale"]
    q = (normed @ p["to_q"]["kernel"]).reshape(3, length, heads, width).transpose(0, 2, 1, 3)
    k, v = np.split(x @ p["to_kv"]["kernel"], 2, axis=-1)  # k, v from x before the norm
    k, v = (t.reshape(3, length, heads, width).transpose(0, 2, 1, 3) for t in (k, v))
    null = p["null_kv"].reshape(heads, nulls, 2, width)  # 'h (n r) d', r = 2: keys, values
    k = np.concatenate([np.broadcast_to(null[:, :, 0], (3, heads, nulls, width)), k], axis=2)
    v = np.concatenate([np.broadcast_to(null[:, :, 1], (3, heads, nulls, width)), v], axis=2)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True) * p["q_scale"]
    k = k / np.linalg.norm(k, axis=-1, keepdims=True) * p["k_scale"]
    sim = 8.0 * q @ k.transpose(0, 1, 3, 2)
    i, j = length, length + nulls
    slopes = np.array([2 ** (-8 / heads * (h + 1)) for h in range(heads)])  # ALiBi, heads a power of 2
    sim = sim - slopes[:, None, None] * np.abs(np.arange(j)[None, :] - np.arange(j - i, j)[:, None])
    sim = np.where(np.triu(np.ones((i, j), bool), j - i + 1), -np.finfo(np.float64).max, sim)
    attn = np.exp(sim - sim.max(-1, keepdims=True))
    attn = attn / attn.sum(-1, keepdims=True)
    expected = (attn @ v).transpose(0, 2, 1, 3).reshape(3, length, heads * width) @ p["to_out"]["kernel"]
    np.testing.assert_allclose(out, expected, atol=2e-5)


def test_the_command_line_refuses_an_unknown_variant_with_exit_code_2(tmp_path, capsys):
    from mixtok.interop.omnitokenizer import main

    assert main(["omnitokenizer_vqq", str(tmp_path / "x.ckpt"), str(tmp_path / "out.msgpack")]) == 2
    assert "omnitokenizer_vq" in capsys.readouterr().err
