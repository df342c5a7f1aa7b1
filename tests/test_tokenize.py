"""python -m mixtok.tokenize: encode / decode round trip on a trained run, prefix decoding, and the user errors."""

import json

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from mixtok import tokenize
from mixtok.train.trainer import train_and_evaluate


def _config():
    config = ConfigDict()
    config.seed = 0
    config.task = "tokenizer"
    config.total_steps = 2
    config.batch_size = 8
    config.log_every = 1
    config.eval_every = 2
    config.checkpoint_every = 2
    config.progress_bar = False
    config.tensorboard = False
    config.async_checkpointing = False
    config.data = ConfigDict(
        dict(
            name="sample_photos",
            image_size=16,
            num_examples=16,
            num_eval_examples=8,
            crop_pct=1.0,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )
    config.model = ConfigDict(
        dict(
            name="one_d_piece_s256",
            kwargs=dict(
                image_size=16,
                patch_size=8,
                encoder_width=16,
                encoder_depth=1,
                encoder_heads=2,
                decoder_width=16,
                decoder_depth=1,
                decoder_heads=2,
                num_latent_tokens=4,
                quantizer=dict(name="fsq", levels=(5, 5, 5)),
            ),
        )
    )
    config.optimizer = ConfigDict(dict(name="adamw", lr=1e-3, weight_decay=0.0))
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tokenizer_run")
    metrics = train_and_evaluate(_config(), str(workdir))
    assert np.isfinite(metrics["eval/psnr"])
    assert (workdir / "images" / "step_0000002.png").is_file()  # originals beside reconstructions
    images = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for name in ("a.png", "b.png", "c.png"):
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels, "RGB").save(images / name)
        paths.append(str(images / name))
    return workdir, paths


def _reconstruct(workdir, paths, num_tokens=None):
    """The tokenizer applied to the images directly: what encode + decode must reproduce."""
    restored = tokenize.TokenizerRun(str(workdir))
    x = np.stack([np.asarray(Image.open(p), np.float32) / 255.0 for p in paths]) * 2.0 - 1.0
    kwargs = {} if num_tokens is None else {"num_tokens": num_tokens}
    out = restored.model.apply(restored.variables, x, **kwargs)
    return np.rint(np.clip(np.asarray(out.reconstruction) * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)


def test_encode_then_decode_gives_the_tokenizers_reconstructions(run, tmp_path):
    workdir, paths = run
    tokens_path = tmp_path / "tokens.npz"
    assert tokenize.main(["encode", "--workdir", str(workdir), "--images", *paths, "--out", str(tokens_path)]) == 0
    saved = tokenize.read_tokens(str(tokens_path))
    assert saved["tokens"].shape == (3, 4) and saved["tokens"].dtype == np.int32
    assert saved["header"]["tokenizer"] == "one_d_piece_s256" and saved["header"]["step"] == 2
    assert (
        tokenize.main(
            ["decode", "--workdir", str(workdir), "--tokens", str(tokens_path), "--out", str(tmp_path / "full")]
        )
        == 0
    )
    decoded = np.stack([np.asarray(Image.open(tmp_path / "full" / f"{i:04d}_{n}.png")) for i, n in enumerate("abc")])
    assert np.abs(decoded.astype(int) - _reconstruct(workdir, paths).astype(int)).max() <= 1
    # Prefix decoding from the first 2 of 4 tokens.
    assert (
        tokenize.main(
            [
                "decode",
                "--workdir",
                str(workdir),
                "--tokens",
                str(tokens_path),
                "--out",
                str(tmp_path / "k2"),
                "--num-tokens",
                "2",
            ]
        )
        == 0
    )
    decoded = np.stack([np.asarray(Image.open(tmp_path / "k2" / f"{i:04d}_{n}.png")) for i, n in enumerate("abc")])
    assert np.abs(decoded.astype(int) - _reconstruct(workdir, paths, 2).astype(int)).max() <= 1


def test_user_errors_say_what_is_wrong_and_nothing_is_overwritten(run, tmp_path, capsys):
    workdir, paths = run
    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((16, 16), np.uint8), "L").save(grey)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 16, 3), np.uint8), "RGB").save(big)

    def error(*argv):
        assert tokenize.main(list(argv)) == 2
        return capsys.readouterr().err

    assert "the image is 'L'; the tokenizer takes RGB" in error(
        "encode", "--workdir", str(workdir), "--images", str(grey), "--out", str(tmp_path / "t.npz")
    )
    assert "is 16x20 (width x height); this tokenizer takes 16x16" in error(
        "encode", "--workdir", str(workdir), "--images", str(big), "--out", str(tmp_path / "t.npz")
    )
    tokens_path = tmp_path / "tokens.npz"
    assert tokenize.main(["encode", "--workdir", str(workdir), "--images", paths[0], "--out", str(tokens_path)]) == 0
    before = tokens_path.read_bytes()
    assert "already exists" in error(
        "encode", "--workdir", str(workdir), "--images", paths[0], "--out", str(tokens_path)
    )
    assert tokens_path.read_bytes() == before
    for k in ("0", "5"):
        assert f"--num-tokens {k} is out of range: valid values are 1..4" in error(
            "decode",
            "--workdir",
            str(workdir),
            "--tokens",
            str(tokens_path),
            "--out",
            str(tmp_path / "o"),
            "--num-tokens",
            k,
        )
    # Token files from another tokenizer, or from other weights of this one, are refused.
    saved = tokenize.read_tokens(str(tokens_path))
    for change, message in (
        ({"tokenizer": "titok_s128"}, "written by a different tokenizer"),
        ({"weights_sha256": "0" * 64}, "written by other weights of one_d_piece_s256"),
    ):
        other = tmp_path / f"other_{len(message)}.npz"
        header = {**saved["header"], **change}
        np.savez(other, tokens=saved["tokens"], files=np.asarray(saved["files"]), header=np.asarray(json.dumps(header)))
        assert message in error(
            "decode", "--workdir", str(workdir), "--tokens", str(other), "--out", str(tmp_path / "o")
        )
    assert "no checkpoints/ folder" in error(
        "decode", "--workdir", str(tmp_path), "--tokens", str(tokens_path), "--out", str(tmp_path / "o")
    )
    assert not (tmp_path / "o").exists()


def test_weights_digest_changes_with_any_weight():
    params = {"a": np.zeros((2, 3), np.float32), "b": {"c": np.ones((4,), np.float32)}}
    changed = jax.tree_util.tree_map(np.copy, params)
    changed["b"]["c"][2] = 1.0 + 1e-7
    assert tokenize.weights_digest(params) == tokenize.weights_digest(jax.tree_util.tree_map(np.copy, params))
    assert tokenize.weights_digest(params) != tokenize.weights_digest(changed)
