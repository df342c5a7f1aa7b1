"""The WaveMix zoo: official parameter counts, the stems, sizes the DWT accepts, drop path, a train step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.layers.drop import DropPath
from mixtok.models import count_params, create_model, list_models, model_spec, wavemix_variants
from mixtok.models.wavemix import WaveMix
from tests.helpers import random_variables

OFFICIAL_COUNTS = {  # pranavphoenix/WaveMix classification.WaveMix as Saved_weights/ImageNet/*.py build them
    "wavemix_192_16": 27_857_608,
    "wavemix_192_16_level1": 12_494_536,
    "wavemix_256_16": 49_416_808,
    "wavemix_256_16_level4": 62_764_776,
}
TINY = dict(depths=(1,), dims=(8,), levels=1, patch_size=2)


def test_the_zoo_has_the_four_released_imagenet_models():
    assert list_models("wavemix*") == sorted(OFFICIAL_COUNTS) == sorted(wavemix_variants.SIZES)


@pytest.mark.parametrize("name", sorted(OFFICIAL_COUNTS))
def test_parameter_count_equals_the_official_count(name):
    """Counted from a one-block trace (jax.eval_shape): the 16 blocks are one class with the same arguments, so the
    model has the stem, the head and 16 times block layers_0 (a full 16-block trace costs seconds per variant)."""
    side = 256 if name.endswith("level4") else 224  # the level-4 model's official forward fails at 224
    x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(create_model(name, depths=(1,)).init, jax.random.PRNGKey(0), x))
    block = count_params({"params": shapes["params"]["layers_0"]})
    assert model_spec(name).kwargs["depths"] == (16,)
    assert count_params(shapes) + 15 * block == OFFICIAL_COUNTS[name] == model_spec(name).official_params
    # The BatchNorms' running statistics are buffers, not parameters: one mean and one variance per channel.
    dim, levels = model_spec(name).kwargs["dims"][0], model_spec(name).kwargs["levels"]
    per_block = dim + (levels - 1) * (dim // 2)  # feed-forward outputs: C at level 1, C/2 at each coarser level
    stem = dim if model_spec(name).kwargs["stem"] == "patchify" else 0
    assert sum(x.size for x in jax.tree.leaves(shapes["batch_stats"])) == 2 * (per_block + stem)


def test_the_level4_model_rejects_224_px_and_names_a_size_that_works():
    model = create_model("wavemix_256_16_level4", depths=(1,))
    with pytest.raises(ValueError, match=r"224x224 is not divisible by the model's total stride 64 .*4-level DWT"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))


def test_sizes_image_size_stems_and_isotropy_are_checked():
    key, x = jax.random.PRNGKey(0), jnp.zeros((1, 12, 16, 3))
    with pytest.raises(ValueError, match=r"12x16 is not divisible by the model's total stride 8"):
        jax.eval_shape(create_model("wavemix_192_16", **dict(TINY, levels=2)).init, key, x)
    with pytest.raises(ValueError, match="built with image_size=16 but got 12x16 images"):
        jax.eval_shape(create_model("wavemix_192_16", image_size=16, **TINY).init, key, x)
    with pytest.raises(ValueError, match=r"stem='pachify' is not one of \('patchify', 'strided'\)"):
        jax.eval_shape(create_model("wavemix_192_16", stem="pachify", **TINY).init, key, x)
    with pytest.raises(ValueError, match="WaveMix is isotropic"):
        jax.eval_shape(create_model("wavemix_192_16", **dict(TINY, depths=(1, 1))).init, key, x)


def test_the_stems_are_the_official_sequentials():
    """'pachify': conv3x3, conv3x3, patch conv, GELU, BatchNorm (conv.0, .1, .2, .4); 'strided': two stride-s convs."""
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    patchify = nn.meta.unbox(jax.eval_shape(create_model("wavemix_192_16", depths=(1,)).init, jax.random.PRNGKey(0), x))
    stem = {k: jax.tree.map(lambda s: s.shape, v) for k, v in patchify["params"].items() if k.startswith("conv_")}
    assert stem == {
        "conv_0": {"kernel": (3, 3, 3, 48), "bias": (48,)},
        "conv_1": {"kernel": (3, 3, 48, 96), "bias": (96,)},
        "conv_2": {"kernel": (4, 4, 96, 192), "bias": (192,)},
        "conv_4": {"scale": (192,), "bias": (192,)},
    }
    strided = create_model("wavemix_256_16_level4", depths=(1,))
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    shapes = nn.meta.unbox(jax.eval_shape(strided.init, jax.random.PRNGKey(0), x))
    assert {k: v["kernel"].shape for k, v in shapes["params"].items() if k.startswith("conv_")} == {
        "conv_0": (3, 3, 3, 128),
        "conv_1": (3, 3, 128, 256),
    }
    features = jax.eval_shape(lambda v, images: strided.apply(v, images, method="features"), shapes, x)
    assert features.shape == (1, 16, 16, 256)  # two stride-2 convs: a quarter of the side


def test_drop_path_rises_linearly_over_the_blocks_and_training_uses_dropout_and_batch_statistics():
    model = create_model(
        "wavemix_192_16", num_classes=3, drop_path_rate=0.3, head_dropout=0.1, **dict(TINY, depths=(2,))
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 12, 3)), jnp.float32)
    variables = random_variables(model, x, seed=1, positive=("var",))
    rates = []

    def record(module, method_name):
        if isinstance(module, DropPath) and method_name == "__call__":
            rates.append(module.rate)
        return False

    jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, capture_intermediates=record))
    np.testing.assert_allclose(rates, np.linspace(0, 0.3, 2))  # block order: linspace(0, rate, depth)

    @jax.jit
    def train_forward(rng):  # the gradients are checked on the mixer (tests/mixers/test_wavelet.py)
        rngs = dict(zip(("dropout", "drop_path"), jax.random.split(rng)))
        return model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])

    (logits_a, state), (logits_b, _) = train_forward(jax.random.PRNGKey(2)), train_forward(jax.random.PRNGKey(3))
    assert np.all(np.isfinite(np.asarray(logits_a))) and not np.allclose(logits_a, logits_b)  # dropout is on
    old, new = variables["batch_stats"]["conv_4"]["mean"], state["batch_stats"]["conv_4"]["mean"]
    assert not np.allclose(np.asarray(old), np.asarray(new))  # running statistics move in training


def test_wavemix_is_a_backbone_with_the_shared_vocabulary():
    from mixtok.models.backbone import Backbone

    assert issubclass(WaveMix, Backbone)
    assert model_spec("wavemix_192_16").kwargs["dropout"] == 0.5  # every release: dropout = 0.5


def test_imagenet_config_is_the_repository_s_adamw_at_a_constant_rate_without_mixing():
    """pranavphoenix/WaveMix Image_Classification/*.py: AdamW(lr 0.001, betas (0.9, 0.999), eps 1e-8, weight_decay
    0.01) over every parameter, no scheduler (warmup_cosine from lr to min_lr = lr without warm-up is constant), plain
    cross-entropy; timm.py _cfg: crop_pct 1.0, bicubic."""
    from pathlib import Path

    from mixtok.train import config_files

    path = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "imagenet" / "wavemix_192_16.py"
    config = config_files.load_module(path).get_config("batch_size=1024")
    optimizer = config.optimizer
    assert config.model.name == "wavemix_192_16" and config.model.kwargs.dropout == 0.5
    assert (optimizer.name, optimizer.lr, optimizer.weight_decay) == ("adamw", 2e-3, 0.01)  # lr linear in the batch
    assert optimizer.get("schedule", "warmup_cosine") == "warmup_cosine" and optimizer.warmup_steps == 0
    assert optimizer.min_lr == optimizer.lr and optimizer.weight_decay_on == "all"
    assert optimizer.get("grad_clip") is None and (optimizer.b1, optimizer.b2, optimizer.eps) == (0.9, 0.999, 1e-8)
    assert config.label_smoothing == 0.0 and "mixup" not in config and "model_ema" not in config
    assert config.data.crop_pct == 1.0 and config.data.eval_interpolation == "bicubic"
