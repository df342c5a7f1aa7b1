"""MCTF (mixtok.reduction.mctf) against a direct loop over the official algorithm and the official code's logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import mctf as mctf_module
from mixtok.reduction.base import Signals, TokenReduction
from mixtok.reduction.mctf import mctf, mctf_count
from tests.reduction import golden


def _best(rows, cols, score, r):
    """Each row's best column; rows sorted by that score, descending: (moved rows with their column, kept rows)."""
    best = {i: max(cols, key=lambda j: score(i, j)) for i in rows}
    ranked = sorted(rows, key=lambda i: -score(i, best[i]))
    return [(i, best[i]) for i in ranked[:r]], ranked[r:]


def reference_groups(x, sizes, attention, r, p, tau=(1.0, 20.0, 40.0), bidirection=True):
    """The official matching for one image as loops: the input tokens each output token is made of."""
    n = len(x)
    unit = x / np.linalg.norm(x, axis=-1, keepdims=True)
    info = 1 / attention.mean(axis=(0, 1))
    info = info / info.max()
    inverse = (1 / sizes) / (1 / sizes).max()

    def score(i, j):  # i in A (even), j in B (odd), token indices
        if i < p:
            return -np.inf
        s = ((unit[i] @ unit[j] + 1) / 2) ** (1 / tau[0])
        return s * (info[i] * info[j]) ** (1 / tau[1]) * (inverse[i] * inverse[j]) ** (1 / tau[2])

    a_set, b_set = list(range(0, n, 2)), list(range(1, n, 2))
    r1, r2 = (r // 2, r - r // 2) if bidirection else (r, 0)
    moved, kept_a = _best(a_set, b_set, score, r1)
    if p:
        kept_a = sorted(kept_a)
    b_groups = {j: [j] + [i for i, d in moved if d == j] for j in b_set}
    if not bidirection:
        return [[i] for i in kept_a] + [b_groups[j] for j in b_set]
    moved2, kept_b = _best(b_set, kept_a, lambda j, i: score(i, j), r2)
    a_groups = {i: [i] + [g for j, d in moved2 if d == i for g in b_groups[j]] for i in kept_a}
    return [a_groups[i] for i in kept_a] + [b_groups[j] for j in kept_b]


def reference(tokens, sizes, attention, r, p, pooling="attention", bidirection=True):
    outs = []
    for x, s, a in zip(tokens, sizes, attention, strict=True):
        groups = reference_groups(x, s, a, r, p, bidirection=bidirection)
        w = {"attention": a.mean(axis=(0, 1)) * s / s.max(), "size": s, "mean": np.ones_like(s)}[pooling]
        transform = np.zeros((len(groups), len(x)))
        member = np.zeros((len(groups), len(x)))
        for m, g in enumerate(groups):
            transform[m, g] = w[g] / w[g].sum()
            member[m, g] = 1.0
        ahead = np.einsum("mq,hqk,nk->hmn", transform, a, member)  # T A S^T: queries pooled, keys summed
        outs.append((transform @ x, member @ s, transform, ahead))
    return [np.stack(o) for o in zip(*outs, strict=True)]


def _inputs(n=15, c=6, heads=2, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(batch, n, c)).astype(np.float32)
    sizes = rng.integers(1, 5, size=(batch, n)).astype(np.float32)
    attention = np.asarray(jax.nn.softmax(rng.normal(size=(batch, heads, n, n)).astype(np.float32), axis=-1))
    return tokens, sizes, attention


@pytest.mark.parametrize(
    "num_protected,r,pooling,bidirection",
    [(1, 5, "attention", True), (0, 4, "attention", True), (1, 4, "size", False), (1, 6, "mean", True)],
)
def test_mctf_matches_a_loop_over_the_official_algorithm(num_protected, r, pooling, bidirection):
    tokens, sizes, attention = _inputs()
    n = tokens.shape[1]
    out = mctf(
        jnp.asarray(tokens),
        jnp.asarray(sizes),
        Signals(attention=jnp.asarray(attention)),
        num_out=n - r,
        num_protected=num_protected,
        pooling=pooling,
        bidirection=bidirection,
    )
    want_tokens, want_sizes, want_transform, want_ahead = reference(
        tokens, sizes, attention, r, num_protected, pooling, bidirection
    )
    np.testing.assert_allclose(out.transform, want_transform, atol=1e-6)
    np.testing.assert_allclose(out.tokens, want_tokens, atol=1e-5)
    np.testing.assert_allclose(out.sizes, want_sizes, atol=1e-6)
    np.testing.assert_allclose(out.attention, want_ahead, atol=1e-6)
    # the contract: tokens == transform @ input tokens; sizes conserved; the merged attention rows still sum to 1
    np.testing.assert_allclose(jnp.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-5)
    np.testing.assert_allclose(out.sizes.sum(axis=1), sizes.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out.attention.sum(axis=-1), np.ones(out.attention.shape[:-1]), atol=1e-5)
    # the class token stays first, itself (w x / w: to rounding, as in the official code)
    np.testing.assert_allclose(out.tokens[:, :num_protected], tokens[:, :num_protected], rtol=1e-6)
    np.testing.assert_array_equal(out.transform[:, :num_protected, :num_protected] == 1, True)


def test_without_one_step_ahead_the_block_recomputes_attention():
    tokens, sizes, attention = _inputs()
    out = mctf(tokens, sizes, Signals(attention=attention), num_out=11, num_protected=1, one_step_ahead=False)
    assert out.attention is None


def test_counts_follow_the_official_caps():
    # utils/mctf.py: if t - r < 10: r = t - 10; r = min(r, (t - P) // 2); a fraction r < 1 of the t - P tokens
    assert mctf_count(197, 1, 16) == 181
    assert mctf_count(21, 1, 16) == 11  # at most half
    assert mctf_count(17, 1, 8) == 10  # at least 10 tokens stay
    assert mctf_count(9, 1, 2) == 9  # r = 9 - 10 < 0: the layer is left alone
    assert mctf_count(197, 1, 0.35) == 197 - int(196 * 0.35)
    model = VisionTransformer(
        depths=(12,), dims=(16,), num_heads=2, patch_size=16, image_size=224,
        token_reduction=TokenReduction("mctf", (0,) + (16,) * 11),
    )  # fmt: skip
    assert model.token_counts() == (197, 181, 165, 149, 133, 117, 101, 85, 69, 53, 37, 21)


def test_more_than_a_class_token_is_refused():
    tokens, sizes, attention = _inputs()
    with pytest.raises(ValueError, match="num_protected 0 or 1"):
        mctf(tokens, sizes, Signals(attention=attention), num_out=11, num_protected=2)


def test_a_tiny_deit_runs_mctf_under_jit_before_attention():
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=TokenReduction("mctf", (0, 4)), return_sources=True,
    )  # fmt: skip
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    plain = model.clone(token_reduction=None, return_sources=False)  # the same parameters, a faster init
    variables = jax.jit(plain.init)(jax.random.key(1), images)
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["reduction"]))(variables, images)
    assert logits.shape == (2, 5) and np.isfinite(logits).all()
    assert model.token_counts() == (17, 13)
    transform = state["reduction"]["blocks_1"]["transform_1"][0]  # [B, 13, 17]
    np.testing.assert_allclose(transform.sum(axis=-1), np.ones((2, 13)), atol=1e-6)  # weighted averages
    np.testing.assert_array_equal(np.asarray(transform > 0).sum(axis=1), np.ones((2, 17)))  # one token each


@pytest.mark.parametrize(
    "tag,r,options",
    [
        ("eval_r3", 3, {}),
        ("eval_r4", 4, {}),
        ("precise_r3", 3, dict(one_step_ahead=False, bidirection=False, pooling="size")),
    ],
)
def test_tiny_deit_matches_the_official_mctf_logits(tag, r, options):
    fixture = golden.load("mctf")
    spec = TokenReduction("mctf", (0,) + (r,) * (golden.DEPTH - 1), options=tuple(options.items()))
    logits = golden.mixtok_logits(fixture, "model", spec)
    np.testing.assert_allclose(logits, fixture.arrays[f"{tag}:logits"], atol=1e-5)
    assert not np.allclose(logits, fixture.arrays["model:plain_logits"], atol=1e-2)  # the rule changed something


def test_the_rule_is_registered_before_attention():
    spec = TokenReduction("mctf", (0, 16)).spec
    assert spec.fn is mctf_module.mctf and spec.place == "before_attention" and spec.signals == ("attention",)
    assert spec.official.startswith("mlvlab/MCTF")


def test_the_default_settings_leave_the_first_block_alone_with_proportional_attention():
    schedules = TokenReduction("mctf", (0, 16)).spec.settings(12, 197, 1)
    assert [s.amounts for s in schedules] == [(0,) + (r,) * 11 for r in (8, 12, 16)]
    assert schedules[0].proportional  # mctf_type[3] = 1 in the official eval
