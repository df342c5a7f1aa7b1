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


@pytest.mark.parametrize("class_token", [False, True])
def test_weighted_pagerank_is_the_leading_eigenvector_of_each_heads_transposed_attention(class_token):
    attention = _attention(np.random.default_rng(0), batch=2, heads=3, n=7)
    scores = np.asarray(zt.weighted_pagerank(jnp.asarray(attention), iterations=200, class_token=class_token))
    for a, s in zip(attention.reshape(-1, 7, 7).astype(np.float64), scores.reshape(-1, 7)):
        values, vectors = np.linalg.eig(a.T)
        leading = np.real(vectors[:, np.argmax(np.abs(values))])
        np.testing.assert_allclose(np.max(np.abs(values)), 1.0, atol=1e-6)  # a row-stochastic graph
        np.testing.assert_allclose(s, leading / leading.sum(), atol=2e-6)  # whatever the start
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)


def test_weighted_pagerank_steps_are_s_times_the_graph_from_the_class_token_start():
    attention = _attention(np.random.default_rng(1), batch=1, heads=2, n=5)
    for h in range(2):
        s = np.array([np.sqrt(5), 1, 1, 1, 1]) / (np.sqrt(5) + 4)  # the class token sqrt(N) times the others
        for _ in range(3):
            s = np.array([sum(attention[0, h, i, j] * s[i] for i in range(5)) for j in range(5)])
        got = zt.weighted_pagerank(jnp.asarray(attention), iterations=3, class_token=True)[0, h]
        np.testing.assert_allclose(got, s, atol=1e-7)


def test_eir_is_the_root_mean_square_over_the_heads_the_variance_filter_keeps():
    n = 4
    uniform = np.full(n, 1 / n)  # variance 0 (scaled to mean 1): filtered out as uninformative
    moderate = np.array([0.35, 0.25, 0.2, 0.2])  # scaled: [1.4, 1, .8, .8], variance 0.06: kept
    peaked = np.array([0.97, 0.01, 0.01, 0.01])  # scaled variance 2.82: filtered out as over-focused
    other = np.array([0.3, 0.3, 0.2, 0.2])  # scaled variance 0.04: kept
    scores = jnp.asarray(np.stack([uniform, moderate, peaked, other])[None], jnp.float32)
    np.testing.assert_allclose(zt.aggregate_heads(scores)[0], np.sqrt((moderate**2 + other**2) / 2), rtol=1e-6)
    everything = np.sqrt(np.mean(np.stack([uniform, moderate, peaked, other]) ** 2, axis=0))
    np.testing.assert_allclose(zt.aggregate_heads(scores, None)[0], everything, rtol=1e-6)
    nothing_passes = zt.aggregate_heads(scores, (5.0, 6.0))[0]  # no head in range: all of them count
    np.testing.assert_allclose(nothing_passes, everything, rtol=1e-6)


def _wpr(a, iterations, class_token):
    n = a.shape[-1]
    start = np.ones(n)
    if class_token:
        start[0] = np.sqrt(n)
    scores = []
    for graph in a:
        s = start / start.sum()
        for _ in range(iterations):
            s = np.array([sum(graph[i, j] * s[i] for i in range(n)) for j in range(n)])
        scores.append(s)
    return np.array(scores)


def _importance(a, iterations, class_token, heads, head_variance):
    if heads == "mean_graph":
        return _wpr(a.mean(0, keepdims=True), iterations, class_token)[0]
    s = _wpr(a, iterations, class_token)
    n = a.shape[-1]
    keep = [True] * len(s)
    if head_variance is not None:
        keep = [head_variance[0] <= np.var(h * n) <= head_variance[1] for h in s]
        keep = keep if any(keep) else [True] * len(s)
    return np.sqrt(sum(h**2 for h, k in zip(s, keep) if k) / sum(keep))


def _direct(tokens, sizes, attention, keys, num_out, protected, share, heads, head_variance):
    """I'-stage, S-stage, I-stage for one image at a time with python lists, as the paper describes them."""
    n = tokens.shape[1]
    r = n - num_out
    r_s = min(int(r * share), (n - protected) // 2)
    r_i = r - r_s
    cls = protected > 0
    out_tokens, out_sizes = [], []
    for x, sz, a, k in zip(tokens, sizes, attention, keys):
        first = _importance(a, 1, cls, heads, head_variance)
        ranked = sorted(range(protected, n), key=lambda j: (-first[j], j))
        half = (n - protected + 1) // 2
        group_b, group_a = ranked[:half], ranked[half:]
        unit = k / np.linalg.norm(k, axis=1, keepdims=True)
        best = {i: max(float(unit[i] @ unit[j]) for j in group_b) for i in group_a}
        pruned = sorted(group_a, key=lambda i: (-best[i], group_a.index(i)))[:r_s]
        left = sorted(set(range(n)) - set(pruned))
        sub = a[:, left][:, :, left]
        sub = sub / sub.sum(-1, keepdims=True)
        second = _importance(sub, 7, cls, heads, head_variance)
        order = sorted(range(protected, len(left)), key=lambda q: (-second[q], q))[: len(left) - protected - r_i]
        kept = sorted(left[q] for q in list(range(protected)) + order)
        out_tokens.append(x[kept])
        out_sizes.append(sz[kept])
    return np.stack(out_tokens), np.stack(out_sizes)


CASES = [  # (num_out, protected, similarity_share, heads, head_variance); (0.3, 0.6) filters some heads out here
    (9, 1, 0.5, "eir", (0.01, 0.7)),
    (8, 2, 0.5, "eir", (0.3, 0.6)),
    (10, 1, 0.0, "eir", None),
    (9, 1, 1.0, "mean_graph", None),
    (9, 0, 0.5, "eir", (0.3, 0.6)),
]


@pytest.mark.parametrize(("num_out", "protected", "share", "heads", "head_variance"), CASES)
def test_zero_tprune_prunes_by_similarity_then_importance_like_a_direct_loop(
    num_out, protected, share, heads, head_variance
):
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
        iterations=7,
        similarity_share=share,
        heads=heads,
        head_variance=head_variance,
    )
    want = _direct(tokens, sizes, attention, keys, num_out, protected, share, heads, head_variance)
    want_tokens, want_sizes = want
    np.testing.assert_array_equal(out.tokens, want_tokens)
    np.testing.assert_array_equal(out.sizes, want_sizes)  # pruning: kept sizes as they were, the rest gone
    np.testing.assert_allclose(np.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-6)
    np.testing.assert_array_equal(out.tokens[:, :protected], tokens[:, :protected])  # protected, first
    kept = out.transform.argmax(2)
    assert np.all(np.diff(kept, axis=1) > 0)  # the original order, no token twice


def test_stage_amounts_split_the_removed_tokens_and_refuse_impossible_ones():
    assert zt.stage_amounts(197, 1, 16, 0.5) == (8, 8)  # (S-stage, I-stage)
    assert zt.stage_amounts(197, 1, 15, 0.5) == (7, 8)
    assert zt.stage_amounts(11, 1, 9, 1.0) == (5, 4)  # A holds only floor(10 / 2) = 5 tokens
    with pytest.raises(ValueError, match="similarity_share 1.5 must be in"):
        zt.stage_amounts(197, 1, 16, 1.5)
    with pytest.raises(ValueError, match="removing 10 of 10 unprotected tokens"):
        zt.stage_amounts(11, 1, 10, 0.5)


def test_zero_tprune_runs_under_jit_between_the_blocks_of_a_tiny_deit():
    reduction = TokenReduction("zero_tprune", (4, 0), options=(("iterations", 10), ("similarity_share", 0.5)))
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=reduction, return_sources=True,
    )  # fmt: skip
    assert model.token_counts() == (13, 13)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = {"params": model.init(jax.random.PRNGKey(0), x)["params"]}
    maps, state = jax.jit(lambda v, x: model.apply(v, x, method="intermediates", mutable=["reduction"]))(variables, x)
    assert np.all(np.isfinite(maps[-1]))
    (transform,) = {"/".join(k): v for k, v in flatten_dict(state["reduction"]).items()}["blocks_0/transform_0"]
    assert transform.shape == (2, 13, 17)
    np.testing.assert_array_equal(transform.sum(2), 1.0)  # one-hot rows: a selection
    # The pruning layer sits after block 0's MLP: it selects from the unreduced block 0's output.
    plain = VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5)
    block0 = jax.jit(lambda v, x: plain.apply(v, x, method="intermediates")[0])(variables, x)
    np.testing.assert_allclose(maps[0], np.einsum("bmn,bnc->bmc", transform, block0), rtol=1e-5, atol=1e-5)
