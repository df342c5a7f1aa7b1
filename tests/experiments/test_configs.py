"""Every experiment config loads, validates, builds its model and says how to run it.

Configs are found by glob under experiments/configs/, so a new config file is covered without
touching this test. Models are built with `jax.eval_shape` (shapes only, nothing compiled); one
ImageNet config is smoke-trained end to end with `:runlocal`.
"""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from ml_collections import ConfigDict

from mixtok import data as data_lib
from mixtok.data import DatasetInfo
from mixtok.models import count_params, create_model, list_models, model_spec
from mixtok.models.metaformer_variants import BASELINES_PAPER, POOLFORMER_PAPER
from mixtok.tokenizers import create_tokenizer, list_tokenizers, tokenizer_spec
from mixtok.train import config_files
from mixtok.train.config import compute_dtype, validate_config
from mixtok.train.optimizer import create_optimizer
from mixtok.train.tasks import get_task
from mixtok.train.trainer import train_and_evaluate

CONFIG_DIR = Path(__file__).resolve().parents[2] / "experiments" / "configs"
# Helper modules beside the configs (imported by them, not run by --config).
HELPER_MODULES = ("common.py",)
CONFIGS = sorted(p for p in CONFIG_DIR.rglob("*.py") if p.name not in HELPER_MODULES)
IMAGENET_CONFIGS = sorted(p for p in (CONFIG_DIR / "imagenet").glob("*.py") if p.name not in HELPER_MODULES)
IMAGENET_TRAIN_IMAGES = 1_281_167  # ImageNet-1k's training split
# The papers' training resolutions: AFFNet (its README) and FFNet (its default_cfgs) train at 256 px.
TRAINING_IMAGE_SIZE = {"affnet": 256, "ffnet": 256}
# The stochastic depth main_gfnet.py builds each architecture with (raoyongming/GFNet).
GFNET_DROP_PATH = {
    "gfnet_ti": 0.0,
    "gfnet_xs": 0.0,
    "gfnet_s": 0.15,
    "gfnet_b": 0.25,
    "gfnet_h_ti": 0.1,
    "gfnet_h_s": 0.2,
    "gfnet_h_b": 0.4,
}
IN_MEMORY_SOURCES = ("digits", "synthetic", "sample_photos", "sample_videos", "marked_majority")
# The config trained for real below: IdentityFormer has no token mixer, so it compiles and steps
# fastest on a CPU (XLA's depthwise 7x7 convolution is slow there).
SMOKE_CONFIG = CONFIG_DIR / "imagenet" / "identityformer_s12.py"


# Model arguments that change no parameter: an ImageNet classification config that sets only these builds its
# named model, whose parameter count tests/models checks at the paper's size. Tracing every one of the 66 at
# 224 px would double that check and cost minutes, so the full trace runs for the smallest variant of each
# family (TRACED_IMAGENET) and for every config that is not an ImageNet classifier.
NON_STRUCTURAL_KWARGS = {"drop_path_rate", "head_dropout", "head_dropout_before_mlp"}


def _family_smallest(paths) -> set[Path]:
    """Each family's ImageNet classification config of the fewest official parameters."""
    smallest = {}
    for path in paths:
        if path.stem not in list_models() or model_spec(path.stem).official_params is None:
            continue
        family, count = path.stem.rsplit("_", 1)[0], model_spec(path.stem).official_params  # gfnet_h apart
        if family not in smallest or count < smallest[family][0]:
            smallest[family] = (count, path)
    return {path for _, path in smallest.values()}


TRACED_IMAGENET = _family_smallest(IMAGENET_CONFIGS)


def config_id(path: Path) -> str:
    return str(path.relative_to(CONFIG_DIR))


def load_module(path: Path):
    return config_files.load_module(path)


def get_config(path: Path, arg=None):
    return load_module(path).get_config(arg)


def num_classes(config) -> int:
    """The config's class count, without reading data from disk."""
    if config.data.name in IN_MEMORY_SOURCES:
        return data_lib.dataset_info(config.data).num_classes
    assert config.data.get("num_classes"), (
        "A config that reads data from disk should set data.num_classes: it is checked against the data at "
        "start-up and lets the model be built without the data."
    )
    return config.data.num_classes


def is_tokenizer(config) -> bool:
    return config.get("task", "classification") == "tokenizer"


def abstract_variables(config, classes: int, image_size: int):
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    if config.get("task") == "sequence_classification":  # token ids [B, L]; image_size is L for sequence data
        images = jax.ShapeDtypeStruct((1, image_size), jnp.int32)
    if is_tokenizer(config):
        tokenizer = create_tokenizer(
            config.model.name, dtype=compute_dtype(config), **config.model.get("kwargs", ConfigDict()).to_dict()
        )
        out, variables = jax.eval_shape(tokenizer.init_with_output, jax.random.PRNGKey(0), images)
        assert out.reconstruction.shape == images.shape
        return variables
    model = create_model(
        config.model.name,
        num_classes=classes,
        dtype=compute_dtype(config),
        **config.model.get("kwargs", ConfigDict()).to_dict(),
    )
    logits, variables = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0), images)
    assert logits.shape == (1, classes)
    return variables


def build_classification_task(config, classes: int, image_size: int):
    info = DatasetInfo(
        num_classes=classes, num_train=64, num_eval=32, image_size=image_size, mean=(0.5,) * 3, std=(0.5,) * 3
    )
    return get_task(config.get("task", "classification")).from_config(config, info)


def imagenet_names():
    return [p.stem for p in IMAGENET_CONFIGS]


def test_every_titok_and_one_d_piece_variant_has_an_imagenet_config_with_the_official_optimizer():
    variants = set(list_tokenizers("titok_*")) | set(list_tokenizers("one_d_piece_*"))
    assert len(variants) == 6 and variants <= set(imagenet_names())
    for name in variants:
        config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
        batch = 1024 if name.startswith("one_d_piece") else 256
        assert config.task == "tokenizer" and config.batch_size == batch
        # TiTok stage 1: AdamW 1e-4, betas (0.9, 0.99), wd 1e-4, 10k warm-up, cosine to 1e-5, clip 1.
        assert (config.optimizer.lr, config.optimizer.b2, config.optimizer.weight_decay) == (1e-4, 0.99, 1e-4)
        assert config.optimizer.warmup_steps == 10_000 and config.optimizer.grad_clip == 1.0
        # Stage 2 losses: L2 1.0, GAN 0.01 from step 20k with LeCam 0.001.
        assert (config.loss.gan_weight, config.loss.gan_start_step, config.loss.lecam_weight) == (0.01, 20_000, 0.001)


def test_the_configs_are_found():
    assert CONFIG_DIR / "quickstart.py" in CONFIGS
    assert len(IMAGENET_CONFIGS) >= 28


def test_every_metaformer_paper_variant_has_an_imagenet_config():
    variants = {n for n in list_models() if model_spec(n).paper in (POOLFORMER_PAPER, BASELINES_PAPER)}
    assert len(variants) == 28
    assert variants == set(metaformer_names())


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_the_docstring_gives_the_command_that_runs_the_config(path):
    doc = load_module(path).__doc__ or ""
    assert "python -m mixtok.train" in doc
    assert f"--config experiments/configs/{config_id(path)}" in doc
    assert "--workdir" in doc


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_the_default_config_validates_and_builds_its_model_and_optimizer(path):
    """ImageNet configs also build the paper's model: 224 px, 1000 classes, the official count."""
    config = get_config(path)
    validate_config(config)
    classes, image_size = num_classes(config), config.data.get("image_size", 32)
    untraced = path in IMAGENET_CONFIGS and path not in TRACED_IMAGENET and path.stem in list_models()
    if untraced and model_spec(path.stem).official_params is not None:
        kwargs = set(config.model.get("kwargs", ConfigDict()).keys())
        assert kwargs <= NON_STRUCTURAL_KWARGS, f"{kwargs - NON_STRUCTURAL_KWARGS} may change the model: trace it"
        assert config.model.name == path.stem and model_spec(path.stem).official_params is not None
        family = config.model.name.split("_")[0]
        assert (image_size, classes) == (TRAINING_IMAGE_SIZE.get(family, 224), 1000)
        create_model(config.model.name, num_classes=classes, **config.model.kwargs.to_dict())  # the arguments exist
        create_optimizer(config.optimizer, config.total_steps)
        build_classification_task(config, classes, image_size)
        return
    variables = abstract_variables(config, classes, image_size)
    tx, _ = create_optimizer(config.optimizer, config.total_steps)
    jax.eval_shape(tx.init, variables["params"])
    if not is_tokenizer(config):  # the task, with its Mixup / CutMix, builds from the config
        task = build_classification_task(config, classes, image_size)
        assert (task.mixup is None) == (config.get("mixup") is None)
    if path in IMAGENET_CONFIGS and is_tokenizer(config):
        assert (image_size, classes) == (256, 1000)
        assert count_params(variables) == tokenizer_spec(config.model.name).official_params
    elif path in IMAGENET_CONFIGS:
        family = config.model.name.split("_")[0]
        expected_size = TRAINING_IMAGE_SIZE.get(family, 224)
        assert (image_size, classes) == (expected_size, 1000)
        official = model_spec(config.model.name).official_params
        if official is not None:  # the DSM stand-ins have no official count
            assert count_params(variables) == official


@pytest.mark.parametrize("path", CONFIGS, ids=config_id)
def test_runlocal_is_a_laptop_run_that_validates_and_builds(path):
    config = get_config(path)
    if config.data.name in IN_MEMORY_SOURCES:
        pytest.skip("already a laptop run: its data is in memory")
    local = get_config(path, "runlocal")
    validate_config(local)
    assert local.data.name in IN_MEMORY_SOURCES
    assert local.data.image_size <= 64 and local.batch_size <= 32 and local.total_steps <= 10
    assert local.model.name == config.model.name
    variables = abstract_variables(local, num_classes(local), local.data.image_size)
    tx, _ = create_optimizer(local.optimizer, local.total_steps)  # the schedule fits the 4 steps
    jax.eval_shape(tx.init, variables["params"])
    if not is_tokenizer(local):
        build_classification_task(local, num_classes(local), local.data.image_size)


def metaformer_names():
    models = set(list_models())
    return [n for n in imagenet_names() if n in models and model_spec(n).paper in (POOLFORMER_PAPER, BASELINES_PAPER)]


@pytest.mark.parametrize("name", metaformer_names())
def test_imagenet_recipe_follows_the_official_scripts(name):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    v1 = name.startswith("poolformer_")
    official_batch, official_lr = (1024, 1e-3) if v1 else (4096, 4e-3)
    optimizer = "adamw"  # timm's --clip-grad None
    if name.startswith("caformer"):
        official_lr, optimizer = 8e-3, "timm_lamb"  # timm's Lamb, which clips to 1.0 itself
    assert config.batch_size == official_batch
    assert config.optimizer.lr == pytest.approx(official_lr)
    assert config.optimizer.name == optimizer and config.optimizer.grad_clip == 0.0
    assert config.optimizer.weight_decay == 0.05 and config.label_smoothing == 0.1
    # timm's pretrained configs: PoolFormer v1 S 0.9, M 0.95, every MetaFormer baseline 1.0.
    expected_crop = (0.9 if "_s" in name else 0.95) if v1 else 1.0
    assert config.data.crop_pct == expected_crop
    # The official train.py passes head dropout to ConvFormer / CAFormer (the MLP heads) only.
    if config.model.kwargs.head_dropout:
        assert model_spec(name).kwargs["use_mlp_head"]


# timm's schedule and Mixup / CutMix as each family's official script sets them. Columns: family (the
# config names' prefix), source, warm-up epochs, warm-up start (--warmup-lr), min_lr, cool-down epochs
# (timm train.py runs --cooldown-epochs after the cosine; DeiT-style main.py never does), mixup alpha,
# cutmix alpha. Every one mixes with prob 1.0, switch_prob 0.5, mode "batch" (timm's defaults).
TIMM_RECIPES = {
    "caformer": ("sail-sg/metaformer train.py", 20, 1e-6, 1e-5, 10, 0.8, 1.0),
    "convformer": ("sail-sg/metaformer train.py", 20, 1e-6, 1e-5, 10, 0.8, 1.0),
    "poolformerv2": ("sail-sg/metaformer train.py", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "identityformer": ("sail-sg/metaformer train.py", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "randformer": ("sail-sg/metaformer train.py", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "poolformer": ("sail-sg/poolformer train.py", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "davit": ("dingmyu/davit train.py", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "ffnet_1": ("ysj9909/FFNet train.py @ aed6a70; README mixup 0.2", 5, 1e-6, 1e-5, 20, 0.2, 1.0),
    "ffnet_2": ("ysj9909/FFNet train.py @ aed6a70; README mixup 0.2", 5, 1e-6, 1e-5, 20, 0.2, 1.0),
    "ffnet_3": ("ysj9909/FFNet train.py @ aed6a70", 5, 1e-6, 1e-5, 20, 0.8, 1.0),
    "ffnet_4": ("ysj9909/FFNet train.py @ aed6a70", 5, 1e-6, 1e-5, 20, 0.8, 1.0),
    "iformer_s": ("sail-sg/iFormer checkpoint/iformer_small/args.yaml", 5, 1e-6, 1e-6, 10, 0.8, 1.0),
    "iformer_b": ("sail-sg/iFormer checkpoint/iformer_base/args.yaml", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "iformer_l": ("sail-sg/iFormer checkpoint/iformer_large/args.yaml", 5, 1e-6, 1e-5, 10, 0.8, 1.0),
    "dsm": ("okojoalg/dfformer README command, train.py", 20, 1e-6, 1e-5, 10, 0.8, 1.0),
    "gfnet": ("raoyongming/GFNet main_gfnet.py", 5, 1e-6, 1e-5, 0, 0.8, 1.0),
    "lsnet": ("jameslahm/lsnet main.py", 5, 1e-6, 1e-5, 0, 0.8, 1.0),
    "transnext": ("DaiShiResearch/TransNeXt classification/main.py", 5, 1e-6, 1e-5, 0, 0.8, 1.0),
    # No official image recipe (goombalab/hydra has only GLUE): DeiT's, mixtok's choice (hydra_vit_b.py).
    "hydra_vit": ("facebookresearch/deit main.py", 5, 1e-6, 1e-5, 0, 0.8, 1.0),
    "deit": ("facebookresearch/deit main.py", 5, 1e-6, 1e-5, 0, 0.8, 1.0),
}
# Families whose scripts run DeiT's main.py loop (`lr_scheduler.step(epoch)` after each epoch: epoch e trains at
# timm's rate of epoch e - 1; facebookresearch/deit main.py, raoyongming/GFNet main_gfnet.py, jameslahm/lsnet
# main.py, DaiShiResearch/TransNeXt classification/main.py), which their configs model with epoch_lag=1.
DEIT_LOOP_FAMILIES = ("gfnet", "lsnet", "transnext", "hydra_vit", "deit")
# timm's --clip-mode where it is not "norm" (global norm), with its --clip-grad: jameslahm/lsnet main.py's defaults.
CLIP_MODES = {"lsnet": ("agc", 0.02)}
# Families whose official scripts do not use timm's scheduler: CAS-ViT (ConvNeXt-style per-step cosine
# from 0, and main.py's --mixup 0 --cutmix 0 defaults) keeps the warm-up-then-cosine schedule, AFFNet
# (apple/ml-cvnets mobilevit.yaml, no Mixup / CutMix) ml-cvnets' cosine; both train without mixing.
# MLP-Mixer (google-research/big_vision mlp_mixer_i1k.py: Adam, 10k-step warm-up, linear decay, mixup only) keeps
# warmup_cosine, the closest schedule mixtok has (experiments/configs/imagenet/mixer_b16_224.py).
# MS-MLP (JegZheng/MS-MLP lr_scheduler.py, Swin's: timm's cosine per update, t_in_epochs=False) is checked in
# tests/models/test_ms_mlp.py.
# RaftMLP (okojoalg/raft-mlp libs/train.py: ignite, per-iteration warm-up then cosine): tests/models/test_raft_mlp.py.
# WaveMix (pranavphoenix/WaveMix Image_Classification/*.py: AdamW at a constant rate, no
# scheduler, no mixing) keeps warmup_cosine with min_lr = lr (experiments/configs/imagenet/wavemix_192_16.py).
# ViM2 (the MambaMixer paper: Swin's pipeline, the same per-update cosine) in
# tests/models/test_mamba_mixer.py. Strip-MLP (Med-Process/Strip_MLP lr_scheduler.py, the same) in
# tests/models/test_strip_mlp.py.
OWN_SCHEDULE_FAMILIES = ("cas_vit", "affnet", "mixer", "ms_mlp", "raftmlp", "wavemix", "vim2", "strip_mlp")


def recipe_family(name: str) -> str | None:
    """The TIMM_RECIPES key of config `name`: the longest prefix followed by "_" or the end of the name."""
    keys = [k for k in TIMM_RECIPES if name == k or name.startswith(k + "_")]
    return max(keys, key=len) if keys else None


def classification_names():
    return [n for n in imagenet_names() if not is_tokenizer(get_config(CONFIG_DIR / "imagenet" / f"{n}.py"))]


def test_every_classification_config_has_a_timm_recipe_row_or_keeps_its_own_schedule():
    for name in classification_names():
        own = name.startswith(OWN_SCHEDULE_FAMILIES)
        assert (recipe_family(name) is None) == own, name


@pytest.mark.parametrize("name", [n for n in imagenet_names() if recipe_family(n)])
def test_imagenet_schedule_and_mixup_follow_the_official_scripts(name):
    _, warmup, warmup_lr_init, min_lr, cooldown, mixup_alpha, cutmix_alpha = TIMM_RECIPES[recipe_family(name)]
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    optimizer, batch = config.optimizer, config.batch_size
    per_epoch = IMAGENET_TRAIN_IMAGES // batch  # timm's updates per epoch: the loader drops the last partial batch
    assert optimizer.schedule == "timm_cosine" and optimizer.schedule_on == "epoch" and "warmup_steps" not in optimizer
    assert optimizer.steps_per_epoch == per_epoch and optimizer.epochs == 300
    assert (optimizer.warmup_epochs, optimizer.cooldown_epochs) == (warmup, cooldown)
    assert (optimizer.warmup_lr_init, optimizer.min_lr) == (warmup_lr_init, min_lr)
    assert config.total_steps == (300 + cooldown) * IMAGENET_TRAIN_IMAGES // batch
    assert config.mixup.to_dict() == dict(
        mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, prob=1.0, switch_prob=0.5, mode="batch"
    )
    family = recipe_family(name)
    lag = 1 if family.startswith(DEIT_LOOP_FAMILIES) else 0
    assert optimizer.get("epoch_lag", 0) == lag
    mode, clip = CLIP_MODES.get(family, ("norm", None))
    assert optimizer.get("clip_mode", "norm") == mode and (clip is None or optimizer.grad_clip == clip)
    # The rates timm's scheduler gives (lag epochs later under DeiT's loop): warm-up start, peak after the warm-up,
    # min_lr from epoch 300 on (timm's train.py) or the rate of epoch 299 in the last epoch (DeiT's loop).
    _, schedule = create_optimizer(optimizer, config.total_steps)
    lr = optimizer.lr
    assert float(schedule((1 + lag) * per_epoch - 1)) == pytest.approx(warmup_lr_init)
    first_step = warmup_lr_init + (lr - warmup_lr_init) / warmup
    assert float(schedule((1 + lag) * per_epoch)) == pytest.approx(first_step, rel=1e-5)
    cosine = min_lr + (lr - min_lr) * (1 + math.cos(math.pi * warmup / 300)) / 2
    assert float(schedule((warmup + lag) * per_epoch)) == pytest.approx(cosine, rel=1e-5)
    last = min_lr + (lr - min_lr) * (1 + math.cos(math.pi * 299 / 300)) / 2 if lag else min_lr
    assert float(schedule(300 * per_epoch)) == pytest.approx(last, rel=1e-5)
    assert float(schedule(config.total_steps - 1)) == pytest.approx(last, rel=1e-5)


@pytest.mark.parametrize("name, schedule", [("cas_vit_t", "warmup_cosine"), ("affnet_t", "cvnets_cosine")])
def test_families_without_timms_scheduler_keep_their_schedule_and_do_not_mix(name, schedule):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    assert config.optimizer.get("schedule", "warmup_cosine") == schedule and config.optimizer.warmup_steps > 0
    assert config.get("mixup") is None
    if name.startswith("affnet"):  # the multi-scale sampler's expected steps, at its mean batch (test_affnet_...)
        assert config.total_steps == int(300 * IMAGENET_TRAIN_IMAGES / (6912 / 5))
    else:  # CAS-ViT's sampler and --update_freq 2: updates of two micro-batches of 1,248 images on average
        per_epoch = int(IMAGENET_TRAIN_IMAGES / (2 * 8 * (248 + 176 + 4 * 128) / 6))
        assert per_epoch == 513 and config.total_steps == 300 * per_epoch
        assert config.optimizer.warmup_steps == 20 * per_epoch and config.grad_accum_steps == 2
        assert config.data.multi_scale.rule == "cas_vit" and config.batch_size == 1024


# The training augmentations each official script runs (its argparse defaults or, for DFFormer, its README
# command): train interpolation, RandAugment, random-erasing probability; every one erases per pixel with one
# box and evaluates with a bicubic resize (timm _cfg interpolation or DeiT-style Resize(interpolation=3)).
RAND_M9 = "rand-m9-mstd0.5-inc1"
AUGMENTATIONS = {
    "caformer": ("sail-sg/metaformer train.py", "random", RAND_M9, 0.25),
    "convformer": ("sail-sg/metaformer train.py", "random", RAND_M9, 0.25),
    "poolformerv2": ("sail-sg/metaformer train.py", "random", RAND_M9, 0.25),
    "identityformer": ("sail-sg/metaformer train.py", "random", RAND_M9, 0.25),
    "randformer": ("sail-sg/metaformer train.py", "random", RAND_M9, 0.25),
    "poolformer": ("sail-sg/poolformer train.py", "random", RAND_M9, 0.25),
    "davit": ("dingmyu/davit train.py", "bicubic", RAND_M9, 0.25),
    "ffnet": ("ysj9909/FFNet train.py @ aed6a70", "bicubic", RAND_M9, 0.25),
    "iformer": ("sail-sg/iFormer checkpoint/iformer_*/args.yaml", "random", RAND_M9, 0.25),
    "dsm": ("okojoalg/dfformer README command (--aa, --reprob 0.25), train.py", "random", RAND_M9, 0.25),
    "gfnet": ("raoyongming/GFNet main_gfnet.py (--reprob 0)", "bicubic", RAND_M9, 0.0),
    "lsnet": ("jameslahm/lsnet main.py", "bicubic", RAND_M9, 0.25),
    "transnext": ("DaiShiResearch/TransNeXt classification/main.py", "bicubic", RAND_M9, 0.25),
    "hydra_vit": ("facebookresearch/deit main.py (mixtok's choice: hydra_vit_b.py)", "bicubic", RAND_M9, 0.25),
    "deit": ("facebookresearch/deit main.py", "bicubic", RAND_M9, 0.25),
    "cas_vit": ("Tianfang-Zhang/CAS-ViT classification/main.py (--reprob 0.0)", "bicubic", RAND_M9, 0.0),
    "mixer": ("google-research/big_vision mlp_mixer_i1k.py randaug(2, 15)", "bilinear", "rand-m15-n2-mmax15", 0.0),
    "ms_mlp": ("JegZheng/MS-MLP config.py AUG, data/build.py (Swin's)", "bicubic", RAND_M9, 0.25),
    "raftmlp": ("okojoalg/raft-mlp libs/datasets.py ImageNetGetter (nearest: raftmlp_s.py)", "bilinear", RAND_M9, 0.25),
    # No ImageNet script: the other datasets' TrivialAugmentWide as one-op, uniform-magnitude RandAugment.
    "wavemix": (
        "pranavphoenix/WaveMix Image_Classification/*.py, timm.py _cfg",
        "bicubic",
        "rand-n1-m10-mstd101-inc1",
        0.0,
    ),
    "vim2": ("MambaMixer paper: Swin's pipeline (no code); Swin's config.py AUG", "bicubic", RAND_M9, 0.25),
    "strip_mlp": ("Med-Process/Strip_MLP config.py AUG, data/build.py (Swin's)", "bicubic", RAND_M9, 0.25),
}
# apple/ml-cvnets mobilevit.yaml: random resized crop and flip only.
NO_AUGMENTATION_FAMILIES = ("affnet",)
AUGMENTATION_FIELDS = ("train_interpolation", "auto_augment", "reprob", "remode", "recount", "eval_interpolation")


def augmentation_family(name: str) -> str | None:
    keys = [k for k in AUGMENTATIONS if name == k or name.startswith(k + "_")]
    return max(keys, key=len) if keys else None


def test_every_classification_config_has_an_augmentation_row_or_trains_without():
    for name in classification_names():
        assert (augmentation_family(name) is None) == name.startswith(NO_AUGMENTATION_FAMILIES), name
    assert all(augmentation_family(key) for key in TIMM_RECIPES)  # every timm-recipe family states its augmentations


@pytest.mark.parametrize("name", classification_names())
@pytest.mark.parametrize("arg", [None, "runlocal"])
def test_imagenet_data_block_has_the_official_augmentations(name, arg):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py", arg)
    family = augmentation_family(name)
    if family is None:  # AFFNet: mixtok's own crop, no RandAugment, no erasing, mixtok's eval resize
        expected = dict(train_interpolation=None, auto_augment=None, reprob=0.0, eval_interpolation=None)
    else:
        _, interpolation, auto_augment, reprob = AUGMENTATIONS[family]
        expected = dict(
            train_interpolation=interpolation, auto_augment=auto_augment, reprob=reprob, eval_interpolation="bicubic"
        )
    expected.update(remode="pixel", recount=1)
    data = config.data.to_dict()
    assert {k: data[k] for k in AUGMENTATION_FIELDS} == expected
    # mixtok's reader accepts them as they are (no typo passes silently into a run).
    options = data_lib.data_options(config.data)
    assert {k: getattr(options, k) for k in AUGMENTATION_FIELDS} == expected


# Model EMA of the official scripts (family: (decay, first_update_copies, buffers, source)); every other
# classification config has none. timm's ModelEma (FFNet, CAS-ViT, LSNet) and cvnets' EMA (AFFNet) both
# average the parameters and the BatchNorm statistics from the first update, with no copy at step 1.
MODEL_EMA = {
    # timm's ModelEma (and ModelEmaV2): a copy of the initial model, then every state_dict entry (BatchNorm
    # statistics included) averaged with the constant decay from the first update.
    "ffnet_": (0.9995, False, True, "ysj9909/FFNet train.py --model-ema-decay, timm ModelEma"),
    "cas_vit_": (0.9995, False, True, "CAS-ViT classification/main.py --model-ema-decay, timm ModelEma"),
    "lsnet_": (0.99996, False, True, "LSNet main.py (DeiT's) --model-ema-decay, timm ModelEma"),
    "hydra_vit_": (0.99996, False, True, "facebookresearch/deit main.py --model-ema-decay, timm ModelEma"),
    "deit_": (0.99996, False, True, "facebookresearch/deit main.py --model-ema-decay, timm ModelEma"),
    "affnet": (
        1 - 0.0005,
        False,
        True,
        "apple/ml-cvnets config/classification/imagenet/mobilevit.yaml ema.momentum; cvnets/misc/averaging_utils.py",
    ),
}


@pytest.mark.parametrize("name", classification_names())
def test_imagenet_model_ema_follows_the_official_scripts(name):
    from mixtok.train.ema import model_ema_from_config

    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    family = next((key for key in MODEL_EMA if name.startswith(key)), None)
    if family is None:
        assert "model_ema" not in config, name
        return
    decay, first_update_copies, buffers, _ = MODEL_EMA[family]
    ema = model_ema_from_config(config)
    assert (ema.decay, ema.warmup, ema.eval) == (decay, False, True)
    assert (ema.first_update_copies, ema.buffers) == (first_update_copies, buffers)


# DeiT's repeated augmentation (3 copies), on by default in these scripts: jameslahm/lsnet main.py and
# DaiShiResearch/TransNeXt classification/main.py (`parser.set_defaults(repeated_aug=True)`); raoyongming/GFNet
# main_gfnet.py sets it off and the other families' scripts have none.
REPEATED_AUG = {"lsnet_": 3, "transnext_": 3, "hydra_vit_": 3, "deit_": 3}


@pytest.mark.parametrize("name", classification_names())
def test_imagenet_repeated_augmentation_follows_the_official_scripts(name):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    expected = next((count for key, count in REPEATED_AUG.items() if name.startswith(key)), 0)
    assert config.data.repeated_aug == expected, name
    assert data_lib.data_options(config.data).repeated_aug == expected


@pytest.mark.parametrize("name", ["affnet_t", "caformer_s18"])
def test_augmentation_fields_are_overridable_on_a_locked_config_even_when_off(name):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    config.lock()
    overrides = dict(
        train_interpolation="bilinear",
        auto_augment="rand-m7-n2",
        reprob=0.5,
        remode="const",
        recount=2,
        eval_interpolation="bilinear",
    )
    for key, value in overrides.items():
        config.data[key] = value  # what --config.data.<key>=<value> does; an unknown key would raise
    assert {k: config.data[k] for k in AUGMENTATION_FIELDS} == overrides
    options = data_lib.data_options(config.data)
    assert {k: getattr(options, k) for k in AUGMENTATION_FIELDS} == overrides


def test_runlocal_uses_timms_schedule_in_four_one_step_epochs():
    config = get_config(CONFIG_DIR / "imagenet" / "caformer_s18.py", "runlocal")
    optimizer = config.optimizer
    assert config.total_steps == 4 and optimizer.name == "timm_lamb" and config.mixup.mixup_alpha == 0.8
    assert optimizer.steps_per_epoch == 1 and optimizer.epochs == 4
    assert optimizer.warmup_epochs == 1 and optimizer.cooldown_epochs == 0
    _, schedule = create_optimizer(optimizer, config.total_steps)
    lr = optimizer.lr
    expected = [1e-6] + [1e-5 + (lr - 1e-5) * (1 + math.cos(math.pi * t / 4)) / 2 for t in (1, 2, 3)]
    assert [float(schedule(s)) for s in range(4)] == pytest.approx(expected, rel=1e-5)


def test_every_gfnet_and_affnet_variant_has_an_imagenet_config():
    names = set(imagenet_names())
    assert set(list_models("gfnet*")) <= names and set(list_models("affnet*")) <= names


def test_every_gfnet_variant_has_its_official_drop_path():
    assert set(GFNET_DROP_PATH) == set(list_models("gfnet*"))


@pytest.mark.parametrize("name", sorted(GFNET_DROP_PATH))
def test_gfnet_recipe_follows_main_gfnet(name):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    # README: --batch-size 128 on 8 GPUs; main_gfnet.py: lr 5e-4 * global batch / 512, clip-grad 1.
    assert config.batch_size == 1024 and config.optimizer.lr == pytest.approx(1e-3)
    assert config.optimizer.grad_clip == 1.0 and config.optimizer.weight_decay == 0.05
    assert config.model.kwargs.drop_path_rate == GFNET_DROP_PATH[name]
    assert config.data.crop_pct == 0.875 and config.label_smoothing == 0.1


@pytest.mark.parametrize("name", ["affnet_et", "affnet_t", "affnet"])
def test_affnet_recipe_is_cvnets_mobilevit_at_256_px(name):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    assert config.data.image_size == 256 and config.data.crop_pct == pytest.approx(256 / 288)
    assert config.batch_size == 1024 and config.optimizer.lr == pytest.approx(2e-3)
    assert config.optimizer.min_lr == pytest.approx(2e-4) and config.optimizer.weight_decay == 0.01
    assert config.optimizer.warmup_steps == 20_000  # iterations at batch 1024, as mobilevit.yaml states
    assert config.model.kwargs.head_dropout == 0.1
    # mobilevit.yaml: ml-cvnets' epoch-based cosine over max_epochs 300, warmup_init_lr 2e-4, and decay on
    # BatchNorm and bias weights too (no_decay_bn_filter_bias: false).
    optimizer = config.optimizer
    assert optimizer.schedule == "cvnets_cosine" and optimizer.warmup_lr_init == pytest.approx(2e-4)
    # mobilevit.yaml's multi-scale sampler (apple/ml-cvnets data/sampler/variable_batch_sampler.py): 160-320 px
    # in 5 scales divisible by 32 around 256, 8 GPUs; global batches 8 x (327, 227, 128, 101, 81) per GPU.
    assert config.data.multi_scale.to_dict() == dict(
        min_size=160, max_size=320, num_scales=5, check_scale=32, batch_multiple=8
    )
    batches = data_lib.multi_scale_batches(config.data, config.batch_size)
    assert batches == ((160, 2616), (192, 1816), (256, 1024), (288, 808), (320, 648))
    # An epoch: the train images over the mean global batch (1,382.4), 926 steps; 300 of them; eval each epoch.
    assert optimizer.epochs == 300 and optimizer.steps_per_epoch == 926 == IMAGENET_TRAIN_IMAGES * 5 // 6912
    assert config.total_steps == 300 * IMAGENET_TRAIN_IMAGES * 5 // 6912 == 278_031
    assert config.eval_every == config.checkpoint_every == 926
    assert optimizer.weight_decay_on == "all"
    _, schedule = create_optimizer(optimizer, config.total_steps)
    assert float(schedule(0)) == pytest.approx(2e-4) and float(schedule(10_000)) == pytest.approx(1.1e-3, rel=1e-5)
    epoch = 20_000 // optimizer.steps_per_epoch  # the cosine of the epoch the warm-up ends in
    cosine = 2e-4 + (2e-3 - 2e-4) * (1 + math.cos(math.pi * epoch / 300)) / 2
    assert float(schedule(20_000)) == pytest.approx(cosine, rel=1e-5)
    assert float(schedule(config.total_steps - 1)) == pytest.approx(2e-4, rel=1e-5)


ATTENTION_FAMILIES = ("davit", "cas_vit", "ffnet", "iformer", "lsnet", "transnext")


def test_every_attention_family_variant_has_an_imagenet_config():
    names = set(imagenet_names())
    for family in ATTENTION_FAMILIES:
        variants = set(list_models(f"{family}_*"))
        assert variants and variants <= names, family


@pytest.mark.parametrize(
    "name,batch,lr,drop_path",
    [
        ("davit_tiny", 1024, 1e-3, 0.1),
        ("cas_vit_m", 2048, 6e-3, 0.1),
        ("ffnet_3", 1024, 1e-3, 0.35),
        ("iformer_b", 1024, 1e-3, 0.4),
        ("transnext_small", 1024, 1e-3, 0.45),
    ],
)
def test_attention_family_recipes_follow_the_official_scripts(name, batch, lr, drop_path):
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    assert config.batch_size * config.get("grad_accum_steps", 1) == batch  # an update's images at the base size
    assert config.optimizer.lr == pytest.approx(lr)
    assert config.model.kwargs.drop_path_rate == drop_path and config.label_smoothing == 0.1


def test_lsnet_recipe_scales_the_learning_rate_by_batch_over_512_and_has_no_drop_path():
    config = get_config(CONFIG_DIR / "imagenet" / "lsnet_b.py")
    assert config.batch_size == 2048 and config.optimizer.lr == pytest.approx(1e-3 * 2048 / 512)
    assert config.optimizer.weight_decay == 0.05 and "drop_path_rate" not in config.model.kwargs


def test_dsm_config_says_it_is_a_stand_in():
    module = load_module(CONFIG_DIR / "imagenet" / "dsm_s18.py")
    assert "stand-in" in module.__doc__
    config = module.get_config()
    assert config.model.kwargs.drop_path_rate == 0.2 and config.optimizer.lr == pytest.approx(1e-3)


POOLFORMERV2 = CONFIG_DIR / "imagenet" / "poolformerv2_s12.py"


def test_batch_size_option_scales_the_learning_rate_linearly():
    official = get_config(POOLFORMERV2)
    half = get_config(POOLFORMERV2, "batch_size=2048")
    assert half.batch_size == 2048
    assert half.optimizer.lr == pytest.approx(official.optimizer.lr / 2)
    assert half.total_steps == (300 + 10) * IMAGENET_TRAIN_IMAGES // 2048  # with timm's 10 cool-down epochs
    assert half.optimizer.steps_per_epoch == IMAGENET_TRAIN_IMAGES // 2048


def test_epochs_option_sets_the_cosine_and_keeps_the_warm_up_and_cool_down():
    config = get_config(POOLFORMERV2, "epochs=100")
    assert config.optimizer.epochs == 100
    assert config.total_steps == (100 + 10) * IMAGENET_TRAIN_IMAGES // 4096
    assert (config.optimizer.warmup_epochs, config.optimizer.cooldown_epochs) == (5, 10)
    with pytest.raises(ValueError, match="warm-up"):
        get_config(POOLFORMERV2, "epochs=5")


def test_data_root_source_and_bf16_options():
    config = get_config(POOLFORMERV2, "data_root=/data/in1k,source=array_record,bf16")
    assert config.data.name == "array_record" and config.data.root == "/data/in1k"
    assert config.model.dtype == "bfloat16"
    assert get_config(POOLFORMERV2, "data_root=/data/in1k").data.name == "imagefolder"


def test_an_unknown_option_names_the_close_match():
    with pytest.raises(ValueError, match="data_root"):
        get_config(POOLFORMERV2, "data_rot=/data/in1k")


def test_an_unknown_source_lists_the_valid_ones():
    with pytest.raises(ValueError, match="array_record"):
        get_config(POOLFORMERV2, "source=arrayrecord")


def test_a_missing_data_root_stops_training_at_start_up_with_a_clear_message(tmp_path):
    config = get_config(POOLFORMERV2)  # loading the config without data_root is fine
    with pytest.raises(FileNotFoundError, match="data_root=/path/to/imagenet"):
        train_and_evaluate(config, tmp_path)


def test_runlocal_trains_an_imagenet_config_end_to_end(tmp_path):
    config = get_config(SMOKE_CONFIG, "runlocal")
    # The run goes through timm's training augmentations and bicubic evaluation, as the full config does.
    assert config.data.auto_augment == RAND_M9 and config.data.reprob == 0.25
    assert config.data.train_interpolation == "random" and config.data.eval_interpolation == "bicubic"
    config.progress_bar = False
    metrics = train_and_evaluate(config, tmp_path)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["eval/loss"])
    assert 0.0 <= metrics["eval/accuracy"] <= 1.0
    assert (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "checkpoints" / str(config.total_steps)).exists()


def test_recipe_quickstart_learns_the_digits_with_the_whole_timm_recipe_on(tmp_path):
    config = get_config(CONFIG_DIR / "quickstart_recipe.py", "epochs=5")
    # Every piece of the ImageNet recipe is on: RandAugment, erasing, random interpolation, Mixup / CutMix,
    # timm's per-epoch cosine, the weight EMA.
    assert config.data.auto_augment == RAND_M9 and config.data.reprob == 0.25
    assert config.data.train_interpolation == "random"
    assert config.mixup.mixup_alpha == 0.8 and config.mixup.cutmix_alpha == 1.0
    assert config.optimizer.schedule == "timm_cosine" and config.optimizer.steps_per_epoch == 23
    assert config.model_ema.decay == 0.998
    config.progress_bar = False
    metrics = train_and_evaluate(config, tmp_path)
    # Measured on the 2-core development CPU: 0.8333 and 0.8267 after these 115 steps (chance: 0.1).
    assert metrics["eval/accuracy"] >= 0.7 and metrics["eval_ema/accuracy"] >= 0.7, metrics


def test_spectral_quickstart_trains_end_to_end(tmp_path):
    config = get_config(CONFIG_DIR / "quickstart_spectral.py", "steps=4")
    config.eval_every = config.checkpoint_every = 4
    metrics = train_and_evaluate(config, tmp_path)
    assert math.isfinite(metrics["train/loss"]) and 0.0 <= metrics["eval/accuracy"] <= 1.0


def test_attention_quickstart_has_a_measured_result_for_every_family_and_rejects_unknown_ones():
    module = load_module(CONFIG_DIR / "quickstart_attention.py")
    assert set(module.MEASURED) == set(module.FAMILIES)
    assert all(accuracy >= 0.95 for accuracy, _ in module.MEASURED.values())
    with pytest.raises(ValueError, match="Did you mean 'davit'"):
        module.get_config("family=davitt")


def test_mlp_quickstart_has_a_measured_result_for_every_family_and_rejects_unknown_ones():
    # Each family's run is measured in MEASURED (300 steps); the quickstart configs themselves validate and
    # build in test_the_default_config_validates_and_builds_its_model_and_optimizer, and each family's
    # model trains under jit with gradients in its own tests (2 steps of all three here cost over a minute).
    module = load_module(CONFIG_DIR / "quickstart_mlp.py")
    assert (
        set(module.MEASURED)
        == set(module.FAMILIES)
        == {"mixer", "hydra", "ms_mlp", "raft_mlp", "wavemix", "mamba_mixer", "ponet", "strip_mlp"}
    )
    assert all(accuracy >= 0.95 for accuracy, _ in module.MEASURED.values())
    with pytest.raises(ValueError, match="Did you mean 'mixer'"):
        module.get_config("family=mixr")
    for family in module.FAMILIES:
        config = module.get_config(f"family={family}")
        validate_config(config)
        abstract_variables(config, num_classes(config), config.data.image_size)


@pytest.mark.parametrize("name", classification_names())
def test_only_transnext_exempts_parameters_from_weight_decay_by_name(name):
    # DaiShiResearch/TransNeXt classification/transnext.py no_weight_decay_keywords, applied by its optimizer.py.
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    expected = ("query_embedding", "relative_pos_bias_local", "cpb", "temperature") if "transnext" in name else ()
    assert tuple(config.optimizer.get("no_weight_decay_keywords", ())) == expected


@pytest.mark.parametrize("name", [n for n in classification_names() if n.startswith(("caformer", "convformer"))])
def test_metaformer_baselines_configs_drop_out_inside_the_mlp_head_only_as_the_official_model(name):
    # sail-sg/metaformer metaformer_baselines.py: MetaFormer.forward goes from the final norm to MlpHead, whose
    # only dropout is before fc2 (timm's MetaFormer adds head.drop before it).
    config = get_config(CONFIG_DIR / "imagenet" / f"{name}.py")
    assert config.model.kwargs.head_dropout_before_mlp is False
    model = create_model(config.model.name, **config.model.kwargs)
    assert model.head_dropout_before_mlp is False
