"""EViT (mixtok.reduction.evit) against a direct numpy loop, its counts, and the official code's logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import evit as evit_module
from mixtok.reduction.base import Signals, TokenReduction, get_rule, token_counts
from tests.reduction import golden

evit = evit_module.evit


def _inputs(seed=0, batch=2, n=11, c=4):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(batch, n, c)).astype(np.float32)
    sizes = rng.integers(1, 4, size=(batch, n)).astype(np.float32)
    attention = rng.dirichlet(np.ones(n), size=batch).astype(np.float32)
    return tokens, sizes, attention


def _direct(tokens, sizes, attention, left, protected, fuse):
    """The official Block.forward, one image at a time: protected, top-`left` by class attention (descending),
    then sum(token * attention) over the rest."""
    out_tokens, out_sizes = [], []
    for x, s, a in zip(tokens, sizes, attention):
        candidates = list(range(protected, len(x)))
        order = sorted(candidates, key=lambda i: -a[i])[:left]
        rows, row_sizes = [x[i] for i in range(protected)] + [x[i] for i in order], [s[i] for i in range(protected)]
        row_sizes += [s[i] for i in order]
        if fuse:
            rest = [i for i in candidates if i not in order]
            rows.append(sum(a[i] * x[i] for i in rest))
            row_sizes.append(sum(s[i] for i in rest))
        out_tokens.append(np.stack(rows))
        out_sizes.append(np.array(row_sizes))
    return np.stack(out_tokens), np.stack(out_sizes)


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize("protected", [1, 2])
def test_evit_keeps_the_top_class_attention_tokens_in_descending_order_and_fuses_the_rest(fuse, protected):
    tokens, sizes, attention = _inputs()
    left = 6
    num_out = protected + left + int(fuse)
    out = evit(
        jnp.asarray(tokens),
        jnp.asarray(sizes),
        Signals(cls_attention=jnp.asarray(attention)),
        num_out=num_out,
        num_protected=protected,
        fuse_token=fuse,
    )
    want_tokens, want_sizes = _direct(tokens, sizes, attention, left, protected, fuse)
    np.testing.assert_allclose(out.tokens, want_tokens, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.sizes, want_sizes)
    # tokens == transform @ input tokens; protected tokens first and untouched.
    np.testing.assert_allclose(np.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.tokens[:, :protected], tokens[:, :protected])
    if fuse:  # the fused token carries every size that was not kept: the sizes still sum to the patches
        np.testing.assert_allclose(out.sizes.sum(1), sizes.sum(1))
    else:  # a dropped token's size is gone with it
        assert np.all(out.sizes.sum(1) < sizes.sum(1))


def test_evit_counts_follow_the_official_ceil_with_and_without_the_fused_token():
    # DeiT-S, keep 0.7 at layers 3, 6, 9: left_tokens = ceil(0.7 * (N - 1)) (evit.py Attention.forward).
    fused = TokenReduction.keep_at("evit", 0.7, (3, 6, 9), depth=12)
    dropped = TokenReduction.keep_at("evit", 0.7, (3, 6, 9), depth=12, options=(("fuse_token", False),))
    assert token_counts(fused, 197, 1, 12) == (197,) * 3 + (140,) * 3 + (100,) * 3 + (72,) * 3
    assert token_counts(dropped, 197, 1, 12) == (197,) * 3 + (139,) * 3 + (98,) * 3 + (69,) * 3
    parsed = TokenReduction.parse("evit:keep=0.7,layers=3/6/9,fuse_token=false", 12)  # the one-line form
    assert token_counts(parsed, 197, 1, 12) == token_counts(dropped, 197, 1, 12)
    assert get_rule("evit").count(197, 1, 1.0) == 197  # keep rate 1: the official layer does nothing


def test_evit_refuses_a_count_that_keeps_no_token():
    tokens, sizes, attention = _inputs()
    with pytest.raises(ValueError, match="evit: num_out 2 leaves 0 of the 10 unprotected tokens"):
        evit(tokens, sizes, Signals(cls_attention=attention), num_out=2, num_protected=1, fuse_token=True)


def test_evit_runs_under_jit_in_a_tiny_deit_and_sows_its_transform():
    reduction = TokenReduction.keep_at("evit", 0.5, (0,), depth=2)
    assert not reduction.proportional  # EViT has no proportional attention: the rule's default
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=5,
        token_reduction=reduction, return_sources=True,
    )  # fmt: skip
    assert model.token_counts() == (10, 10)  # 17 -> 1 + ceil(0.5 * 16) + 1 fused
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = {"params": model.init(jax.random.PRNGKey(0), x)["params"]}  # init sows a transform too
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["reduction"]))(variables, x)
    eager, _ = model.apply(variables, x, mutable=["reduction"])
    np.testing.assert_allclose(logits, eager, rtol=1e-5, atol=1e-6)
    sown = {"/".join(path): v for path, v in flatten_dict(state["reduction"]).items()}
    (transform,) = sown["blocks_0/transform_0"]
    assert transform.shape == (2, 10, 17)
    np.testing.assert_array_equal(transform[:, 0], np.eye(17)[[0, 0]])  # the class token first, alone
    # kept rows are one-hot; the fused row holds the class attention of the 8 tokens not kept (each < 1)
    np.testing.assert_array_equal(np.sort(transform[:, 1:9], axis=2)[:, :, -1], 1.0)
    assert np.all(np.count_nonzero(transform[:, 9], axis=1) == 8)


@pytest.mark.parametrize(("fuse", "rate", "layers"), [(True, 0.7, (1, 2)), (False, 0.5, (1, 3))])
def test_evit_matches_the_official_code_on_a_tiny_deit(fuse, rate, layers):
    fixture = golden.load("evit")
    reduction = TokenReduction.keep_at("evit", rate, layers, depth=golden.DEPTH, options=(("fuse_token", fuse),))
    logits = golden.mixtok_logits(fixture, "w", reduction)
    official = fixture.arrays[f"w:logits:{'fuse' if fuse else 'drop'}_{rate}"]
    np.testing.assert_allclose(logits, official, atol=1e-5, rtol=0)
    # and the reduction changed the logits (the fixture is not the unreduced model)
    assert np.abs(official - fixture.arrays["w:plain_logits"]).max() > 1e-3


@pytest.mark.parametrize("fuse", [True, False])
def test_evit_gives_the_official_blocks_tokens_in_the_official_order(fuse):
    # The official Block with its MLP's output zeroed returns the reorganised tokens: [class, kept tokens in
    # descending class attention, fused token], which the logits alone cannot check (attention ignores order).
    arrays = golden.load("evit").arrays
    tokens, cls_attn = arrays["block:tokens"], arrays["block:cls_attn"]
    official = arrays[f"block:{'fuse' if fuse else 'drop'}"]
    attention = np.concatenate([np.zeros_like(cls_attn[:, :1]), cls_attn], axis=1)  # token 0's own: unused
    out = evit(
        jnp.asarray(tokens),
        jnp.ones(tokens.shape[:2]),
        Signals(cls_attention=jnp.asarray(attention)),
        num_out=evit_module.evit_count(tokens.shape[1], 1, 0.6, fuse_token=fuse),
        num_protected=1,
        fuse_token=fuse,
    )
    np.testing.assert_allclose(out.tokens, official, atol=1e-6, rtol=0)
