"""Tokenizer losses against numpy formulas, PyTorch restatements of the official discriminators, and the
gradient split of the one-optimizer generator + discriminator step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import meta

from mixtok.tokenizers.losses import (
    LogitPerceptualLoss,
    PatchGANDiscriminator,
    PerceptualLoss,
    SmallFeatureNet,
    TiTokDiscriminator,
    adaptive_generator_weight,
    adaptive_max_pool,
    gan_weight_at,
    hinge_d_loss,
    hinge_g_loss,
    lecam_regularization,
    lpips_distance,
    non_saturating_d_loss,
    non_saturating_g_loss,
    reconstruction_loss,
    update_lecam_ema,
)

RNG = np.random.default_rng(0)


def num_params(tree):
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(tree))


def test_reconstruction_loss_is_mean_l1_or_l2():
    x, y = RNG.standard_normal((2, 5, 4, 3)), RNG.standard_normal((2, 5, 4, 3))
    np.testing.assert_allclose(float(reconstruction_loss(x, y, "l1")), np.mean(np.abs(x - y)), rtol=1e-6)
    np.testing.assert_allclose(float(jax.jit(reconstruction_loss)(x, y)), np.mean((x - y) ** 2), rtol=1e-6)
    with pytest.raises(ValueError, match="'l3'.*l1, l2"):
        reconstruction_loss(x, y, "l3")


def numpy_lpips(features_x, features_y, layer_weights=None):
    total = 0.0
    for layer, (fx, fy) in enumerate(zip(features_x, features_y)):
        fx, fy = np.asarray(fx, np.float64), np.asarray(fy, np.float64)
        nx = fx / (np.sqrt((fx**2).sum(-1, keepdims=True)) + 1e-10)
        ny = fy / (np.sqrt((fy**2).sum(-1, keepdims=True)) + 1e-10)
        weights = np.ones(fx.shape[-1]) if layer_weights is None else np.asarray(layer_weights[layer])
        total = total + ((nx - ny) ** 2 * weights).sum(-1).mean(axis=(1, 2))
    return total


def test_perceptual_loss_equals_a_numpy_lpips_over_the_same_features():
    net = SmallFeatureNet(widths=(4, 6))
    x, y = RNG.uniform(-1, 1, (3, 8, 10, 3)), RNG.uniform(-1, 1, (3, 8, 10, 3))
    variables = net.init(jax.random.PRNGKey(0), x)

    def features(images):
        return net.apply(variables, images)

    heads = [RNG.uniform(0, 1, 4), RNG.uniform(0, 1, 6)]
    fx, fy = features(x), features(y)
    assert [f.shape for f in fx] == [(3, 8, 10, 4), (3, 4, 5, 6)]
    for weights in (None, heads):
        loss = PerceptualLoss(features, weights)
        np.testing.assert_allclose(np.asarray(loss.per_image(x, y)), numpy_lpips(fx, fy, weights), rtol=1e-5)
        np.testing.assert_allclose(float(jax.jit(loss.__call__)(x, y)), numpy_lpips(fx, fy, weights).mean(), rtol=1e-5)
    assert float(PerceptualLoss(features)(x, x)) == 0.0
    with pytest.raises(ValueError, match="3 channels but its weights have 4"):
        lpips_distance([fx[0][..., :3]], [fy[0][..., :3]], [heads[0]])


def test_logit_perceptual_loss_is_mse_of_logits_after_torch_style_resize():
    torch = pytest.importorskip("torch")
    projection = RNG.standard_normal((12 * 12 * 3, 7)).astype(np.float32)
    x, y = RNG.uniform(-1, 1, (2, 20, 16, 3)), RNG.uniform(-1, 1, (2, 20, 16, 3))

    def network(images):
        return images.reshape(images.shape[0], -1) @ projection

    def reference_logits(images):
        unit = torch.tensor(((images + 1) / 2).transpose(0, 3, 1, 2), dtype=torch.float32)
        resized = (
            torch.nn.functional.interpolate(unit, size=12, mode="bilinear", align_corners=False, antialias=True)
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        normalised = (resized - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
        return normalised.reshape(2, -1) @ projection

    expected = np.mean((reference_logits(x) - reference_logits(y)) ** 2)
    got = LogitPerceptualLoss(network, resize_to=12)(x, y)
    np.testing.assert_allclose(float(got), expected, rtol=1e-4)


def test_discriminator_parameter_counts_equal_the_official_modules():
    images = jax.ShapeDtypeStruct((2, 256, 256, 3), jnp.float32)
    # taming-transformers NLayerDiscriminator(input_nc=3, ndf=64, n_layers=3): 2,765,633 parameters.
    patch = jax.eval_shape(PatchGANDiscriminator().init, jax.random.PRNGKey(0), images)
    assert num_params(patch["params"]) == 2_765_633
    assert jax.eval_shape(PatchGANDiscriminator().apply, patch, images).shape == (2, 30, 30, 1)
    # 1d-tokenizer NLayerDiscriminator() (hidden_channels=128, num_stages=3): 1,909,889 parameters.
    titok = jax.eval_shape(TiTokDiscriminator().init, jax.random.PRNGKey(0), images)
    assert num_params(titok["params"]) == 1_909_889
    assert jax.eval_shape(TiTokDiscriminator().apply, titok, images).shape == (2, 16, 16, 1)


def test_adaptive_max_pool_uses_torch_bins():
    x = RNG.standard_normal((1, 7, 10, 2))
    expected = np.empty((1, 3, 4, 2))
    for i in range(3):
        for j in range(4):
            rows = slice((i * 7) // 3, -(-((i + 1) * 7) // 3))
            cols = slice((j * 10) // 4, -(-((j + 1) * 10) // 4))
            expected[0, i, j] = x[0, rows, cols].max(axis=(0, 1))
    np.testing.assert_allclose(np.asarray(adaptive_max_pool(jnp.asarray(x), (3, 4))), expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(adaptive_max_pool(jnp.asarray(x[:, :6, :8]), (3, 4))),
        x[:, :6, :8].reshape(1, 3, 2, 4, 2, 2).max(axis=(2, 4)),
        rtol=1e-6,
    )


def torch_conv(torch, x, params, padding):
    weight = torch.tensor(np.asarray(params["kernel"]).transpose(3, 2, 0, 1))
    bias = torch.tensor(np.asarray(params["bias"])) if "bias" in params else None
    x = torch.nn.functional.pad(x, padding)
    return torch.nn.functional.conv2d(x, weight, bias)


def test_titok_discriminator_equals_a_torch_restatement_of_the_official_forward():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = TiTokDiscriminator(hidden_channels=32, num_stages=2, pooled_size=4)
    x = RNG.standard_normal((2, 13, 10, 3)).astype(np.float32)  # odd sizes exercise the asymmetric 'SAME' pads
    params = meta.unbox(model.init(jax.random.PRNGKey(0), x))["params"]
    got = np.asarray(model.apply({"params": params}, x))

    blur = torch.tensor([1.0, 3.0, 3.0, 1.0])
    blur = (blur[None] * blur[:, None]) / 64.0
    h = torch.tensor(x.transpose(0, 3, 1, 2))
    h = F.leaky_relu(torch_conv(torch, h, params["conv_in"], [2, 2, 2, 2]), 0.1)
    for stage in range(2):
        h = torch_conv(torch, h, params[f"stage{stage}_conv"], [1, 1, 1, 1])
        pad_h, pad_w = (3 if h.shape[2] % 2 else 2), (3 if h.shape[3] % 2 else 2)
        h = F.pad(h, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        h = F.conv2d(h, blur.expand(h.shape[1], 1, 4, 4), stride=2, groups=h.shape[1])
        norm = params[f"stage{stage}_norm"]
        h = F.group_norm(h, 32, torch.tensor(np.asarray(norm["scale"])), torch.tensor(np.asarray(norm["bias"])))
        h = F.leaky_relu(h, 0.1)
    h = F.adaptive_max_pool2d(h, (4, 4))
    h = F.leaky_relu(torch_conv(torch, h, params["logits_conv1"], [0, 0, 0, 0]), 0.1)
    h = torch_conv(torch, h, params["logits_conv2"], [2, 2, 2, 2])
    expected = h.detach().numpy().transpose(0, 2, 3, 1)
    assert got.shape == (2, 4, 4, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_patchgan_discriminator_equals_a_torch_restatement_in_train_and_eval_mode():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    model = PatchGANDiscriminator(ndf=8, n_layers=2)
    x = RNG.standard_normal((3, 20, 18, 3)).astype(np.float32)
    variables = meta.unbox(model.init(jax.random.PRNGKey(1), x))
    params, stats = variables["params"], variables["batch_stats"]
    got_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    got_eval = model.apply(variables, x)

    def forward(training):
        h = torch.tensor(x.transpose(0, 3, 1, 2))
        h = F.leaky_relu(
            F.conv2d(
                h,
                torch.tensor(np.asarray(params["conv_in"]["kernel"]).transpose(3, 2, 0, 1)),
                torch.tensor(np.asarray(params["conv_in"]["bias"])),
                stride=2,
                padding=1,
            ),
            0.2,
        )
        for layer, stride in ((1, 2), (2, 1)):
            kernel = torch.tensor(np.asarray(params[f"conv{layer}"]["kernel"]).transpose(3, 2, 0, 1))
            h = F.conv2d(h, kernel, stride=stride, padding=1)
            running_mean = torch.tensor(np.asarray(stats[f"norm{layer}"]["mean"]))
            running_var = torch.tensor(np.asarray(stats[f"norm{layer}"]["var"]))
            h = F.batch_norm(
                h,
                running_mean,
                running_var,
                torch.tensor(np.asarray(params[f"norm{layer}"]["scale"])),
                torch.tensor(np.asarray(params[f"norm{layer}"]["bias"])),
                training=training,
                momentum=0.1,
                eps=1e-5,
            )
            if training and layer == 1:
                np.testing.assert_allclose(
                    np.asarray(updates["batch_stats"]["norm1"]["mean"]), running_mean.numpy(), atol=1e-6
                )
            h = F.leaky_relu(h, 0.2)
        kernel = torch.tensor(np.asarray(params["conv_out"]["kernel"]).transpose(3, 2, 0, 1))
        h = F.conv2d(h, kernel, torch.tensor(np.asarray(params["conv_out"]["bias"])), padding=1)
        return h.numpy().transpose(0, 2, 3, 1)

    np.testing.assert_allclose(np.asarray(got_train), forward(True), atol=1e-4)
    np.testing.assert_allclose(np.asarray(got_eval), forward(False), atol=1e-4)


def test_gan_losses_equal_their_formulas():
    # Its own generator: the values must not depend on which tests ran before in this worker. float32 sums
    # of 36 logits: absolute tolerance 1e-6 as well (a mean near 0 has no relative precision).
    rng = np.random.default_rng(7)
    real, fake = rng.standard_normal((4, 3, 3, 1)) * 2, rng.standard_normal((4, 3, 3, 1)) * 2
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    close = functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6)
    close(
        float(jax.jit(hinge_d_loss)(real, fake)),
        0.5 * (np.maximum(1 - real, 0).mean() + np.maximum(1 + fake, 0).mean()),
    )
    close(float(hinge_g_loss(fake)), -fake.mean())
    close(float(non_saturating_d_loss(real, fake)), 0.5 * (softplus(-real).mean() + softplus(fake).mean()))
    close(float(non_saturating_g_loss(fake)), -np.log(1 / (1 + np.exp(-fake))).mean())
    for loss in (hinge_d_loss(real, fake), hinge_g_loss(fake), non_saturating_g_loss(fake)):
        assert loss.dtype == jnp.float32 and loss.shape == ()


def test_lecam_on_batch_means_as_1d_tokenizer_and_per_logit_as_the_paper():
    rng = np.random.default_rng(11)  # its own: the means must not come near 0 whatever ran before
    real, fake = rng.standard_normal((4, 2, 2, 1)) + 0.5, rng.standard_normal((4, 2, 2, 1)) - 0.5
    ema_real, ema_fake = 0.3, -0.2
    expected_means = max(real.mean() - ema_fake, 0) ** 2 + max(ema_real - fake.mean(), 0) ** 2
    np.testing.assert_allclose(float(lecam_regularization(real, fake, ema_real, ema_fake)), expected_means, rtol=1e-5)
    expected_per_logit = (np.maximum(real - ema_fake, 0) ** 2).mean() + (np.maximum(ema_real - fake, 0) ** 2).mean()
    np.testing.assert_allclose(
        float(lecam_regularization(real, fake, ema_real, ema_fake, reduce_logits_first=False)),
        expected_per_logit,
        rtol=1e-5,
    )
    ema = 0.0
    for _ in range(3):
        ema = ema * 0.999 + real.mean() * 0.001
    got = 0.0
    for _ in range(3):
        got = update_lecam_ema(got, real)
    np.testing.assert_allclose(float(got), ema, rtol=1e-5, atol=1e-8)


def test_gan_weight_switches_on_at_the_start_step_under_jit():
    weight_at = jax.jit(gan_weight_at)
    assert [float(weight_at(step, 20, 0.1)) for step in (0, 19, 20, 1000)] == pytest.approx([0, 0, 0.1, 0.1])


def test_adaptive_generator_weight_is_the_clipped_norm_ratio():
    assert float(adaptive_generator_weight(2.0, 0.5)) == pytest.approx(2.0 / (0.5 + 1e-4))
    assert float(adaptive_generator_weight(1.0, 0.0, max_weight=100.0)) == 100.0


def test_one_optimizer_step_gives_each_network_exactly_its_own_gradient():
    """total = L_G(gen, sg(disc)) + L_D(sg(recon), disc): d/dgen = dL_G/dgen, d/ddisc = dL_D/ddisc."""
    import flax.linen as nn

    generator = nn.Conv(3, (3, 3))
    # Any discriminator shows the property; a two-conv one keeps the test fast.
    discriminator = nn.Sequential([nn.Conv(4, (3, 3), strides=(2, 2)), nn.leaky_relu, nn.Conv(1, (3, 3))])
    images = jnp.asarray(RNG.uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
    params = {
        "generator": generator.init(jax.random.PRNGKey(0), images)["params"],
        "discriminator": discriminator.init(jax.random.PRNGKey(1), images)["params"],
    }
    ema_real, ema_fake, weight = 0.1, -0.1, 0.5

    def generator_loss(gen, disc):
        recon = generator.apply({"params": gen}, images)
        logits = discriminator.apply({"params": disc}, recon)
        return reconstruction_loss(images, recon) + weight * hinge_g_loss(logits)

    def discriminator_loss(disc, recon):
        real = discriminator.apply({"params": disc}, images)
        fake = discriminator.apply({"params": disc}, recon)
        return hinge_d_loss(real, fake) + 0.01 * lecam_regularization(real, fake, ema_real, ema_fake)

    def total(p):
        recon = generator.apply({"params": p["generator"]}, images)
        logits = discriminator.apply({"params": jax.lax.stop_gradient(p["discriminator"])}, recon)
        loss_g = reconstruction_loss(images, recon) + weight * hinge_g_loss(logits)
        return loss_g + discriminator_loss(p["discriminator"], jax.lax.stop_gradient(recon))

    grads = jax.grad(total)(params)
    recon = generator.apply({"params": params["generator"]}, images)
    expected_gen = jax.grad(generator_loss)(params["generator"], params["discriminator"])
    expected_disc = jax.grad(discriminator_loss)(params["discriminator"], recon)
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        grads,
        {"generator": expected_gen, "discriminator": expected_disc},
    )
    # Both gradients are non-trivial, so the test would notice a leak in either direction.
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree_util.tree_leaves(grads))
