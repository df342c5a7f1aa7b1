"""The tokenizer task: its loss terms, the generator / discriminator gradient split, eval sums, a short run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import ConfigDict

from mixtok.tokenizers import create_tokenizer, losses
from mixtok.train.tasks.tokenizer import TokenizerTask, image_grid, loss_options

TINY_VQGAN = dict(
    image_size=16,
    filters=8,
    channel_multipliers=(1, 2),
    num_res_blocks=1,
    norm_groups=4,
    quantizer={"name": "vq", "codebook_size": 16, "code_dim": 4},
)


def _task(**loss):
    config = ConfigDict(dict(loss=loss))
    model = create_tokenizer("vqgan_tiny", **TINY_VQGAN)
    optimizer = ConfigDict(dict(name="adamw", lr=3e-3, weight_decay=0.0))
    return TokenizerTask(
        model, loss=loss_options(config), mean=(0.5,) * 3, std=(0.5,) * 3, optimizer=optimizer, total_steps=100
    )


def _images(seed=0, n=4):
    rng = np.random.default_rng(seed)
    ys, xs = np.meshgrid(np.linspace(0, 1, 16), np.linspace(0, 1, 16), indexing="ij")
    phases = rng.uniform(0, 6, size=(n, 1, 1, 3))
    return jnp.asarray(np.sin(3 * xs[None, ..., None] + 2 * ys[None, ..., None] + phases) * 0.8, jnp.float32)


def _split(variables):
    variables = dict(variables)
    return variables.pop("params"), variables


def test_unknown_loss_fields_and_names_are_errors_that_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown config.loss field 'gan_wieght'.*Did you mean 'gan_weight'"):
        loss_options(ConfigDict(dict(loss=dict(gan_wieght=0.1))))
    with pytest.raises(ValueError, match="config.loss.discriminator 'stylegan'.*patchgan, titok"):
        loss_options(ConfigDict(dict(loss=dict(discriminator="stylegan"))))


def test_loss_without_gan_is_reconstruction_plus_quantizer_loss():
    task = _task(reconstruction="l1", reconstruction_weight=2.0, quantizer_weight=0.5)
    images = _images()
    params, other = _split(task.init(jax.random.PRNGKey(0), {"image": images}))
    loss, (metrics, _) = task.train_loss(params, other, {"image": images}, jax.random.PRNGKey(1), 0)
    out = task.model.apply(
        {"params": params["tokenizer"], **other["tokenizer"]}, images, train=True, rngs={"noise": jax.random.PRNGKey(2)}
    )
    expected = 2.0 * np.mean(np.abs(np.asarray(images) - np.asarray(out.reconstruction))) + 0.5 * out.quantizer.loss
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(metrics["reconstruction_loss"], expected / 2.0 - 0.25 * out.quantizer.loss, rtol=1e-5)


def test_gan_terms_give_each_parameter_set_only_its_own_gradient_and_start_at_gan_start_step():
    task = _task(
        gan_weight=0.5,
        gan_start_step=10,
        lecam_weight=0.1,
        discriminator="patchgan",
        discriminator_kwargs=dict(ndf=8, n_layers=2),
    )
    images = _images()
    params, other = _split(task.init(jax.random.PRNGKey(0), {"image": images}))
    rng = jax.random.PRNGKey(1)
    # Jitted (the step traced, as the train step has it): eager op-by-op dispatch would take most of a minute.
    grad = jax.jit(lambda p, step: jax.grad(lambda q: task.train_loss(q, other, {"image": images}, rng, step)[0])(p))
    before, after = grad(params, 9), grad(params, 10)
    # Before the start step the discriminator gets no gradient and the generator only its own losses.
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(before["discriminator"]))
    no_gan = _task()
    no_gan_grad = jax.jit(
        jax.grad(lambda p: no_gan.train_loss(p, {"tokenizer": other["tokenizer"]}, {"image": images}, rng, 9)[0])
    )({"tokenizer": params["tokenizer"]})
    for a, b in zip(jax.tree_util.tree_leaves(before["tokenizer"]), jax.tree_util.tree_leaves(no_gan_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # From the start step: the discriminator's gradient is that of its own loss alone.
    disc, disc_state = task.discriminator, other["discriminator"]
    recon = task.model.apply(
        {"params": params["tokenizer"], **other["tokenizer"]},
        images,
        train=True,
        rngs={"noise": jax.random.split(rng, 3)[2], "dropout": jax.random.split(rng, 3)[0]},
        mutable=["quantizer_state"],
    )[0].reconstruction

    def d_loss(d_params):
        real, s1 = disc.apply({"params": d_params, **disc_state}, images, train=True, mutable=["batch_stats"])
        fake, _ = disc.apply({"params": d_params, **s1}, recon, train=True, mutable=["batch_stats"])
        reg = losses.lecam_regularization(real, fake, 0.0, 0.0)
        return losses.hinge_d_loss(real, fake) + 0.1 * reg

    expected = jax.jit(jax.grad(d_loss))(params["discriminator"])
    for a, b in zip(jax.tree_util.tree_leaves(after["discriminator"]), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(after["discriminator"]))


def test_a_few_steps_lower_the_reconstruction_loss():
    task = _task()
    images = _images(n=8)
    params, other = _split(task.init(jax.random.PRNGKey(0), {"image": images}))
    tx, _ = task.create_optimizer(None)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, other, i):
        (loss, (metrics, updated)), grads = jax.value_and_grad(task.train_loss, has_aux=True)(
            params, other, {"image": images}, jax.random.PRNGKey(i), i
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {**other, **updated}, metrics

    first = None
    for i in range(25):
        params, opt_state, other, metrics = step(params, opt_state, other, i)
        first = first if first is not None else float(metrics["reconstruction_loss"])
    assert float(metrics["reconstruction_loss"]) < 0.7 * first


def test_eval_sums_give_psnr_and_the_codebook_statistics_of_the_real_images():
    task = _task()
    images = _images(n=4)
    params, other = _split(task.init(jax.random.PRNGKey(0), {"image": images}))
    mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])
    sums = task.eval_sums(params, other, {"image": images, "mask": mask})
    summary = task.summarize_eval(jax.device_get(sums))
    variables = {"params": params["tokenizer"], **other["tokenizer"]}
    out = task.model.apply(variables, images)
    x = np.asarray(images[:3]) * 0.5 + 0.5
    y = np.clip(np.asarray(out.reconstruction[:3]) * 0.5 + 0.5, 0, 1)
    mse = np.mean((x - y) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(summary["eval/psnr"], np.mean(10 * np.log10(1.0 / mse)), rtol=1e-4)
    codes = np.asarray(out.quantizer.indices[:3]).reshape(-1)
    counts = np.bincount(codes, minlength=16)
    p = counts[counts > 0] / counts.sum()
    assert summary["eval/codebook_usage"] == pytest.approx(np.mean(counts > 0))
    assert summary["eval/perplexity"] == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-6)


def test_image_grid_puts_originals_left_of_reconstructions():
    a = np.zeros((2, 4, 4, 3))
    b = np.ones((2, 4, 4, 3))
    grid = image_grid([a, b], padding=1)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 1:5] == 0).all() and (grid[1:5, 6:10] == 255).all() and (grid[6:10, 1:5] == 0).all()
