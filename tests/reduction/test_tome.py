"""ToMe against a direct loop over the bipartite graph, the contract's invariants, and the official code's logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import Signals, TokenReduction, compose, token_counts, unmerge
from mixtok.reduction.tome import tome
from tests.reduction.golden import load, mixtok_logits


def direct_tome(x, sizes, metric, r, protected):
    """ToMe for one image, written as a loop over the bipartite graph (numpy, float64)."""
    n = len(x)
    unit = metric / np.linalg.norm(metric, axis=1, keepdims=True)
    a_nodes, b_nodes = list(range(0, n, 2)), list(range(1, n, 2))
    best = {}
    for a in a_nodes:
        if protected >= 1 and a == 0:
            best[a] = (-np.inf, b_nodes[0])
            continue
        candidates = [(unit[a] @ unit[b], b) for b in b_nodes if not (protected == 2 and b == 1)]
        score, b = max(candidates, key=lambda t: t[0])  # first maximum, as argmax
        best[a] = (score, b)
    order = sorted(a_nodes, key=lambda a: -best[a][0])
    merged, kept = order[:r], order[r:]
    if protected:
        kept = sorted(kept)
    groups = {b: [b] for b in b_nodes}
    for a in merged:
        groups[best[a][1]].append(a)
    outputs = [[a] for a in kept] + [groups[b] for b in b_nodes]
    if protected == 2:  # [unm[:1], dst[:1], unm[1:], dst[1:]]
        outputs = [outputs[0], outputs[len(kept)]] + outputs[1 : len(kept)] + outputs[len(kept) + 1 :]
    tokens = np.stack([sum(sizes[i] * x[i] for i in g) / sum(sizes[i] for i in g) for g in outputs])
    return tokens, np.array([sum(sizes[i] for i in g) for g in outputs]), outputs


@pytest.mark.parametrize("n, r, protected", [(11, 3, 0), (12, 5, 1), (13, 4, 2)])
def test_tome_equals_a_loop_over_the_bipartite_graph(n, r, protected):
    rng = np.random.default_rng(n)
    x = rng.normal(size=(2, n, 6)).astype(np.float32)
    sizes = rng.integers(1, 4, size=(2, n)).astype(np.float32)
    metric = rng.normal(size=(2, n, 5)).astype(np.float32)
    out = jax.jit(tome, static_argnames=("num_out", "num_protected"))(
        jnp.asarray(x), jnp.asarray(sizes), Signals(keys=jnp.asarray(metric)), num_out=n - r, num_protected=protected
    )
    for b in range(2):
        tokens, new_sizes, groups = direct_tome(x[b].astype(np.float64), sizes[b], metric[b], r, protected)
        np.testing.assert_allclose(out.tokens[b], tokens, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(out.sizes[b], new_sizes)
        # The transform holds each group's size-weighted average.
        expected = np.zeros((n - r, n))
        for m, g in enumerate(groups):
            expected[m, g] = sizes[b, g] / sizes[b, g].sum()
        np.testing.assert_allclose(out.transform[b], expected, rtol=1e-6)


def test_sizes_are_conserved_protected_tokens_lead_and_unmerge_restores_n():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 17, 8)), jnp.float32)
    sizes = jnp.ones((3, 17))
    out = tome(x, sizes, Signals(keys=x), num_out=10, num_protected=2)
    np.testing.assert_allclose(out.sizes.sum(axis=1), 17)
    np.testing.assert_array_equal(out.tokens[:, :2], x[:, :2])
    np.testing.assert_allclose(out.transform @ x, out.tokens, atol=1e-6)
    back = unmerge(out.tokens, out.transform)
    assert back.shape == x.shape
    # Every position gets the token it was merged into; unmerged positions get themselves back.
    np.testing.assert_allclose(back[:, :2], x[:, :2], atol=1e-6)
    second = tome(out.tokens, out.sizes, Signals(keys=out.tokens), num_out=6, num_protected=2)
    source = compose(second.transform, out.transform)
    np.testing.assert_allclose(source @ x, second.tokens, atol=1e-5)


def test_schedules_follow_the_official_parse_r():
    # tome/utils.py parse_r(12, (16, -1)): the "decreasing schedule" from 2r down to 0.
    assert TokenReduction.tome_schedule("tome", 16, 12, inflect=-1).amounts == tuple(
        int(32 + (0 - 32) / 11 * i) for i in range(12)
    )
    assert TokenReduction.tome_schedule("tome", 8, 12).amounts == (8,) * 12
    assert token_counts(TokenReduction.constant("tome", 100, 3), 17, 1, 3) == (9, 5, 3)  # r <= (N - P) // 2


def test_the_model_reduces_under_jit_with_static_shapes():
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=3,
        token_reduction=TokenReduction.constant("tome", 4, 2), return_sources=True,
    )  # fmt: skip
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), x)
    assert set(variables) == {"params"}  # the transforms are sown when applied, not at init
    (features, state) = jax.jit(lambda v, x: model.apply(v, x, method="features", mutable=["reduction"]))(variables, x)
    assert features.shape == (2, 9, 16) and model.token_counts() == (13, 9)
    transforms = state["reduction"]
    assert set(transforms) == {"blocks_0", "blocks_1"}
    assert [len(transforms[f"blocks_{i}"][f"transform_{i}"]) for i in range(2)] == [1, 1]


@pytest.mark.parametrize("name, tag, r", [("r2", "model", 2), ("r4", "model", 4), ("distilled_r3", "distilled", 3)])
def test_logits_equal_the_official_code_on_timms_deit(name, tag, r):
    """tests/fixtures/reduction/tome.npz: a tiny timm DeiT patched by facebookresearch/ToMe (`tome.patch.timm`)."""
    fixture = load("tome")
    distilled = tag == "distilled"
    logits = mixtok_logits(fixture, tag, TokenReduction.constant("tome", r, depth=4), distilled=distilled)
    np.testing.assert_allclose(logits, fixture.arrays[f"{name}:logits"], atol=1e-5)
    # The same weights without ToMe: timm's own DeiT logits, and different enough to make the check count.
    plain = mixtok_logits(fixture, tag, None, distilled=distilled)
    np.testing.assert_allclose(plain, fixture.arrays[f"{tag}:plain_logits"], atol=1e-5)
    assert np.abs(plain - logits).max() > 0.1
