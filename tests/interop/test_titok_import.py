"""Official TiTok / One-D-Piece state dicts -> mixtok: golden parity, prefix decoding, the key mapping, errors, CLI.

tests/fixtures/titok holds the outputs of two models built by the official code (bytedance/1d-tokenizer's `TiTok`,
single-stage, and turingmotors/One-D-Piece's `OneDPiece` on it; commits in manifest.json), written by
tools/make_titok_fixtures.py: token indices, pre-quantization latents, eval reconstructions, One-D-Piece's
`decode(z, length=k)` for a few k and one training-mode forward whose tail token drop drew k = 4. Their weights
are not stored: `random_state_dict` of that tool draws them again from the manifest's keys, shapes and seed
(checked against its sha256). `mixtok.interop.titok.convert` must turn them into variables with which mixtok
gives the same indices exactly and the same images within TOLERANCE (float32 rounding through one or two
512-wide blocks; the errors measured are at most 2.9e-6 on images up to 3.6). No torch is needed.
"""

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import titok as importer
from mixtok.interop.weight_files import load_variables
from mixtok.tokenizers.titok import sample_tail_token_drop_length
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "titok")
TOLERANCE = 2e-5  # atol on images of std ~1 and latents of std ~1
MODELS = ("titok", "one_d_piece")


@functools.cache
def tool():
    """tools/make_titok_fixtures.py as a module (for `random_state_dict`; it imports only numpy at the top)."""
    spec = importlib.util.spec_from_file_location(
        "make_titok_fixtures", os.path.join(REPO_ROOT, "tools", "make_titok_fixtures.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


@functools.cache
def fixture(model):
    entry = manifest()["models"][model]
    path = os.path.join(FIXTURES, entry["file"])
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], f"{path} is not the file the tool wrote"
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def kwargs(model):
    return manifest()["models"][model]["mixtok_kwargs"]


@functools.cache
def official_state_dict(model):
    entry = manifest()["models"][model]
    arrays = tool().random_state_dict(entry["state_dict_keys"], entry["seed"])
    assert tool().state_dict_sha256(arrays) == entry["state_dict_sha256"], "numpy drew other weights than the tool"
    return arrays


@functools.cache
def converted(model):
    return importer.convert(kwargs(model), official_state_dict(model))


@functools.cache
def mixtok_outputs(model):
    """Eval forward, encoder latents and the prefix decodes (sliced and masked) of the converted model, jitted."""
    tokenizer = importer.create(kwargs(model))
    prefixes = tuple(manifest()["models"][model]["prefixes"])

    @jax.jit
    def run(variables, images):
        out = tokenizer.apply(variables, images)
        latents = tokenizer.apply(variables, images, method=lambda m, x: m.encoder(x, m.latent_tokens))
        q = out.quantizer.quantized
        sliced = {k: tokenizer.apply(variables, q, num_tokens=k, method=tokenizer.decode) for k in prefixes}
        masked = {k: tokenizer.apply(variables, q, num_tokens=jnp.int32(k), method=tokenizer.decode) for k in prefixes}
        return out, latents, sliced, masked

    images = jnp.asarray(fixture(model)["images"].transpose(0, 2, 3, 1))
    return jax.device_get(run(converted(model), images))


def nhwc(array):
    return array.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("model", MODELS)
def test_indices_are_the_official_ones_and_images_agree(model):
    out, latents, _, _ = mixtok_outputs(model)
    golden = fixture(model)
    np.testing.assert_allclose(latents, golden["latents"], rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(out.quantizer.indices, golden["indices"])
    np.testing.assert_allclose(out.reconstruction, nhwc(golden["reconstruction"]), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.quantizer.loss, golden["quantizer_loss"], rtol=1e-5)
    assert int(out.num_tokens) == kwargs(model)["num_latent_tokens"]


@pytest.mark.parametrize("k", manifest()["models"]["one_d_piece"]["prefixes"])
def test_one_d_piece_prefix_decodes_equal_the_official_length_argument(k):
    _, _, sliced, masked = mixtok_outputs("one_d_piece")
    golden = nhwc(fixture("one_d_piece")[f"prefix_{k}"])
    np.testing.assert_allclose(sliced[k], golden, rtol=0, atol=TOLERANCE)  # a Python int: the sequence is cut
    np.testing.assert_allclose(masked[k], golden, rtol=0, atol=TOLERANCE)  # traced: tokens k.. masked as keys
    full = nhwc(fixture("one_d_piece")["reconstruction"])
    assert np.abs(golden - full).max() > 0.05  # the dropped tokens matter, so agreeing is not trivial


def test_one_d_piece_training_forward_is_the_official_tail_token_drop():
    """Official: one k ~ U{1..K} per decode call for the whole batch, the first k tokens kept, the quantizer loss
    over all K. mixtok: a key of the `noise` stream that draws the official k gives the official output."""
    model, golden = "one_d_piece", fixture("one_d_piece")
    k, tokens = int(golden["train_k"]), kwargs(model)["num_latent_tokens"]
    assert 1 < k < tokens
    key = next(
        key
        for key in jax.random.split(jax.random.PRNGKey(0), 64)
        if int(sample_tail_token_drop_length(key, tokens)) == k
    )
    tokenizer = importer.create(kwargs(model))
    out = jax.jit(lambda v, x, key: tokenizer.apply(v, x, train=True, rngs={"noise": key}))(
        converted(model), jnp.asarray(nhwc(golden["images"])), key
    )
    assert out.num_tokens.shape == () and int(out.num_tokens) == k  # one k for the batch
    np.testing.assert_allclose(out.reconstruction, nhwc(golden["train_reconstruction"]), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(out.quantizer.loss, golden["train_quantizer_loss"], rtol=1e-5)
    np.testing.assert_allclose(golden["train_quantizer_loss"], golden["quantizer_loss"], rtol=1e-6)  # all K tokens


@pytest.mark.parametrize("model", MODELS)
def test_official_shapes_are_those_of_the_official_state_dict(model):
    expected = {key: tuple(shape) for key, shape in manifest()["models"][model]["state_dict_keys"]}
    assert importer.official_shapes(kwargs(model)) == expected


def test_to_official_of_converted_weights_is_the_official_state_dict_exactly():
    state_dict = official_state_dict("titok")
    back = importer.to_official(kwargs("titok"), converted("titok"))
    assert back.keys() == state_dict.keys()
    for key, value in state_dict.items():
        assert back[key].shape == value.shape and back[key].flags.c_contiguous, key
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert_trees_equal(importer.convert(kwargs("titok"), back), converted("titok"))


def test_the_fused_attention_and_one_by_one_convs_are_laid_out_as_torch_does():
    params, state_dict = converted("titok")["params"], official_state_dict("titok")
    block = params["encoder"]["transformer"]["block_1"]
    np.testing.assert_array_equal(
        block["attn"]["in_proj"]["kernel"], state_dict["encoder.transformer.1.attn.in_proj_weight"].T
    )
    np.testing.assert_array_equal(block["mlp"]["fc2"]["bias"], state_dict["encoder.transformer.1.mlp.c_proj.bias"])
    np.testing.assert_array_equal(params["decoder"]["ffn"]["kernel"], state_dict["decoder.ffn.0.weight"][:, :, 0, 0].T)
    np.testing.assert_array_equal(params["quantize"]["codebook"], state_dict["quantize.embedding.weight"])


def _legacy_state_dict():
    state_dict = dict(official_state_dict("titok"))
    state_dict["decoder.ffn.2.weight"] = np.zeros((1024, 1024, 1, 1), np.float32)
    state_dict["pixel_decoder.conv_in.weight"] = np.zeros((3,), np.float32)
    return state_dict


def test_a_legacy_two_stage_state_dict_is_refused_in_one_line():
    with pytest.raises(ValueError) as info:
        importer.convert("titok_s128", _legacy_state_dict())
    message = str(info.value)
    assert "\n" not in message and "legacy two-stage" in message and "decoder.ffn.2.weight" in message
    assert "tokenizer_titok_sl256_vq8k_imagenet" in message


def test_names_resolve_and_unconvertible_or_unknown_names_say_why():
    assert (
        importer.resolve_name("yucornetto/tokenizer_titok_bl64_vq8k_imagenet") == "tokenizer_titok_bl64_vq8k_imagenet"
    )
    assert importer.tokenizer_kwargs("tokenizer_titok_sl256_vq8k_imagenet")["decoder_width"] == 1024
    assert importer.tokenizer_kwargs("one_d_piece_s256")["tail_token_drop"] is True
    with pytest.raises(ValueError, match=r"^tokenizer_titok_l32_imagenet is a legacy two-stage model.*sl256"):
        importer.resolve_name("tokenizer_titok_l32_imagenet")
    with pytest.raises(ValueError, match="One-D-Piece-S-256 is a legacy"):
        importer.resolve_name("turing-motors/One-D-Piece-S-256")
    with pytest.raises(ValueError, match="VAE tokenizer"):
        importer.resolve_name("tokenizer_titok_bl64_vae_c16_imagenet")
    with pytest.raises(ValueError, match="Did you mean 'titok_s128'"):
        importer.resolve_name("titok_s12")


def test_a_state_dict_that_does_not_fit_lists_every_problem():
    state_dict = dict(official_state_dict("titok"))
    del state_dict["decoder.mask_token"]
    state_dict["encoder.transformer.2.ln_1.weight"] = np.ones(512, np.float32)  # a block too many
    state_dict["quantize.embedding.weight"] = np.zeros((64, 13), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert(kwargs("titok"), state_dict)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "decoder.mask_token (mixtok decoder/mask_token)" in message
    assert "encoder.transformer.2.ln_1.weight" in message
    assert "quantize.embedding.weight: expected (64, 12), got (64, 13)" in message
    del state_dict["quantize.embedding.weight"]
    with pytest.raises(ValueError, match="no quantize.embedding.weight: a VAE"):
        importer.convert(kwargs("titok"), state_dict)
    with pytest.raises(ValueError, match="no classifier"):
        importer.convert(kwargs("titok"), official_state_dict("titok"), num_classes=10)


def test_cli_converts_a_safetensors_file(tmp_path, monkeypatch, capsys):
    safetensors = pytest.importorskip("safetensors.numpy")
    monkeypatch.setitem(importer.RELEASES, "tiny_titok", kwargs("titok"))
    checkpoint, output = tmp_path / "model.safetensors", tmp_path / "tiny.msgpack"
    safetensors.save_file(official_state_dict("titok"), str(checkpoint))
    assert importer.main(["tiny_titok", str(checkpoint), str(output)]) == 0
    assert "parameters of tiny_titok (8 tokens, 64 x 12 codebook)" in capsys.readouterr().out
    assert_trees_equal(load_variables(output), converted("titok"))
    assert importer.main(["tiny_titok", str(checkpoint), str(output)]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_cli_refuses_a_legacy_checkpoint_with_exit_code_2(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    checkpoint, output = tmp_path / "model.safetensors", tmp_path / "out.msgpack"
    safetensors.save_file(
        {k: v for k, v in _legacy_state_dict().items() if not k.startswith("encoder.")}, str(checkpoint)
    )
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.titok", "titok_s128", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.startswith("error: the state dict is a legacy two-stage model") and result.stderr.count("\n") == 1
    )
    assert not output.exists()
