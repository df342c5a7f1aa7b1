"""Zero-TPrune (mixtok.reduction.zero_tprune): WPR against numpy's eigenvector, both stages against a numpy loop.

No official code is public (see the module docstring), so there is no golden fixture: the checks are the
paper's equations, computed independently.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import zero_tprune as zt
from mixtok.reduction.base import Signals, TokenReduction


def _attention(rng, batch, heads, n, sharpness=1.0):
    logits = sharpness * rng.normal(size=(batch, heads, n, n))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def test_weighted_pagerank_is_the_leading_eigenvector_of_the_transposed_head_mean_attention():
    attention = _attention(np.random.default_rng(0), batch=3, heads=2, n=7, sharpness=2.0)
    scores = np.asarray(zt.weighted_pagerank(jnp.asarray(attention), iterations=100))
    for a, s in zip(attention.mean(1).astype(np.float64), scores):
        values, vectors = np.linalg.eig(a.T)
        leading = np.real(vectors[:, np.argmax(np.abs(values))])
        np.testing.assert_allclose(np.max(np.abs(values)), 1.0, atol=1e-6)  # a row-stochastic graph
        np.testing.assert_allclose(s, leading / leading.sum(), atol=1e-6)
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-6)


def test_weighted_pagerank_steps_are_s_times_the_head_mean_graph():
    attention = _attention(np.random.default_rng(1), batch=1, heads=3, n=5)
    s = np.full(5, 0.2)
    for _ in range(3):
        s = np.array([sum(attention[0].mean(0)[i, j] * s[i] for i in range(5)) for j in range(5)])
    np.testing.assert_allclose(zt.weighted_pagerank(jnp.asarray(attention), iterations=3)[0], s, atol=1e-7)


def _direct(tokens, sizes, attention, keys, num_out, protected, iterations, share):
    """Both stages for one image at a time with python lists: the paper's description, step by step."""
    n = tokens.shape[1]
    r = n - num_out
    r_s = min(int(r * share), n - protected - r)
    r_i = r - r_s
    out_tokens, out_sizes = [], []
    for x, sz, a, k in zip(tokens, sizes, attention, keys):
        graph = a.mean(0)
        s = [1.0 / n] * n
        for _ in range(iterations):
            s = [sum(graph[i, j] * s[i] for i in range(n)) for j in range(n)]
        ranked = sorted(range(protected, n), key=lambda j: (-s[j], j))
        survivors = ranked[: len(ranked) - r_i]
        half = (len(survivors) + 1) // 2
        group_b, group_a = survivors[:half], survivors[half:]

        unit = k / np.linalg.norm(k, axis=1, keepdims=True)
        best = {i: max(float(unit[i] @ unit[j]) for j in group_b) for i in group_a}
        pruned = sorted(group_a, key=lambda i: (-best[i], group_a.index(i)))[:r_s]
        kept = list(range(protected)) + sorted(set(survivors) - set(pruned))
        out_tokens.append(x[kept])
        out_sizes.append(sz[kept])
    return np.stack(out_tokens), np.stack(out_sizes)


@pytest.mark.parametrize(("num_out", "protected", "share"), [(9, 1, 0.5), (8, 2, 0.5), (10, 1, 0.0), (9, 1, 1.0)])
def test_zero_tprune_prunes_by_importance_then_by_similarity_like_a_direct_loop(num_out, protected, share):
    rng = np.random.default_rng(2)
    b, n, c = 2, 13, 4
    tokens = rng.normal(size=(b, n, c)).astype(np.float32)
    sizes = rng.integers(1, 4, size=(b, n)).astype(np.float32)
    attention = _attention(rng, b, 3, n, sharpness=2.0)
    keys = rng.normal(size=(b, n, 3)).astype(np.float32)
    out = zt.zero_tprune(
        jnp.asarray(tokens),
        jnp.asarray(sizes),
        Signals(attention=jnp.asarray(attention), keys=jnp.asarray(keys)),
        num_out=num_out,
        num_protected=protected,
        iterations=20,
        similarity_share=share,
    )
    want_tokens, want_sizes = _direct(tokens, sizes, attention, keys, num_out, protected, 20, share)
    np.testing.assert_array_equal(out.tokens, want_tokens)
    np.testing.assert_array_equal(out.sizes, want_sizes)  # pruning: kept sizes as they were, the rest gone
    np.testing.assert_allclose(np.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-6)
    np.testing.assert_array_equal(out.tokens[:, :protected], tokens[:, :protected])  # protected, first
    kept = out.transform.argmax(2)
    assert np.all(np.diff(kept, axis=1) > 0)  # the original order, no token twice


def test_stage_amounts_split_the_removed_tokens_and_refuse_impossible_ones():
    assert zt.stage_amounts(197, 1, 16, 0.5) == (8, 8)
    assert zt.stage_amounts(197, 1, 15, 0.5) == (8, 7)
    assert zt.stage_amounts(11, 1, 6, 1.0) == (2, 4)  # A holds only floor((10 - 2) / 2) = 4 tokens
    with pytest.raises(ValueError, match="similarity_share 1.5 must be in"):
        zt.stage_amounts(197, 1, 16, 1.5)
    with pytest.raises(ValueError, match="removing 10 of 10 unprotected tokens"):
        zt.stage_amounts(11, 1, 10, 0.5)


def test_zero_tprune_runs_under_jit_between_the_blocks_of_a_tiny_deit():
    reduction = TokenReduction(
        "zero_tprune", (4, 0), prop_attn=False, options=(("iterations", 10), ("similarity_share", 0.5))
    )
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=reduction, return_sources=True,
    )  # fmt: skip
    assert model.token_counts() == (13, 13)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = {"params": model.init(jax.random.PRNGKey(0), x)["params"]}
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["reduction"]))(variables, x)
    eager, _ = model.apply(variables, x, mutable=["reduction"])
    np.testing.assert_allclose(logits, eager, rtol=1e-5, atol=1e-6)
    (transform,) = {"/".join(k): v for k, v in flatten_dict(state["reduction"]).items()}["blocks_0/transform_0"]
    assert transform.shape == (2, 13, 17)
    np.testing.assert_array_equal(transform.sum(2), 1.0)  # one-hot rows: a selection
    # The pruning layer sits after block 0's MLP: it selects from the unreduced block 0's output.
    plain = VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5)
    block0 = plain.apply(variables, x, method="intermediates")[0]
    reduced = model.apply(variables, x, method="intermediates")[0]
    np.testing.assert_allclose(reduced, np.einsum("bmn,bnc->bmc", transform, block0), rtol=1e-5, atol=1e-5)
