"""DivPrune (mixtok.reduction.divprune): the greedy sequence against a numpy loop and the official code's picks,
its 2-approximation of brute-force max-min selection, and the rule inside a tiny DeiT."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import divprune as dp
from mixtok.reduction.base import Signals, TokenReduction, token_counts
from tests.reduction import golden


def _greedy(features, k):
    """Max-min greedy with python loops: first the token farthest from its nearest other token, then each
    time the token farthest from the picked set (1 - cosine similarity)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    d = 1.0 - unit @ unit.T
    n = len(d)
    first = max(range(n), key=lambda j: (min(d[i, j] for i in range(n) if i != j), -j))
    picked = [first]
    while len(picked) < k:
        picked.append(max(range(n), key=lambda j: (min(d[i, j] for i in picked), -j)))
    return picked


def _min_angle(features, subset):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    return min(np.arccos(np.clip(unit[i] @ unit[j], -1, 1)) for i, j in itertools.combinations(subset, 2))


@pytest.mark.parametrize("seed", range(4))
def test_divprune_picks_the_greedy_max_min_sequence_of_a_direct_loop(seed):
    features = np.random.default_rng(seed).normal(size=(12, 3)).astype(np.float64)
    picked = dp.divprune_select(jnp.asarray(features, jnp.float32), 5)
    assert np.asarray(picked).tolist() == _greedy(features, 5)


@pytest.mark.parametrize("seed", range(6))
def test_divprune_is_within_the_greedy_2_approximation_of_the_brute_force_max_min_subset(seed):
    # Greedy farthest-point selection is a 2-approximation of max-min dispersion in a metric space. 1 - cos is
    # not a metric, but it is increasing in the angle, which is (on the sphere), and the greedy's choices
    # depend only on the order of distances: so the bound holds for the angles of the picked set.
    features = np.random.default_rng(10 + seed).normal(size=(9, 3))
    k = 4
    picked = np.asarray(dp.divprune_select(jnp.asarray(features, jnp.float32), k)).tolist()
    best = max(_min_angle(features, s) for s in itertools.combinations(range(9), k))
    achieved = _min_angle(features, picked)
    assert best / 2 - 1e-6 <= achieved <= best + 1e-6


def test_divprune_matches_the_official_selection_on_random_tokens():
    fixture = golden.load("divprune")
    for i, (n, _, ratio) in enumerate(fixture.manifest["cases"]):
        features = fixture.arrays[f"case{i}:features"]
        official = fixture.arrays[f"case{i}:selected"]
        assert dp.divprune_count(n + 1, 1, ratio) - 1 == len(official)  # int(round(ratio * L))
        np.testing.assert_array_equal(dp.divprune_select(jnp.asarray(features), len(official)), official)


def test_divprune_keeps_protected_tokens_first_and_the_picked_ones_in_their_order():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 10, 4)).astype(np.float32)
    sizes = rng.integers(1, 4, size=(2, 10)).astype(np.float32)
    out = dp.divprune(jnp.asarray(tokens), jnp.asarray(sizes), Signals(), num_out=6, num_protected=2)
    for b in range(2):
        want = [0, 1] + sorted(p + 2 for p in _greedy(tokens[b, 2:].astype(np.float64), 4))
        np.testing.assert_array_equal(out.tokens[b], tokens[b, want])
        np.testing.assert_array_equal(out.sizes[b], sizes[b, want])  # pruning: kept sizes, the rest gone
    np.testing.assert_allclose(np.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-6)
    with pytest.raises(ValueError, match="divprune: num_out 2 keeps 0 of the 8 unprotected tokens"):
        dp.divprune(tokens, sizes, Signals(), num_out=2, num_protected=2)


def test_divprune_counts_round_like_the_official_code():
    reduction = TokenReduction.keep_at("divprune", 0.5, (0, 1), depth=3)
    # 17 tokens: 1 + round(0.5 * 16) = 9, then 1 + round(0.5 * 8) = 5; round(2.5) = 2 (halves to even)
    assert token_counts(reduction, 17, 1, 3) == (9, 5, 5)
    assert dp.divprune_count(6, 1, 0.5) == 1 + 2


def test_divprune_runs_under_jit_in_a_tiny_deit():
    reduction = TokenReduction.keep_at("divprune", 0.5, (0,), depth=2)
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=reduction, return_sources=True,
    )  # fmt: skip
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = {"params": model.init(jax.random.PRNGKey(0), x)["params"]}
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["reduction"]))(variables, x)
    assert np.all(np.isfinite(logits))
    (transform,) = {"/".join(k): v for k, v in flatten_dict(state["reduction"]).items()}["blocks_0/transform_0"]
    assert transform.shape == (2, 9, 17)
    kept = np.asarray(transform).argmax(2)
    assert np.all(kept[:, 0] == 0) and np.all(np.diff(kept, axis=1) > 0)
    grads = jax.jit(jax.grad(lambda v: jnp.sum(model.apply(v, x))))(variables)  # through the kept tokens
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
