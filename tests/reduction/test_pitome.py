"""PiToMe (mixtok.reduction.pitome) against a direct loop over the official algorithm and the official code's logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import pitome as pitome_module
from mixtok.reduction.base import Signals, TokenReduction, apply_rule, compose
from mixtok.reduction.pitome import energy_score, layer_margin, pitome, pitome_count
from tests.reduction import golden


def _elu(x, alpha):
    return x if x > 0 else alpha * (math.exp(x) - 1.0)


def reference_groups(keys, r, p, margin, use_bsm, alpha=1.0):
    """Which input tokens each output token is made of, for one image: the official algorithm as plain loops."""
    k = keys[p:] / np.linalg.norm(keys[p:], axis=-1, keepdims=True)
    t = len(k)
    sim = [[float(np.dot(k[i], k[j])) for j in range(t)] for i in range(t)]
    energy = [sum(_elu(sim[i][j] - margin, alpha) for j in range(t)) / t for i in range(t)]
    order = sorted(range(t), key=lambda i: -energy[i])
    pool = order if use_bsm else order[: 2 * r]
    a_set, b_set = pool[0::2], pool[1::2]
    best = [max(range(len(b_set)), key=lambda j: sim[a][b_set[j]]) for a in a_set]
    value = [sim[a][b_set[best[i]]] for i, a in enumerate(a_set)]
    ranked = sorted(range(len(a_set)), key=lambda i: -value[i])
    merged = ranked[:r]
    kept = [[a_set[i]] for i in ranked[r:]] if use_bsm else [[i] for i in order[2 * r :]]
    into = [[b] + [a_set[i] for i in merged if best[i] == j] for j, b in enumerate(b_set)]
    return [[i] for i in range(p)] + [[i + p for i in g] for g in kept + into]


def reference(tokens, sizes, keys, r, p, margin, use_bsm):
    outs = []
    for x, s, k in zip(tokens, sizes, keys, strict=True):
        groups = reference_groups(k, r, p, margin, use_bsm)
        transform = np.zeros((len(groups), len(x)))
        for m, g in enumerate(groups):
            transform[m, g] = s[g] / s[g].sum()
        outs.append((transform @ x, np.array([s[g].sum() for g in groups]), transform))
    return [np.stack(o) for o in zip(*outs, strict=True)]


def _inputs(n=13, c=6, d=5, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(batch, n, c)).astype(np.float32)
    sizes = rng.integers(1, 4, size=(batch, n)).astype(np.float32)
    keys = rng.normal(size=(batch, n, d)).astype(np.float32)
    return tokens, sizes, keys


@pytest.mark.parametrize("layer", [0, 3])  # depth 4: blocks 0, 1 run the bipartite form, 2, 3 the top-2r form
@pytest.mark.parametrize("num_protected,r", [(1, 3), (0, 4), (2, 2)])
def test_pitome_matches_a_loop_over_the_official_algorithm(layer, num_protected, r):
    tokens, sizes, keys = _inputs()
    n = tokens.shape[1]
    out = pitome(
        jnp.asarray(tokens),
        jnp.asarray(sizes),
        Signals(keys=jnp.asarray(keys)),
        num_out=n - r,
        num_protected=num_protected,
        layer=layer,
        depth=4,
    )
    want_tokens, want_sizes, want_transform = reference(
        tokens, sizes, keys, r, num_protected, layer_margin(layer, 4), use_bsm=layer < 2
    )
    np.testing.assert_allclose(out.transform, want_transform, atol=1e-6)
    np.testing.assert_allclose(out.tokens, want_tokens, atol=1e-5)
    np.testing.assert_allclose(out.sizes, want_sizes, atol=1e-6)
    # the contract: tokens == transform @ input tokens; merging conserves the sizes; protected tokens lead untouched
    np.testing.assert_allclose(jnp.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-5)
    np.testing.assert_allclose(out.sizes.sum(axis=1), sizes.sum(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(out.tokens[:, :num_protected], tokens[:, :num_protected])


def test_energy_is_the_mean_elu_of_cosine_minus_margin():
    _, _, keys = _inputs(n=7)
    got = energy_score(jnp.asarray(keys), 0.3, alpha=0.7)
    k = keys / np.linalg.norm(keys, axis=-1, keepdims=True)
    want = [[np.mean([_elu(float(k[b, i] @ k[b, j]) - 0.3, 0.7) for j in range(7)]) for i in range(7)] for b in (0, 1)]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_margins_and_counts_follow_the_official_schedule():
    # patch/deit.py: margins = [.75 - .75 * (i / num_layers) ...]; merge.py: r = math.floor(T - T * ratio)
    assert [layer_margin(i, 12) for i in range(12)] == [0.75 - 0.75 * (i / 12) for i in range(12)]
    assert pitome_count(197, 1, 0.9) == 197 - math.floor(196 - 196 * 0.9) == 178
    assert pitome_count(17, 1, 0.75) == 13
    model = VisionTransformer(
        depths=(12,), dims=(16,), num_heads=2, patch_size=16, image_size=224,
        token_reduction=TokenReduction.constant("pitome", 0.9, depth=12),
    )  # fmt: skip
    assert model.token_counts() == (178, 161, 145, 131, 118, 107, 97, 88, 80, 73, 66, 60)
    with pytest.raises(ValueError, match="ratio 0.4 must be in"):
        pitome_count(17, 1, 0.4)


def test_the_rule_needs_its_layer():
    tokens, sizes, keys = _inputs()
    spec = TokenReduction.constant("pitome", 0.75, depth=4)
    with pytest.raises(ValueError, match="depends on the layer"):
        apply_rule(spec, tokens, sizes, Signals(keys=keys), num_out=10, num_protected=1)
    out = apply_rule(spec, tokens, sizes, Signals(keys=keys), num_out=10, num_protected=1, layer=2)
    direct = pitome(tokens, sizes, Signals(keys=keys), num_out=10, num_protected=1, layer=2, depth=4)
    np.testing.assert_array_equal(out.tokens, direct.tokens)


def test_a_tiny_deit_runs_pitome_under_jit_and_its_sources_cover_every_patch():
    spec = TokenReduction.constant("pitome", 0.75, depth=2)
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=spec, return_sources=True,
    )  # fmt: skip
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    plain = model.clone(token_reduction=None, return_sources=False)  # the same parameters, a faster init
    variables = jax.jit(plain.init)(jax.random.key(1), images)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["reduction"]))(variables, images)
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    assert model.token_counts() == (13, 10)
    sources = state["reduction"]
    source = compose(sources["blocks_1"]["transform_1"][0], sources["blocks_0"]["transform_0"][0])  # [B, 10, 17]
    # merging: every input position goes into exactly one output token
    np.testing.assert_array_equal(np.asarray(source > 0).sum(axis=1), np.ones((2, 17)))
    np.testing.assert_array_equal(np.asarray(source[:, 0, 0]), np.ones(2))  # the class token stays itself


@pytest.mark.parametrize("ratio", [0.75, 0.9])
def test_tiny_deit_matches_the_official_pitome_logits(ratio):
    fixture = golden.load("pitome")
    spec = TokenReduction.constant("pitome", ratio, depth=golden.DEPTH, prop_attn=False)
    logits = golden.mixtok_logits(fixture, "model", spec)
    np.testing.assert_allclose(logits, fixture.arrays[f"ratio{ratio}:logits"], atol=1e-5)
    assert not np.allclose(logits, fixture.arrays["model:plain_logits"], atol=1e-2)  # the rule changed something


def test_the_rule_is_registered_with_its_official_source():
    spec = TokenReduction.constant("pitome", 0.9, depth=12).spec
    assert spec.fn is pitome_module.pitome and spec.place == "after_attention" and spec.layer_aware
    assert spec.official.startswith("hchautran/PiToMe")


def test_the_default_settings_are_the_papers_ratios_without_proportional_attention():
    schedules = TokenReduction.constant("pitome", 0.9, depth=12).spec.settings(12, 197, 1)
    assert [s.amounts for s in schedules] == [(r,) * 12 for r in (0.975, 0.95, 0.925, 0.9)]
    assert not schedules[0].proportional  # the official DeiT block never passes the sizes to its attention
    assert TokenReduction.parse("pitome:keep=0.9", 12) == TokenReduction.constant("pitome", 0.9, 12)
