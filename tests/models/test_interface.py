"""Every backbone speaks the zoo's argument vocabulary and has the same feature interface.

For each registered variant of the families in FAMILIES, built small: `method="features"` is exactly
what the head consumes (the head applied to it gives `__call__`'s logits), `method="intermediates"`
returns NHWC maps (ViT / DeiT: token sequences [B, L, C]) whose last is `features`, and the universal
arguments are accepted under their shared names (the families' old names are rejected with the new one
suggested).

FAMILIES lists the backbone classes that implement the interface (`mixtok.models.backbone`); a
family joins by adding its class and a small configuration to SMALL.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models import create_model, list_models, model_spec
from mixtok.models.affnet import AFFNet
from mixtok.models.cas_vit import CASViT
from mixtok.models.davit import DaViT
from mixtok.models.ffnet import FFNet
from mixtok.models.gfnet import GFNet, GFNetPyramid
from mixtok.models.hydra_vit import HydraViT
from mixtok.models.iformer import IFormer
from mixtok.models.lsnet import LSNet
from mixtok.models.mamba_mixer import ViM2
from mixtok.models.metaformer import MetaFormer
from mixtok.models.mlp_mixer import MlpMixer
from mixtok.models.ms_mlp import MSMLP
from mixtok.models.ponet import PoNetViT
from mixtok.models.raft_mlp import RaftMLP
from mixtok.models.s2aformer import S2AFormer
from mixtok.models.strip_mlp import StripMLPNet
from mixtok.models.transnext import TransNeXt
from mixtok.models.vit import VisionTransformer
from mixtok.models.wavemix import WaveMix
from tests.helpers import random_variables

IMAGE = 64
ONE_BLOCK = (1, 1, 1, 1)
# Per family: a small configuration (one block per stage, narrow) that still has every kind of layer.
SMALL = {
    MetaFormer: dict(depths=ONE_BLOCK, dims=(16, 16, 32, 32), mlp_ratios=(2, 2, 2, 2)),
    GFNet: dict(depths=(2,), dims=(16,), mlp_ratios=(2,)),
    MlpMixer: dict(depths=(2,), dims=(16,), mlp_ratios=(2,)),
    GFNetPyramid: dict(depths=ONE_BLOCK, dims=(8, 8, 16, 16), mlp_ratios=(2, 2, 2, 2)),
    HydraViT: dict(depths=(2,), dims=(16,), mlp_ratios=(2,), d_state=4, headdim=8),
    PoNetViT: dict(depths=(2,), dims=(16,), mlp_ratios=(2,)),
    DaViT: dict(depths=ONE_BLOCK, dims=(8, 16, 16, 16), num_heads=(2, 2, 2, 2), mlp_ratios=(2, 2, 2, 2)),
    AFFNet: dict(depths=(1, 1, 1, 1, 1), dims=(8, 8, 16, 16, 16), ffn_dims=(16, 16, 16)),
    CASViT: dict(depths=ONE_BLOCK, dims=(8, 8, 16, 16), mlp_ratios=(2, 2, 2, 2)),
    FFNet: dict(depths=ONE_BLOCK, dims=(8, 16, 16, 32), in_dim=8, mlp_ratios=(2, 2, 2, 2)),
    IFormer: dict(
        depths=ONE_BLOCK,
        dims=(16, 32, 48, 64),
        num_heads=(2, 4, 4, 4),
        attention_heads=(1, 1, 2, 3),
        mlp_ratios=(2, 2, 2, 2),
    ),
    LSNet: dict(depths=(0, 2, 0, 2), dims=(16, 16, 24, 32), num_heads=(2, 2, 2, 2), key_dim=4),
    S2AFormer: dict(
        depths=ONE_BLOCK, dims=(16, 16, 32, 32), num_heads=(1, 1, 2, 2), mlp_ratios=(2, 2, 2, 2), stem_dim=8
    ),
    TransNeXt: dict(
        depths=ONE_BLOCK, dims=(8, 16, 16, 16), num_heads=(1, 2, 2, 2), mlp_ratios=(2, 2, 2, 2), pretrain_size=64
    ),
    MSMLP: dict(depths=ONE_BLOCK, dims=(10, 20, 40, 80), mlp_ratios=(2, 2, 2, 2)),  # 5 torch.chunk groups each
    RaftMLP: dict(depths=ONE_BLOCK, dims=(8, 16, 16, 32), mlp_ratios=(2, 2, 2, 2)),
    WaveMix: dict(depths=(2,), dims=(8,), mlp_ratios=2, levels=1, stem="patchify"),  # one small config for all four
    ViM2: dict(depths=ONE_BLOCK, channel_depths=(1, 0, 0, 0), dims=(8, 8, 16, 16), d_state=4),
    StripMLPNet: dict(depths=ONE_BLOCK, dims=(8, 16, 32, 64)),  # every width: C / 2 divisible by p = 4
    VisionTransformer: dict(depths=(2,), dims=(16,), num_heads=2, mlp_ratios=(2,)),
}
# Families whose features are token sequences [B, L, C] (timm's forward_features), not NHWC maps.
TOKEN_SEQUENCE_FAMILIES = (VisionTransformer,)
FAMILIES = tuple(SMALL)
MODELS = [name for name in list_models() if model_spec(name).cls in FAMILIES]
UNIVERSAL = ("depths", "dims", "num_classes", "drop_path_rate", "head_dropout", "image_size", "dtype", "param_dtype")
# What the families called these before the shared vocabulary; none may come back.
RETIRED = (
    "img_size",
    "depth",
    "embed_dim",
    "embed_dims",
    "mlp_ratio",
    "drop_rate",
    "classifier_dropout",
    "expansion_ratios",
    "mv2_channels",
    "mv2_depths",
    "aff_channels",
    "aff_depths",
    "use_layer_scale",
    "layer_scale_init_value",
)


def _fields(cls):
    return {f.name for f in dataclasses.fields(cls) if f.init and f.name not in ("parent", "name")}


UNIVERSAL_VALUES = dict(drop_path_rate=0.1, head_dropout=0.1, image_size=IMAGE, dtype=None, param_dtype=jnp.float32)


def _small(name: str) -> nn.Module:
    """The variant at a small size, built with every universal argument given explicitly."""
    return create_model(name, num_classes=3, **SMALL[model_spec(name).cls], **UNIVERSAL_VALUES)


def _random_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Random values in the shapes `init` gives (no compiled init); BatchNorm variances kept positive."""
    return random_variables(model, x, seed=seed, positive=("var",))


def _images(seed: int = 1) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(2, IMAGE, IMAGE, 3)), jnp.float32)


def _distinct_small_configs():
    """One variant per distinct small configuration: sizes collapse once depths and dims are overridden."""
    seen, names = set(), []
    for name in MODELS:
        spec = model_spec(name)
        config = {**spec.kwargs, **SMALL[spec.cls], **UNIVERSAL_VALUES}
        key = (spec.cls.__name__, repr(sorted(config.items())))
        if key not in seen:
            seen.add(key)
            names.append(name)
    return names


@pytest.mark.parametrize("name", MODELS)
def test_every_backbone_takes_the_universal_arguments_and_none_of_the_retired_names(name):
    fields = _fields(model_spec(name).cls)
    assert set(UNIVERSAL) <= fields
    assert not fields & set(RETIRED)


@pytest.mark.parametrize("name", MODELS)
def test_features_and_intermediates_have_the_shapes_the_head_consumes(name):
    model = _small(name)
    x = jax.ShapeDtypeStruct((2, IMAGE, IMAGE, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    logits = jax.eval_shape(model.apply, variables, x)
    features = jax.eval_shape(lambda v, x: model.apply(v, x, method="features"), variables, x)
    maps = jax.eval_shape(lambda v, x: model.apply(v, x, method="intermediates"), variables, x)
    assert logits.shape == (2, 3)
    rank = 3 if isinstance(model, TOKEN_SEQUENCE_FAMILIES) else 4
    assert features.ndim == rank and features.shape[0] == 2 and features.shape[-1] == model.dims[-1]
    assert all(m.ndim == rank and m.shape[0] == 2 for m in maps) and maps[-1].shape == features.shape
    stages = len(model.depths) if len(model.depths) > 1 else model.depths[0]  # isotropic: one map per block
    assert len(maps) == stages
    head = jax.eval_shape(lambda v, f: model.apply(v, f, method="forward_head"), variables, features)
    assert head.shape == logits.shape


@pytest.mark.parametrize("name", _distinct_small_configs())
def test_the_head_on_features_gives_the_logits_and_the_last_intermediate_is_the_features(name):
    model = _small(name)
    x = _images()
    variables = _random_variables(model, x)

    @jax.jit
    def outputs(v, x):
        features = model.apply(v, x, method="features")
        maps = model.apply(v, x, method="intermediates")
        shifted = features + 0.5 * jnp.sign(features) + 0.1
        return (
            model.apply(v, x),
            features,
            maps,
            model.apply(v, features, method="forward_head"),
            model.apply(v, shifted, method="forward_head"),
        )

    logits, features, maps, head, head_of_shifted = outputs(variables, x)
    np.testing.assert_allclose(np.asarray(head), np.asarray(logits), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(maps[-1]), np.asarray(features))
    assert np.all(np.isfinite(np.asarray(logits)))
    # The head reads the features it is given: other features give other logits.
    assert not np.allclose(np.asarray(head_of_shifted), np.asarray(logits), atol=1e-4)


@pytest.mark.parametrize(
    "cls",
    [
        c
        for c in FAMILIES
        if _fields(c) >= {"image_size"}
        and next(f for f in dataclasses.fields(c) if f.name == "image_size").default is None
    ],
)
def test_image_size_of_a_resolution_free_backbone_is_checked_not_ignored(cls):
    name = next(
        n
        for n in MODELS
        if model_spec(n).cls is cls
        and "random" not in repr(model_spec(n).kwargs)
        and "spectrum" not in repr(model_spec(n).kwargs)
    )
    model = _small(name)
    with pytest.raises(ValueError, match=f"image_size={IMAGE} but got 96x96 images"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 96, 96, 3), jnp.float32))


@pytest.mark.parametrize(
    "name,retired,current",
    [
        ("gfnet_ti", "img_size", "image_size"),
        ("gfnet_ti", "embed_dim", "dims"),
        ("affnet_et", "classifier_dropout", "head_dropout"),
        ("davit_tiny", "mlp_ratio", "mlp_ratios"),
        ("ffnet_1", "expansion_ratios", "mlp_ratios"),
    ],
)
def test_a_retired_argument_name_is_rejected_with_the_current_one_listed(name, retired, current):
    with pytest.raises(ValueError, match=f"'{retired}'.* Valid .*[ :]{current}[,.]"):
        create_model(name, **{retired: 1})


def test_unknown_output_is_rejected_with_the_valid_ones():
    model = _small("poolformer_s12")
    x = jax.ShapeDtypeStruct((1, IMAGE, IMAGE, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="output must be one of .*'features'.*got 'feature'"):
        jax.eval_shape(lambda v, x: model.apply(v, x, method="forward", output="feature"), variables, x)
