"""Mixup and CutMix on the device equal timm's `Mixup` on fixed draws; the draws have timm's distributions.

The fixtures (tests/fixtures/timm_mixup, written by tools/make_timm_mixup_fixtures.py) hold timm's mixed
images and soft targets for fixed lambdas and boxes, and timm's `rand_bbox` / `rand_bbox_minmax` on given
centres and sides (huggingface/pytorch-image-models: timm/data/mixup.py).
"""

import json
import os
import pathlib
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mixtok.data import DatasetInfo
from mixtok.train import train_and_evaluate, validate_config
from mixtok.train.metric_writer import read_metrics
from mixtok.train.mixup import (
    MixChoices,
    Mixup,
    bbox_around,
    box_lam,
    rand_bbox,
    rand_bbox_minmax,
)
from mixtok.train.tasks.classification import MIXUP_RNG_STREAM, ClassificationTask
from tests.train.test_trainer import tiny_config

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures" / "timm_mixup"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
CASES = sorted(MANIFEST["cases"])


@pytest.fixture(scope="module")
def timm():
    with np.load(FIXTURES / "mixup.npz") as f:
        return dict(f)


def _choices(timm, case) -> MixChoices:
    return MixChoices(*(jnp.asarray(timm[f"{case}/{key}"]) for key in ("lam", "use_cutmix", "box")))


@pytest.mark.parametrize("case", CASES)
def test_apply_on_timms_draws_gives_timms_images_and_targets(timm, case):
    mixup = Mixup(num_classes=MANIFEST["num_classes"], label_smoothing=MANIFEST["label_smoothing"], **_args(case))
    images, targets = jax.jit(mixup.apply)(timm["images"], timm["labels"], _choices(timm, case))
    np.testing.assert_allclose(images, timm[f"{case}/images"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(targets, timm[f"{case}/targets"], rtol=0, atol=1e-6)


def _args(case) -> dict:
    args = dict(MANIFEST["cases"][case]["args"])
    if args.get("cutmix_minmax") is not None:
        args["cutmix_minmax"] = tuple(args["cutmix_minmax"])
    return args


def test_the_fixtures_mix_something_in_every_case_that_applies(timm):
    # Guards the parity test against degenerate fixtures: each mixing case moves pixels and targets.
    for case in CASES:
        moved = np.abs(timm[f"{case}/images"] - timm["images"]).max()
        assert (moved > 0.1) == (case != "batch_not_applied"), case
        assert np.allclose(timm[f"{case}/targets"].sum(-1), 1.0), case


def test_box_around_a_centre_is_timms_rand_bbox_and_its_lam_timms_correction(timm):
    for (height, width, lam, cy, cx), box, corrected in zip(
        timm["bbox/cases"], timm["bbox/box"], timm["bbox/corrected_lam"]
    ):
        size = (int(height), int(width))
        ours = bbox_around(size, jnp.float32(lam), jnp.int32(cy), jnp.int32(cx))
        np.testing.assert_array_equal(ours, box, err_msg=f"{size} lam={lam} centre=({cy}, {cx})")
        np.testing.assert_allclose(box_lam(size, ours), corrected, rtol=0, atol=1e-7)


def test_minmax_boxes_are_drawn_from_timms_ranges_and_placed_as_timm_places_them(timm):
    for (height, width, low, high, cut_h, cut_w, y_low, x_low), box, ranges in zip(
        timm["minmax/cases"], timm["minmax/box"], timm["minmax/side_ranges"]
    ):
        np.testing.assert_array_equal(box, [y_low, y_low + cut_h, x_low, x_low + cut_w])
        size = (int(height), int(width))
        boxes = np.asarray(rand_bbox_minmax(jax.random.PRNGKey(0), size, (low, high), 4000))
        sides = np.stack([boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]])
        for side, (lo, hi) in zip(sides, ranges):
            assert set(side.tolist()) == set(range(lo, hi)), (size, lo, hi)  # every side in timm's range, no other
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] <= height).all()
        assert (boxes[:, 2] >= 0).all() and (boxes[:, 3] <= width).all()
        # The corner is uniform over every position that keeps the box inside, both ends included.
        shortest = sides[0] == ranges[0][0]
        assert set(boxes[shortest, 0].tolist()) == set(range(int(height) - ranges[0][0] + 1))


def test_rand_bbox_centres_cover_the_image_uniformly():
    boxes = np.asarray(rand_bbox(jax.random.PRNGKey(1), (12, 20), jnp.full((6000,), 0.75)))
    # lam 0.75: sides floor(12 * 0.5) = 6 and 10; the centre is y_high - 3 = y_low + 3 unless clipped.
    centre_y = np.where(boxes[:, 0] > 0, boxes[:, 0] + 3, boxes[:, 1] - 3)
    counts = np.bincount(centre_y, minlength=12)
    assert len(counts) == 12 and counts.min() > 6000 / 12 * 0.75


def _draws(mixup, batch_size, count, image_size=(16, 16)):
    keys = jax.random.split(jax.random.PRNGKey(7), count)
    return jax.device_get(jax.jit(jax.vmap(lambda k: mixup.draw(k, batch_size, image_size)))(keys))


def test_draws_mix_with_probability_prob_and_cutmix_with_probability_switch_prob():
    for mode, batch_size, count in (("batch", 2, 4000), ("elem", 40, 100)):
        mixup = Mixup(10, mixup_alpha=0.8, cutmix_alpha=1.0, prob=0.7, switch_prob=0.3, mode=mode)
        draws = _draws(mixup, batch_size, count)
        mixed = draws.use_cutmix | (draws.lam < 1)
        assert abs(mixed.mean() - 0.7) < 0.03, mode
        assert abs(draws.use_cutmix[mixed].mean() - 0.3) < 0.03, mode
        assert (draws.lam[~mixed] == 1).all() and (draws.box[~draws.use_cutmix] == 0).all()
        # A cutmix lam is its box's (correct_lam); a mixup lam is Beta(0.8, 0.8): mean 1/2, variance 1/10.4.
        np.testing.assert_allclose(draws.lam[draws.use_cutmix], box_lam((16, 16), draws.box[draws.use_cutmix]))
        blended = draws.lam[mixed & ~draws.use_cutmix]
        assert abs(blended.mean() - 0.5) < 0.02 and abs(blended.var() - 1 / 10.4) < 0.01, mode


def test_without_correct_lam_a_cutmix_lam_is_the_beta_draw_not_the_box_area():
    draws = _draws(Mixup(10, mixup_alpha=0.0, cutmix_alpha=1.0, correct_lam=False, mode="elem"), 40, 50)
    assert draws.use_cutmix.all()
    assert abs(draws.lam.mean() - 0.5) < 0.02 and abs(draws.lam.var() - 1 / 12) < 0.01  # Beta(1, 1)
    assert (box_lam((16, 16), draws.box) != draws.lam).mean() > 0.5  # the floors and clips shrink the box
    # The side is floor(16 sqrt(1 - lam)) before clipping: never more than that.
    sides = draws.box[..., 1] - draws.box[..., 0]
    assert (sides <= np.floor(np.float32(16) * np.sqrt(np.float32(1) - draws.lam))).all()


def test_pair_mode_gives_both_images_of_a_pair_the_same_draw():
    draws = _draws(Mixup(10, mixup_alpha=1.0, cutmix_alpha=1.0, mode="pair", prob=0.8), 8, 200)
    for field in draws:
        np.testing.assert_array_equal(field, np.flip(field, 1))
    assert len({tuple(lam) for lam in draws.lam[:, :4]}) > 190  # four independent draws a batch


def test_a_draw_is_fixed_by_its_key():
    mixup = Mixup(10, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")
    first, again = (jax.jit(mixup.draw, static_argnums=(1, 2))(jax.random.PRNGKey(3), 8, (16, 16)) for _ in range(2))
    other = mixup.draw(jax.random.PRNGKey(4), 8, (16, 16))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.lam, other.lam)


def test_bad_options_and_odd_batches_are_one_line_errors_naming_the_value():
    with pytest.raises(ValueError, match=r"^Mixup.mode must be one of 'batch', 'pair', 'elem'; got 'bach'.$"):
        Mixup(10, mode="bach")
    with pytest.raises(ValueError, match=r"^Mixup.cutmix_alpha must be a number >= 0 .*; got -1.0.$"):
        Mixup(10, cutmix_alpha=-1.0)
    with pytest.raises(ValueError, match=r"^Mixup mixes nothing"):
        Mixup(10, mixup_alpha=0.0)
    with pytest.raises(ValueError, match=r"^Mixup and CutMix need an even batch size .*; got 5.$"):
        Mixup(10).draw(jax.random.PRNGKey(0), 5, (8, 8))
    with pytest.raises(ValueError, match=r"even batch size .*; got 3.$"):
        Mixup(10)(jax.random.PRNGKey(0), jnp.zeros((3, 8, 8, 3)), jnp.zeros((3,), jnp.int32))

    def config_error(**mixup):
        with pytest.raises(ValueError) as error:
            validate_config(tiny_config(mixup=mixup))
        assert "\n" not in str(error.value)
        return str(error.value)

    assert config_error(mixup_alpha=0.8, mode="bach") == (
        "config.mixup.mode must be one of 'batch', 'pair', 'elem'; got 'bach'."
    )
    assert config_error(mixup_alpha=-0.2).startswith("config.mixup.mixup_alpha must be a number >= 0")
    assert config_error(cutmix_minmax=(0.8, 0.2)).endswith("got (0.8, 0.2).")
    assert "switch_prob" in config_error(mixup_alpha=1.0, switch_prob=1.5)
    assert "Did you mean 'mixup_alpha'" in config_error(mixup_alfa=0.8)
    with pytest.raises(ValueError, match=r"^config.mixup needs an even config.batch_size .*; got 15.$"):
        validate_config(tiny_config(batch_size=15, mixup=dict(mixup_alpha=0.8)))
    validate_config(tiny_config(batch_size=15, mixup=dict(mixup_alpha=0.0)))  # off: any batch size


class FlatClassifier(nn.Module):
    """Logits from every pixel, so that where a cutmix box lies changes the loss."""

    num_classes: int

    @nn.compact
    def __call__(self, images, train: bool = False):
        return nn.Dense(self.num_classes, name="head")(images.reshape(images.shape[0], -1))


def _mix_by_hand(images, choices):
    """Each image blended with, or given a box of, its mirror: a per-image loop with slices, as timm's."""
    images, out = np.asarray(images), np.asarray(images).copy()
    lam, use_cutmix, box = (np.broadcast_to(a, (len(images), *a.shape[1:])) for a in jax.device_get(choices))
    for i in range(len(images)):
        j = len(images) - 1 - i
        if use_cutmix[i]:
            y_low, y_high, x_low, x_high = box[i]
            out[i, y_low:y_high, x_low:x_high] = images[j, y_low:y_high, x_low:x_high]
        else:
            out[i] = images[i] * lam[i] + images[j] * (1 - lam[i])
    return out


def _task_and_batch(mixup=None, label_smoothing=0.1, batch_size=8, num_classes=5):
    rng = np.random.default_rng(1)
    batch = {
        "image": jnp.asarray(rng.normal(size=(batch_size, 8, 8, 3)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, num_classes, size=batch_size), jnp.int32),
    }
    task = ClassificationTask(FlatClassifier(num_classes), num_classes, label_smoothing, mixup)
    params = task.init(jax.random.PRNGKey(0), batch)["params"]
    return task, params, batch


@pytest.mark.parametrize("mode", ["batch", "elem"])
def test_the_training_loss_with_mixup_is_the_loss_of_the_mixed_batch_on_its_soft_targets(mode):
    mixup = Mixup(5, mixup_alpha=0.8, cutmix_alpha=1.0, mode=mode, label_smoothing=0.1)
    task, params, batch = _task_and_batch(mixup)
    kinds = set()
    for seed in range(4):
        rng = jax.random.PRNGKey(seed)
        loss, (metrics, _) = jax.jit(task.train_loss)(params, {}, batch, rng, 0)
        choices = mixup.draw(jax.random.fold_in(rng, MIXUP_RNG_STREAM), 8, (8, 8))
        kinds.update(np.asarray(choices.use_cutmix).tolist())
        mixed = _mix_by_hand(batch["image"], choices)
        logits = np.asarray(task.model.apply({"params": params}, mixed), np.float64)
        lam = np.broadcast_to(np.asarray(choices.lam, np.float64), (8,))[:, None]
        smooth = np.full((8, 5), 0.1 / 5) + 0.9 * np.eye(5)[np.asarray(batch["label"])]
        targets = lam * smooth + (1 - lam) * smooth[::-1]
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        np.testing.assert_allclose(loss, -(targets * log_probs).sum(-1).mean(), rtol=2e-5)
        # The accuracy metric: predictions on the mixed images against the unmixed labels.
        assert metrics["accuracy"] == np.mean(np.argmax(logits, -1) == np.asarray(batch["label"]))
    assert kinds == {True, False}  # the seeds cover both cutmix and mixup


def test_the_mixed_loss_is_the_same_when_the_batch_is_sharded_over_devices():
    # In the trainer the batch is global and sharded: each image meets its mirror on another device.
    mixup = Mixup(5, mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem", label_smoothing=0.1)
    task, params, batch = _task_and_batch(mixup, batch_size=16)
    mesh = Mesh(np.asarray(jax.devices()[:8]), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    rng = jax.random.PRNGKey(5)
    single, _ = jax.jit(task.train_loss)(params, {}, batch, rng, 0)
    spread, _ = jax.jit(task.train_loss)(params, {}, sharded, rng, 0)
    np.testing.assert_allclose(spread, single, rtol=1e-6)


def test_without_mixup_the_training_loss_is_exactly_the_smoothed_cross_entropy_of_before():
    task, params, batch = _task_and_batch()
    info = DatasetInfo(num_classes=5, num_train=8, num_eval=8, image_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    for block in (None, dict(mixup_alpha=0.0, cutmix_alpha=0.0, prob=0.5)):
        config = tiny_config() if block is None else tiny_config(mixup=block)
        assert ClassificationTask.from_config(config, info).mixup is None, block
    rng = jax.random.PRNGKey(2)

    def old_loss(params, batch, rng):  # the loss as it was before config.mixup existed
        dropout_rng, drop_path_rng = jax.random.split(rng)
        logits = task.model.apply(
            {"params": params}, batch["image"], train=True, rngs={"dropout": dropout_rng, "drop_path": drop_path_rng}
        )
        targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], 5), 0.1)
        return jnp.mean(optax.softmax_cross_entropy(logits.astype(jnp.float32), targets))

    loss, _ = jax.jit(task.train_loss)(params, {}, batch, rng, 0)
    assert float(loss) == float(jax.jit(old_loss)(params, batch, rng))


def test_from_config_builds_timms_mixup_with_the_tasks_label_smoothing():
    info = DatasetInfo(num_classes=4, num_train=96, num_eval=40, image_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    config = tiny_config(label_smoothing=0.2, mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="pair"))
    task = ClassificationTask.from_config(config, info)
    assert task.mixup == Mixup(4, mixup_alpha=0.8, cutmix_alpha=1.0, mode="pair", label_smoothing=0.2)
    minmax = ClassificationTask.from_config(tiny_config(mixup=dict(cutmix_minmax=[0.2, 0.8])), info).mixup
    assert minmax.cutmix_minmax == (0.2, 0.8) and minmax.cutmix_alpha == 1.0 and minmax.mixup_alpha == 0.0


def test_a_trainer_run_with_mixup_trains_and_evaluates_on_unmixed_images(tmp_path):
    config = tiny_config(
        total_steps=3, log_every=1, eval_every=3, checkpoint_every=3, tensorboard=False, async_checkpointing=False
    )
    config.mixup = dict(mixup_alpha=0.8, cutmix_alpha=1.0, mode="elem")
    final = train_and_evaluate(config, tmp_path / "mixed")
    records = read_metrics(tmp_path / "mixed")
    assert [r["step"] for r in records] == [1, 2, 3] and all(np.isfinite(r["train/loss"]) for r in records)
    assert np.isfinite(final["eval/loss"]) and 0 <= final["eval/accuracy"] <= 1
    # The same run without mixup starts from the same parameters and batch: only the mixing moves its first loss.
    del config["mixup"]
    train_and_evaluate(config, tmp_path / "plain")
    assert records[0]["train/loss"] != read_metrics(tmp_path / "plain")[0]["train/loss"]


def test_the_trainer_command_rejects_a_bad_mixup_block_with_exit_code_2(tmp_path):
    config_file = tmp_path / "bad_mixup.py"
    config_file.write_text(
        "from experiments.configs.quickstart import get_config as quickstart\n\n\n"
        "def get_config(arg=None):\n"
        "    config = quickstart(arg)\n"
        "    config.mixup = dict(mixup_alpha=0.8, mode='bach')\n"
        "    return config\n"
    )
    repo = pathlib.Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(
        [sys.executable, "-m", "mixtok.train", "--config", str(config_file), "--workdir", str(tmp_path / "run")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config.mixup.mode must be one of 'batch', 'pair', 'elem'; got 'bach'." in proc.stderr
    assert "Traceback" not in proc.stderr
