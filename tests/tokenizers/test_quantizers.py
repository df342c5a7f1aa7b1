"""Quantizers against numpy re-implementations of their official formulas (mixtok.tokenizers.quantizers)."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.tokenizers.base import QUANTIZER_STATE
from mixtok.tokenizers.quantizers import (
    BSQ,
    FSQ,
    FSQ_PRESETS,
    LFQ,
    QUANTIZERS,
    DiagonalGaussian,
    ResidualQuantizer,
    VectorQuantizer,
    make_quantizer,
)

KEY = jax.random.PRNGKey(0)


def init(module, z, **kwargs):
    return jax.jit(lambda z: module.init({"params": KEY, "noise": KEY}, z, **kwargs))(z)


def run(module, variables, *args, **kwargs):
    """`module.apply` under one `jax.jit` (one compilation, where eager mode compiles every op)."""
    return jax.jit(lambda v, *a: module.apply(v, *a, **kwargs))(variables, *args)


def normal(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def unboxed(variables):
    """Plain numpy arrays (writable copies) of the variables, without logical-axis boxes."""
    return jax.tree_util.tree_map(np.array, nn.meta.unbox(variables))


def normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------------------------------- VQ


@pytest.mark.parametrize("l2", [False, True])
def test_vq_picks_the_nearest_code_and_losses_follow_titok(l2):
    z = normal((3, 5, 6))
    vq = VectorQuantizer(codebook_size=32, code_dim=6, l2_normalize=l2, beta=0.25)
    variables = init(vq, z)
    codebook = unboxed(variables)["params"]["codebook"]
    assert np.all(np.abs(codebook) <= 1 / 32)  # U(-1/K, 1/K)
    out = run(vq, variables, z)

    zn = normalize(z) if l2 else z
    cn = normalize(codebook) if l2 else codebook
    brute = np.array([[np.argmin([np.sum((zn[b, t] - c) ** 2) for c in cn]) for t in range(5)] for b in range(3)])
    np.testing.assert_array_equal(np.asarray(out.indices), brute)
    np.testing.assert_allclose(np.asarray(out.quantized), cn[brute], rtol=1e-6, atol=1e-7)
    mse = np.mean((cn[brute] - zn) ** 2)
    np.testing.assert_allclose(float(out.stats["commitment_loss"]), 0.25 * mse, rtol=1e-5)
    np.testing.assert_allclose(float(out.stats["codebook_loss"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(out.loss), 1.25 * mse, rtol=1e-5)
    counts = np.bincount(brute.ravel(), minlength=32) / brute.size
    np.testing.assert_allclose(float(out.stats["codebook_usage"]), np.mean(counts > 0), rtol=1e-6)
    p = counts[counts > 0]
    np.testing.assert_allclose(float(out.stats["perplexity"]), np.exp(-np.sum(p * np.log(p))), rtol=1e-5)


def test_vq_straight_through_gradient_is_identity_and_codebook_gets_the_codebook_loss_gradient():
    z = normal((4, 3))
    weights = normal((4, 3), seed=1)
    vq = VectorQuantizer(codebook_size=8, code_dim=3)
    variables = init(vq, z)
    grad_z = jax.jit(jax.grad(lambda z: jnp.sum(weights * run(vq, variables, z).quantized)))(z)
    np.testing.assert_allclose(np.asarray(grad_z), np.asarray(weights), rtol=0, atol=0)

    grad_params = jax.jit(jax.grad(lambda v: run(vq, v, z).loss))(variables)
    grad_codebook = np.asarray(unboxed(grad_params)["params"]["codebook"])
    codebook = unboxed(variables)["params"]["codebook"]
    indices = np.asarray(run(vq, variables, z).indices)
    expected = np.zeros_like(codebook)
    for token, k in enumerate(indices):  # d/de mean((e - sg z)^2) over 4 x 3 elements
        expected[k] += 2 * (codebook[k] - np.asarray(z)[token]) / z.size
    np.testing.assert_allclose(grad_codebook, expected, rtol=1e-5, atol=1e-7)


def test_rotation_trick_forward_is_the_code_and_gradient_is_the_rotation_of_the_paper():
    z = np.array([[0.3, -1.2, 0.7, 0.5]], np.float32)
    weights = np.array([[1.0, -2.0, 0.5, 3.0]], np.float32)
    vq = VectorQuantizer(codebook_size=4, code_dim=4, gradient="rotation")
    codebook = np.array([[0.5, 0.1, -0.4, 0.9], [-2, 0, 0, 0], [0, 0, 3, 0], [0, 2, 0, 0]], np.float32)
    variables = {"params": {"codebook": jnp.asarray(codebook)}}
    out = run(vq, variables, z)
    code = codebook[int(out.indices[0])]
    np.testing.assert_array_equal(np.asarray(out.quantized[0]), code)

    grad = jax.jit(jax.grad(lambda z: jnp.sum(weights * run(vq, variables, z).quantized)))(jnp.asarray(z))
    e = z[0].astype(np.float64)
    u, q = e / np.linalg.norm(e), code / np.linalg.norm(code)
    w = (u + q) / np.linalg.norm(u + q)
    rotation = np.eye(4) - 2 * np.outer(w, w) + 2 * np.outer(u, q)  # e @ rotation = |e| q
    np.testing.assert_allclose(e @ rotation * np.linalg.norm(code) / np.linalg.norm(e), code, rtol=1e-6)
    expected = np.linalg.norm(code) / np.linalg.norm(e) * (weights[0] @ rotation.T)
    np.testing.assert_allclose(np.asarray(grad[0]), expected, rtol=1e-5, atol=1e-6)


def test_ema_codebook_update_matches_the_laplace_smoothed_formula():
    z = normal((2, 5, 3))
    decay, eps, size = 0.9, 1e-5, 6
    vq = VectorQuantizer(codebook_size=size, code_dim=3, ema_decay=decay, ema_epsilon=eps)
    variables = init(vq, z)
    assert "params" not in variables
    state = unboxed(variables)[QUANTIZER_STATE]
    out, updated = run(vq, variables, z, train=True, mutable=[QUANTIZER_STATE])
    new = unboxed(updated)[QUANTIZER_STATE]

    flat, indices = z.reshape(-1, 3), np.asarray(out.indices).ravel()
    counts = np.bincount(indices, minlength=size)
    sums = np.stack([flat[indices == k].sum(0) for k in range(size)])
    cluster = decay * state["cluster_size"] + (1 - decay) * counts
    embed = decay * state["embed_sum"] + (1 - decay) * sums
    smoothed = (cluster + eps) / (cluster.sum() + size * eps) * cluster.sum()
    np.testing.assert_allclose(new["cluster_size"], cluster, rtol=1e-6)
    np.testing.assert_allclose(new["embed_sum"], embed, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(new["codebook"], embed / smoothed[:, None], rtol=1e-5, atol=1e-7)
    # the loss is the commitment term only, against the codebook before the update
    code = state["codebook"][indices].reshape(z.shape)
    np.testing.assert_allclose(float(out.loss), 0.25 * np.mean((code - z) ** 2), rtol=1e-5)
    # eval, or a read-only collection: nothing changes
    _, frozen = run(vq, variables, z, train=False, mutable=[QUANTIZER_STATE])
    np.testing.assert_array_equal(unboxed(frozen)[QUANTIZER_STATE]["codebook"], state["codebook"])
    read_only = run(vq, variables, z, train=True)
    np.testing.assert_array_equal(np.asarray(read_only.indices), np.asarray(out.indices))


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_dead_codes_are_replaced_by_batch_vectors_and_live_codes_are_untouched(ema_decay):
    codebook = np.array([[1, 0], [0, 1], [-5, -5], [9, -9]], np.float32)
    z = np.array([[1.1, 0.1], [0.9, -0.1], [0.1, 1.2], [-0.1, 0.8], [1.0, 0.05]], np.float32)
    vq = VectorQuantizer(codebook_size=4, code_dim=2, ema_decay=ema_decay, dead_code_threshold=0.995)
    variables = unboxed(init(vq, z))
    if ema_decay is None:
        variables["params"]["codebook"] = codebook
    else:
        state = variables[QUANTIZER_STATE]
        state.update(codebook=codebook, embed_sum=codebook.copy(), cluster_size=np.ones(4, np.float32))
    _, updated = run(vq, variables, z, train=True, mutable=[QUANTIZER_STATE], rngs={"noise": KEY})
    variables = {**variables, **unboxed(updated)}
    new_codebook = np.asarray(run(vq, variables, jnp.arange(4), method="decode_indices"))
    decay = 0.99 if ema_decay is None else ema_decay
    usage = decay * 1.0 + (1 - decay) * np.array([3, 2, 0, 0])  # codes 2, 3 fall below 0.995
    assert np.all(usage[:2] >= 0.995) and np.all(usage[2:] < 0.995)
    for k in (2, 3):
        # (a learned codebook keeps params + offset, exact to float32 rounding)
        assert any(np.allclose(new_codebook[k], row, rtol=0, atol=1e-6) for row in z), (k, new_codebook[k])
    np.testing.assert_allclose(variables[QUANTIZER_STATE]["usage"], [*usage[:2], 0.995, 0.995], rtol=1e-6)
    if ema_decay is None:
        np.testing.assert_array_equal(new_codebook[:2], codebook[:2])
    else:  # live codes follow the EMA formula
        sums = np.array([z[[0, 1, 4]].sum(0), z[[2, 3]].sum(0)])
        cluster = decay + (1 - decay) * np.array([3, 2, 0, 0])
        smoothed = (cluster + 1e-5) / (cluster.sum() + 4e-5) * cluster.sum()
        np.testing.assert_allclose(
            new_codebook[:2], (decay * codebook[:2] + (1 - decay) * sums) / smoothed[:2, None], rtol=1e-5
        )
        # replaced codes restart with cluster size = threshold and embed_sum = sample * threshold
        state = variables[QUANTIZER_STATE]
        np.testing.assert_allclose(state["cluster_size"], [*cluster[:2], 0.995, 0.995], rtol=1e-6)
        np.testing.assert_allclose(state["embed_sum"][2:], new_codebook[2:] * 0.995, rtol=1e-6)


# ----------------------------------------------------------------------------------------------- FSQ


def numpy_fsq(z, levels, eps=1e-3):
    """The lucidrains formula, written out in float64."""
    levels = np.asarray(levels, np.float64)
    half_l = (levels - 1) * (1 + eps) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    bounded = np.tanh(z + np.arctanh(offset / half_l)) * half_l - offset
    half_width = levels // 2
    codes = np.round(bounded) / half_width
    basis = np.cumprod([1, *levels[:-1]])
    indices = np.sum((codes * half_width + half_width) * basis, axis=-1).round().astype(np.int64)
    return bounded, codes, indices


@pytest.mark.parametrize("preset", sorted(FSQ_PRESETS))
def test_fsq_every_index_round_trips_through_its_code(preset):
    fsq = FSQ(levels=preset)
    assert fsq.codebook_size == np.prod(FSQ_PRESETS[preset]) and fsq.code_dim == len(FSQ_PRESETS[preset])
    indices = jnp.arange(fsq.codebook_size, dtype=jnp.int32)
    codes = run(fsq, {}, indices, method="indices_to_codes")
    np.testing.assert_array_equal(np.asarray(run(fsq, {}, codes, method="codes_to_indices")), np.asarray(indices))
    # the codes are the mixed-radix digits (first dimension least significant), centred and scaled
    levels = FSQ_PRESETS[preset]
    digits = np.array(list(itertools.product(*[range(n) for n in reversed(levels)])))[:, ::-1]
    half_width = np.array(levels) // 2
    np.testing.assert_array_equal(np.asarray(codes), ((digits - half_width) / half_width).astype(np.float32))
    # and feeding a code's pre-image through the quantizer gives that code and index back
    out = run(fsq, {}, _preimage(codes, levels))
    np.testing.assert_array_equal(np.asarray(out.indices), np.asarray(indices))


def _preimage(codes, levels, eps=1e-3):
    """A z whose bounded value is exactly a level (inverting tanh), for the round trip."""
    levels = np.asarray(levels, np.float64)
    half_l = (levels - 1) * (1 + eps) / 2
    offset = np.where(levels % 2 == 0, 0.5, 0.0)
    target = np.asarray(codes, np.float64) * (levels // 2)
    return jnp.asarray(np.arctanh((target + offset) / half_l) - np.arctanh(offset / half_l), jnp.float32)


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (7, 6, 3)])
def test_fsq_reaches_every_level_and_matches_numpy(levels):
    grid = np.linspace(-8, 8, 4001, dtype=np.float32)
    z = np.repeat(grid[:, None], len(levels), axis=1)
    fsq = FSQ(levels=levels)
    out = run(fsq, {}, z)
    for dim, n in enumerate(levels):
        hw = n // 2
        expected_levels = ((np.arange(n) - hw) / hw).astype(np.float32)
        np.testing.assert_array_equal(np.unique(np.asarray(out.quantized[:, dim])), expected_levels)
    bounded, codes, indices = numpy_fsq(z.astype(np.float64), levels)
    np.testing.assert_allclose(np.asarray(run(fsq, {}, z, method="bound")), bounded, rtol=1e-5, atol=1e-5)
    agree = np.all(np.asarray(out.quantized) == codes.astype(np.float32), axis=1)
    assert agree.mean() > 0.999  # float32 vs float64 can differ only at rounding boundaries
    np.testing.assert_array_equal(np.asarray(out.indices)[agree], indices[agree])
    assert float(out.loss) == 0.0
    np.testing.assert_array_equal(
        np.asarray(run(fsq, {}, out.indices, method="decode_indices")), np.asarray(out.quantized)
    )


def test_fsq_straight_through_gradient_is_the_derivative_of_the_bound():
    levels = (8, 5, 5, 5)
    z = normal((6, 4))
    weights = normal((6, 4), seed=1)
    fsq = FSQ(levels="fsq_1000")
    grad = jax.jit(jax.grad(lambda z: jnp.sum(weights * run(fsq, {}, z).quantized)))(jnp.asarray(z))
    lv = np.asarray(levels, np.float64)
    half_l = (lv - 1) * (1 + 1e-3) / 2
    shift = np.arctanh(np.where(lv % 2 == 0, 0.5, 0.0) / half_l)
    expected = weights * half_l * (1 - np.tanh(z + shift) ** 2) / (lv // 2)
    np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-6)


def test_fsq_rejects_unknown_presets_and_too_few_levels():
    with pytest.raises(ValueError, match="fsq_1000"):
        FSQ(levels="fsq_100")
    with pytest.raises(ValueError, match=">= 3"):
        FSQ(levels=(8, 2))


# ----------------------------------------------------------------------------------------------- LFQ / BSQ


def numpy_lfq(z, spherical, scale=1.0, inv_temperature=100.0, gamma=1.0, entropy_weight=0.1, commitment_weight=0.0):
    """lucidrains' LFQ forward and training loss, in float64 with explicit loops over bits and codes."""
    d = z.shape[-1]
    x = z.reshape(-1, d).astype(np.float64)
    if spherical:
        x = normalize(x) * scale
    indices = np.array([sum(2 ** (d - 1 - i) for i in range(d) if row[i] > 0) for row in x])

    def code_of(index):
        bits = np.array([(index >> (d - 1 - i)) & 1 for i in range(d)], np.float64)
        code = bits * 2 * scale - scale
        return normalize(code) * scale if spherical else code

    codebook = np.stack([code_of(k) for k in range(2**d)])
    logits = 2 * x @ codebook.T * inv_temperature
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)

    def entropy(p):
        return -np.sum(p * np.log(np.maximum(p, 1e-5)), axis=-1)

    quantized = codebook[indices]
    loss = entropy_weight * (entropy(probs).mean() - gamma * entropy(probs.mean(0))) + commitment_weight * np.mean(
        (x - quantized) ** 2
    )
    return indices.reshape(z.shape[:-1]), quantized.reshape(z.shape), loss


@pytest.mark.parametrize("cls, spherical", [(LFQ, False), (BSQ, True)])
def test_lfq_and_bsq_match_lucidrains_indices_codes_and_entropy_loss(cls, spherical):
    z = normal((2, 3, 5)) * 0.3
    quantizer = cls(code_dim=5, commitment_weight=0.25, diversity_gamma=0.8)
    assert quantizer.codebook_size == 32
    train_out = run(quantizer, {}, z, train=True)
    eval_out = run(quantizer, {}, z)
    indices, quantized, loss = numpy_lfq(z, spherical, gamma=0.8, commitment_weight=0.25)
    np.testing.assert_array_equal(np.asarray(eval_out.indices), indices)
    np.testing.assert_allclose(np.asarray(eval_out.quantized), quantized, rtol=1e-6)
    if spherical:
        np.testing.assert_allclose(np.abs(np.asarray(eval_out.quantized)), 5**-0.5, rtol=1e-6)
    np.testing.assert_allclose(float(train_out.loss), loss, rtol=1e-4, atol=1e-6)
    assert float(eval_out.loss) == 0.0  # lucidrains computes the auxiliary loss only in training
    np.testing.assert_array_equal(
        np.asarray(run(quantizer, {}, eval_out.indices, method="decode_indices")), np.asarray(eval_out.quantized)
    )
    all_codes = run(quantizer, {}, jnp.arange(32), method="decode_indices")
    np.testing.assert_array_equal(np.asarray(run(quantizer, {}, all_codes).indices), np.arange(32))


def test_lfq_straight_through_gradient_and_code_dim_limit():
    z = normal((4, 6))
    weights = normal((4, 6), seed=1)
    grad = jax.jit(jax.grad(lambda z: jnp.sum(weights * LFQ(code_dim=6).apply({}, z).quantized)))(z)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(weights))
    with pytest.raises(ValueError, match="16"):
        LFQ(code_dim=18)
    with pytest.raises(ValueError, match="spherical"):
        BSQ(code_dim=4, spherical=False)


# ----------------------------------------------------------------------------------------------- residual


def test_residual_vq_equals_two_vqs_run_by_hand_on_the_residual():
    z = normal((2, 7, 4))
    single = VectorQuantizer(codebook_size=8, code_dim=4)
    residual = ResidualQuantizer(quantizer=single, depth=2)
    variables = init(residual, z)
    assert set(variables["params"]) == {"level_0", "level_1"}
    out = run(residual, variables, z)
    first = run(single, {"params": variables["params"]["level_0"]}, z)
    second = run(single, {"params": variables["params"]["level_1"]}, z - first.quantized)
    np.testing.assert_allclose(np.asarray(out.quantized), np.asarray(first.quantized + second.quantized), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.indices[..., 0]), np.asarray(first.indices))
    np.testing.assert_array_equal(np.asarray(out.indices[..., 1]), np.asarray(second.indices))
    np.testing.assert_allclose(float(out.loss), float(first.loss + second.loss), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(run(residual, variables, out.indices, method="decode_indices")), np.asarray(out.quantized), rtol=1e-6
    )
    with pytest.raises(ValueError, match="no codebook"):
        ResidualQuantizer(quantizer=DiagonalGaussian(code_dim=4), depth=2)


# ----------------------------------------------------------------------------------------------- Gaussian


def test_gaussian_kl_follows_titok_and_samples_have_the_posterior_statistics():
    code_dim = 3
    z = normal((2, 4, 2 * code_dim))
    z[0, 0, code_dim] = 40.0  # clipped to logvar 20
    gaussian = DiagonalGaussian(code_dim=code_dim, kl_weight=0.5)
    assert gaussian.input_dim == 6 and gaussian.codebook_size is None
    out = run(gaussian, {}, z)
    mean, logvar = z[..., :code_dim].astype(np.float64), np.clip(z[..., code_dim:], -30, 20)
    kl = 0.5 * np.sum(mean**2 + np.exp(logvar) - 1 - logvar, axis=(1, 2)).mean()  # sum per image, batch mean
    np.testing.assert_allclose(float(out.stats["kl"]), kl, rtol=1e-5)
    np.testing.assert_allclose(float(out.loss), 0.5 * kl, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.quantized), z[..., :code_dim])  # eval: the mean
    assert out.indices is None
    with pytest.raises(ValueError, match="no indices"):
        run(gaussian, {}, jnp.zeros((2,), jnp.int32), method="decode_indices")

    params = np.array([[0.5, -1.0, 0.0, np.log(0.25), np.log(4.0), 0.0]], np.float32)
    samples = jax.jit(jax.vmap(lambda key: run(gaussian, {}, params, train=True, rngs={"noise": key}).quantized))(
        jax.random.split(KEY, 20000)
    )[:, 0]
    np.testing.assert_allclose(np.asarray(samples.mean(0)), [0.5, -1.0, 0.0], atol=0.05)
    np.testing.assert_allclose(np.asarray(samples.var(0)), [0.25, 4.0, 1.0], rtol=0.05)


# ----------------------------------------------------------------------------------------------- all quantizers


CASES = {
    "vq": dict(codebook_size=16, code_dim=4, l2_normalize=True),
    "fsq": dict(levels=(5, 5, 3)),
    "lfq": dict(code_dim=4),
    "bsq": dict(code_dim=4),
    "residual": dict(quantizer={"name": "vq", "codebook_size": 8, "code_dim": 4, "ema_decay": 0.9}, depth=2),
    "gaussian": dict(code_dim=4),
    "stochastic_vq": dict(codebook_size=16, code_dim=4),  # LARP's (mixtok/tokenizers/stochastic_vq.py)
}


def test_factory_builds_every_registered_quantizer_and_names_bad_arguments():
    assert QUANTIZERS.names() == sorted(CASES)
    assert isinstance(make_quantizer("fsq", levels=[8, 5, 5, 5]), FSQ)
    with pytest.raises(ValueError, match="Did you mean 'fsq'"):
        make_quantizer("fsqq")
    with pytest.raises(ValueError, match="codebook_size"):
        make_quantizer("vq", codebok_size=8, code_dim=4)
    with pytest.raises(ValueError, match="gradient"):
        make_quantizer("vq", codebook_size=8, code_dim=4, gradient="gumbel")


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_quantizer_jits_on_any_leading_dims_and_bfloat16(name):
    quantizer = make_quantizer(name, **CASES[name])
    z_grid = normal((2, 3, 2, quantizer.input_dim))  # [B, H, W, C]
    z_tokens = z_grid.reshape(2, 6, quantizer.input_dim)  # [B, K, C], the same vectors
    variables = init(quantizer, z_tokens)

    @jax.jit
    def step(variables, z_tokens, z_grid):
        kwargs = dict(train=True, rngs={"noise": KEY}, mutable=[QUANTIZER_STATE])
        tokens, _ = quantizer.apply(variables, z_tokens, **kwargs)
        grid, _ = quantizer.apply(variables, z_grid, **kwargs)
        z16 = z_grid.astype(jnp.bfloat16)
        eval16, eval32 = quantizer.apply(variables, z16), quantizer.apply(variables, z16.astype(jnp.float32))
        decoded = (
            None if eval16.indices is None else quantizer.apply(variables, eval16.indices, method="decode_indices")
        )
        return tokens, grid, eval16, eval32, decoded

    tokens, grid, eval16, eval32, decoded = step(variables, z_tokens, z_grid)
    for out, z in ((tokens, z_tokens), (grid, z_grid)):
        assert out.quantized.shape == z.shape[:-1] + (quantizer.code_dim,) and out.quantized.dtype == jnp.float32
        assert out.loss.shape == () and out.loss.dtype == jnp.float32 and np.isfinite(float(out.loss))
        assert all(v.shape == () and v.dtype == jnp.float32 for v in out.stats.values())
        if name != "gaussian":
            depth = (2,) if name == "residual" else ()
            assert out.indices.shape == z.shape[:-1] + depth and out.indices.dtype == jnp.int32
            assert {"codebook_usage", "perplexity"} <= set(out.stats)
    if name != "gaussian":  # token-wise: the layout of the leading dims does not matter
        np.testing.assert_allclose(
            np.asarray(grid.quantized).reshape(tokens.quantized.shape),
            np.asarray(tokens.quantized),
            rtol=1e-6,
            atol=1e-7,
        )
        np.testing.assert_allclose(float(grid.loss), float(tokens.loss), rtol=1e-5, atol=1e-7)
    # bfloat16 input: float32 output, the same result as the bfloat16 values given in float32
    assert eval16.quantized.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(eval16.quantized), np.asarray(eval32.quantized))
    if name != "gaussian":
        np.testing.assert_array_equal(np.asarray(eval16.indices), np.asarray(eval32.indices))
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(eval16.quantized))


def test_ema_statistics_of_a_sharded_batch_are_global_without_pmean():
    devices = np.array(jax.devices()[:4])
    if devices.size < 2:
        pytest.skip("needs several (simulated) devices")
    mesh = jax.sharding.Mesh(devices, ("data",))
    z = normal((devices.size * 2, 3, 4))
    vq = VectorQuantizer(codebook_size=8, code_dim=4, ema_decay=0.9, dead_code_threshold=0.5)
    variables = init(vq, z)

    @jax.jit
    def step(variables, z):
        return vq.apply(variables, z, train=True, rngs={"noise": KEY}, mutable=[QUANTIZER_STATE])[1]

    sharded = step(variables, jax.device_put(z, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))))
    single = step(variables, z)
    for name in ("codebook", "cluster_size", "embed_sum", "usage"):
        np.testing.assert_allclose(
            unboxed(sharded)[QUANTIZER_STATE][name], unboxed(single)[QUANTIZER_STATE][name], rtol=1e-5, atol=1e-6
        )


def test_fsq_levels_whose_indices_overflow_int32_are_refused():
    from mixtok.tokenizers.quantizers import resolve_fsq_levels

    assert resolve_fsq_levels((8, 8, 8, 5, 5, 5)) == (8, 8, 8, 5, 5, 5)
    with pytest.raises(ValueError, match="4,228,250,625 codes, more than int32 indices hold"):
        resolve_fsq_levels((255,) * 4)
