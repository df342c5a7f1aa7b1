"""The tokenizer task on clips [B, T, H, W, C]: per-frame losses and metrics, temporal PSNR, the PNG strip, a run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict
from PIL import Image

from mixtok.data import create_eval_iterator, dataset_info
from mixtok.tokenizers import losses
from mixtok.train.tasks.tokenizer import TokenizerTask
from mixtok.train.trainer import train_and_evaluate

SIZE, FRAMES = 16, 3  # 1 + k * temporal_patch_size frames; 16 px: SSIM's 11-px window fits
TINY_OMNI = dict(
    patch_size=4,
    temporal_patch_size=2,
    dim=16,
    heads=1,
    dim_head=16,
    ff_mult=2.0,
    temporal_depth=1,
    encoder_blocks="t",
    decoder_blocks="t",
    fix_temporal_peg=True,
    quantizer=dict(name="vq", codebook_size=16, code_dim=4, l2_normalize=True, normalize_codebook=False),
)


def _config(**overrides):
    config = ConfigDict()
    config.seed = 0
    config.task = "tokenizer"
    config.total_steps = 4
    config.batch_size = 8  # a multiple of the tests' 8 simulated devices
    config.eval_batch_size = 8
    config.log_every = 1
    config.eval_every = 4
    config.checkpoint_every = 4
    config.progress_bar = False
    config.tensorboard = False
    config.async_checkpointing = False
    config.data = ConfigDict(
        dict(
            name="sample_videos",
            image_size=SIZE,
            num_frames=FRAMES,
            num_examples=16,
            num_eval_examples=6,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )
    config.model = ConfigDict(dict(name="omnitokenizer_vq", kwargs=TINY_OMNI))
    config.optimizer = ConfigDict(dict(name="adamw", lr=3e-3, weight_decay=0.0))
    config.update(overrides)
    return config


def _task(config):
    return TokenizerTask.from_config(config, dataset_info(config.data))


def _clips(seed=0, n=4, frames=FRAMES):
    """Smooth moving gratings in [-0.8, 0.8], [n, T, S, S, 3]."""
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.linspace(0, 1, SIZE), np.linspace(0, 1, SIZE), indexing="ij")
    phases = rng.uniform(0, 6, size=(n, 1, 1, 1, 3))
    t = np.arange(frames)[None, :, None, None, None]
    return jnp.asarray(0.8 * np.sin(3 * xs[..., None] + 2 * ys[..., None] + phases + 0.3 * t), jnp.float32)


def _init(task, batch):
    return jax.jit(task.init)(jax.random.PRNGKey(0), batch)  # traced once: eager init is slow


def _split(variables):
    variables = dict(variables)
    return variables.pop("params"), variables


def test_the_task_initialises_from_a_clip_of_the_datas_num_frames():
    task = _task(_config())
    assert task.num_frames == FRAMES
    batch = task.dummy_batch(SIZE, 2)
    assert batch["image"].shape == (2, FRAMES, SIZE, SIZE, 3)
    params, other = _split(_init(task, batch))
    out = jax.jit(task.model.apply)(task.model_variables(params, other), _clips(n=2))
    assert out.reconstruction.shape == (2, FRAMES, SIZE, SIZE, 3)
    assert out.quantizer.indices.shape == (2, 2, SIZE // 4, SIZE // 4)  # T' = 1 + (3 - 1) / 2 latent frames


def test_perceptual_and_gan_terms_see_the_frames_of_the_clips():
    config = _config(
        loss=dict(
            perceptual_weight=0.5,
            perceptual_kwargs=dict(widths=(4, 8)),
            gan_weight=0.1,
            discriminator="patchgan",
            discriminator_kwargs=dict(ndf=4, n_layers=1),
        )
    )
    task = _task(config)
    clips = _clips()
    params, other = _split(_init(task, task.dummy_batch(SIZE)))
    _, (metrics, _) = jax.jit(lambda p: task.train_loss(p, other, {"image": clips}, jax.random.PRNGKey(1), 0))(params)
    apply = jax.jit(lambda v, x: task.model.apply(v, x, train=True, rngs={"noise": jax.random.PRNGKey(2)}))
    out = apply({"params": params["tokenizer"], **other["tokenizer"]}, clips)
    # The frames, folded by hand: [B T, H, W, C].
    real = np.asarray(clips).reshape(-1, SIZE, SIZE, 3)
    fake = np.asarray(out.reconstruction).reshape(-1, SIZE, SIZE, 3)
    features = lambda x: task.perceptual_network.apply(other["perceptual"], x)  # noqa: E731
    expected = jax.jit(losses.PerceptualLoss(features))(real, fake)
    np.testing.assert_allclose(metrics["perceptual_loss"], expected, rtol=1e-4)
    discriminate = jax.jit(lambda v, x: task.discriminator.apply(v, x, train=True, mutable=["batch_stats"])[0])
    logits = discriminate({"params": params["discriminator"], **other["discriminator"]}, real)
    np.testing.assert_allclose(metrics["logits_real"], np.mean(logits), rtol=1e-4, atol=1e-6)


def test_a_few_steps_lower_the_loss_on_a_fixed_clip_batch():
    task = _task(_config(total_steps=100))  # the cosine schedule's length: the first steps at full rate
    clips = _clips(n=4)
    params, other = _split(_init(task, task.dummy_batch(SIZE)))
    tx, _ = task.create_optimizer(None)
    opt_state = tx.init(params)
    loss_at = jax.jit(lambda p, o: task.train_loss(p, o, {"image": clips}, jax.random.PRNGKey(0), 0)[0])

    @jax.jit
    def step(params, opt_state, other, i):
        (_, (_, updated)), grads = jax.value_and_grad(task.train_loss, has_aux=True)(
            params, other, {"image": clips}, jax.random.PRNGKey(i), i
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {**other, **updated}

    first = float(loss_at(params, other))
    losses_seen = []
    for i in range(20):
        params, opt_state, other = step(params, opt_state, other, i)
        losses_seen.append(float(loss_at(params, other)))
    assert np.isfinite(first) and np.all(np.isfinite(losses_seen))
    assert losses_seen[-1] < 0.75 * first and min(losses_seen[:4]) < first


def test_eval_sums_average_psnr_and_ssim_over_frames_and_add_temporal_psnr():
    task = _task(_config())
    clips = _clips(n=4)
    params, other = _split(_init(task, task.dummy_batch(SIZE)))
    mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])
    eval_sums = jax.jit(task.eval_sums)
    summary = task.summarize_eval(jax.device_get(eval_sums(params, other, {"image": clips, "mask": mask})))
    out = jax.jit(task.model.apply)(task.model_variables(params, other), clips)
    x = np.asarray(clips[:3], np.float64) * 0.5 + 0.5
    y = np.clip(np.asarray(out.reconstruction[:3], np.float64) * 0.5 + 0.5, 0, 1)
    frame_mse = np.mean((x - y) ** 2, axis=(2, 3, 4))  # [3, T]
    np.testing.assert_allclose(summary["eval/psnr"], np.mean(10 * np.log10(1.0 / frame_mse)), rtol=1e-4)
    np.testing.assert_allclose(summary["eval/mse"], np.mean(frame_mse), rtol=1e-4)
    dx, dy = np.diff(x, axis=1), np.diff(y, axis=1)
    temporal = 10 * np.log10(4.0 / np.mean((dx - dy) ** 2, axis=(1, 2, 3, 4)))
    np.testing.assert_allclose(summary["eval/temporal_psnr"], np.mean(temporal), rtol=1e-4)
    # One-frame clips (the image steps of joint training) have no temporal PSNR; their PSNR is the image's.
    single = clips[:, :1]
    sums = eval_sums(params, other, {"image": single, "mask": mask})
    image_sums = eval_sums(params, other, {"image": single[:, 0], "mask": mask})
    assert "temporal_psnr" not in sums
    np.testing.assert_allclose(sums["psnr"], image_sums["psnr"], rtol=1e-5)
    np.testing.assert_allclose(sums["ssim"], image_sums["ssim"], rtol=1e-5)


def test_a_short_video_run_reports_video_metrics_and_writes_the_frame_strip(tmp_path):
    config = _config()
    metrics = train_and_evaluate(config, str(tmp_path))
    for key in ("eval/psnr", "eval/ssim", "eval/temporal_psnr", "eval/codebook_usage", "train/loss"):
        assert np.isfinite(metrics[key]), key
    strip = np.asarray(Image.open(tmp_path / "images" / "step_0000004.png").convert("RGB"))
    clips = 4  # NUM_EVAL_CLIPS of the 6 eval clips: two rows each (original, reconstruction), a column per frame
    pad = 2
    assert strip.shape == (2 * clips * (SIZE + pad) + pad, FRAMES * (SIZE + pad) + pad, 3)
    # The original rows hold the eval clips' frames exactly (the eval data read independently).
    batch = next(iter(create_eval_iterator(config.data, global_batch_size=8)))
    pixels = np.rint(np.clip(np.asarray(batch["image"]) * 0.5 + 0.5, 0, 1) * 255).astype(np.uint8)
    for clip in range(clips):
        for t in range(FRAMES):
            top, left = pad + 2 * clip * (SIZE + pad), pad + t * (SIZE + pad)
            np.testing.assert_array_equal(strip[top : top + SIZE, left : left + SIZE], pixels[clip, t])
