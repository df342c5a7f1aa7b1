"""DiffRate (mixtok.reduction.diffrate and its search, mixtok.reduction.diffrate_search): a numpy loop of the
official eval branch, the contract's invariants, the released schedules, and the official code's outputs
(tests/fixtures/reduction/diffrate.npz, made by tools/make_reduction_fixtures.py --rule diffrate)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import timm as timm_interop
from mixtok.models.vit import VisionTransformer
from mixtok.reduction import diffrate
from mixtok.reduction.base import Signals, TokenReduction, apply_rule, get_rule, token_counts
from mixtok.reduction.diffrate_search import DiffRateSearchViT, kept_numbers
from tests.reduction import golden


def reference(tokens, sizes, cls_attention, prune_to, merge_to, num_protected):
    """The official eval branch, one image and one source token at a time (DiffRate/patch/deit.py, merge.py)."""
    batch, n, _ = tokens.shape
    outs, out_sizes, transforms = [], [], []
    for b in range(batch):
        rest = sorted(range(num_protected, n), key=lambda i: (-cls_attention[b, i], i))
        order = (list(range(num_protected)) + rest)[: min(n, prune_to)]
        pruned = len(order)
        kept = min(pruned, merge_to)
        members = [[order[j]] for j in range(kept)]
        size = [float(sizes[b, order[j]]) for j in range(kept)]
        unit = tokens[b] / np.linalg.norm(tokens[b], axis=-1, keepdims=True)
        for i in range(kept, pruned):
            best, best_sim = None, -np.inf
            for j in range(num_protected, kept):
                sim = float(unit[order[i]] @ unit[order[j]])
                if sim > best_sim:
                    best, best_sim = j, sim
            members[best].append(order[i])
            size[best] += float(sizes[b, order[i]]) * best_sim
        transform = np.zeros((kept, n))
        for j, group in enumerate(members):
            transform[j, group] = 1.0 / len(group)
        outs.append(transform @ tokens[b])
        out_sizes.append(size)
        transforms.append(transform)
    return np.stack(outs), np.array(out_sizes), np.stack(transforms)


def random_layer(seed, batch=2, n=11, channels=6):
    rng = np.random.default_rng(seed)
    tokens = rng.normal(size=(batch, n, channels)).astype(np.float32)
    sizes = rng.uniform(1.0, 3.0, size=(batch, n)).astype(np.float32)
    attention = rng.dirichlet(np.ones(n), size=batch).astype(np.float32)
    return tokens, sizes, attention


def run_rule(tokens, sizes, attention, amount, num_protected):
    num_out = diffrate.kept_count(tokens.shape[1], num_protected, amount)
    out = diffrate.diffrate(
        jnp.asarray(tokens),
        jnp.asarray(sizes),
        Signals(cls_attention=jnp.asarray(attention)),
        num_out=num_out,
        num_protected=num_protected,
        amount=amount,
    )
    return out, num_out


AMOUNTS = [(11, 6), (8, 5), (7, 9), (9, 9), (20, 4), (4, 20), (3, 3)]


@pytest.mark.parametrize("num_protected", [1, 2])
@pytest.mark.parametrize("amount", AMOUNTS)
def test_rule_matches_the_official_eval_branch_written_as_a_loop(amount, num_protected):
    tokens, sizes, attention = random_layer(seed=sum(amount) + num_protected)
    out, num_out = run_rule(tokens, sizes, attention, amount, num_protected)
    want_tokens, want_sizes, want_transform = reference(tokens, sizes, attention, *amount, num_protected)
    assert out.tokens.shape == (2, num_out, 6) and num_out == min(11, *amount)
    np.testing.assert_allclose(np.asarray(out.tokens), want_tokens, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out.sizes), want_sizes, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.transform), want_transform, atol=1e-7)


@pytest.mark.parametrize("amount", [(11, 6), (8, 8), (9, 4)])
def test_transform_times_input_tokens_is_the_output(amount):
    tokens, sizes, attention = random_layer(seed=7)
    out, _ = run_rule(tokens, sizes, attention, amount, 1)
    np.testing.assert_allclose(np.einsum("bmn,bnc->bmc", out.transform, tokens), out.tokens, atol=1e-6)


def test_pruning_alone_keeps_the_most_attended_tokens_and_their_sizes():
    tokens, sizes, attention = random_layer(seed=3)
    out, _ = run_rule(tokens, sizes, attention, (6, 6), 1)
    for b in range(2):
        kept = [0] + list(np.argsort(-attention[b, 1:], kind="stable")[:5] + 1)
        np.testing.assert_array_equal(np.asarray(out.tokens[b]), tokens[b, kept])
        np.testing.assert_array_equal(np.asarray(out.sizes[b]), sizes[b, kept])  # the dropped sizes go


def test_merged_sizes_add_each_source_size_times_its_similarity():
    rng = np.random.default_rng(5)
    originals = rng.normal(size=(1, 5, 6)).astype(np.float32)
    scale = rng.uniform(0.5, 2.0, size=(1, 5, 1)).astype(np.float32)
    tokens = np.concatenate([rng.normal(size=(1, 1, 6)), originals, originals * scale], axis=1).astype(np.float32)
    sizes = rng.uniform(1.0, 3.0, size=(1, 11)).astype(np.float32)
    attention = np.array([[0.3] + [0.1] * 5 + [0.04] * 5], np.float32)  # the originals rank above their copies
    out, _ = run_rule(tokens, sizes, attention, (11, 6), 1)
    # each copy (cosine 1) goes to its original: sizes add whole, tokens are the plain mean of the pair
    np.testing.assert_allclose(np.asarray(out.sizes[0, 1:]), sizes[0, 1:6] + sizes[0, 6:], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.tokens[0, 1:]), (originals[0] + originals[0] * scale[0]) / 2, atol=1e-6)
    # with dissimilar sources the sizes shrink: similarity < 1 (the official "proportional attention by similarity")
    tokens, sizes, attention = random_layer(seed=4)
    out, _ = run_rule(tokens, sizes, attention, (11, 5), 1)
    assert (np.asarray(out.sizes).sum(axis=1) < sizes.sum(axis=1)).all()


@pytest.mark.parametrize("num_protected", [1, 2])
def test_protected_tokens_stay_first_and_are_never_merged_or_dropped(num_protected):
    tokens, sizes, attention = random_layer(seed=11)
    attention[:, num_protected] = 0.0  # the least attended token: dropped or merged, never kept alone
    out, _ = run_rule(tokens, sizes, attention, (6, 3), num_protected)
    transform = np.asarray(out.transform)
    np.testing.assert_array_equal(np.asarray(out.tokens[:, :num_protected]), tokens[:, :num_protected])
    np.testing.assert_array_equal(
        transform[:, :num_protected, :num_protected], np.eye(num_protected)[None].repeat(2, 0)
    )
    assert not transform[:, num_protected:, :num_protected].any()  # nothing merged into a protected token


def test_count_is_the_smallest_of_the_tokens_and_both_kept_counts():
    rule = get_rule("diffrate")
    assert rule.amount_kind == "kept_counts" and rule.takes_amount and rule.place == "after_attention"
    assert rule.prop_attn  # the official attention adds log(size) in every block
    assert [rule.count(197, 1, a) for a in [(197, 197), (150, 160), (160, 150), (200, 300)]] == [197, 150, 150, 197]
    counts = token_counts(diffrate.schedule("deit_small_patch16_224", 2.9), 197, 1, 12)
    assert counts == (197, 194, 176, 156, 141, 133, 121, 107, 88, 64, 56, 3)


@pytest.mark.parametrize("amount", [5, (5,), (1, 3), (4, 2.5), (True, 4), "ab"])
def test_a_bad_amount_is_one_clear_error(amount):
    with pytest.raises(ValueError, match="pair \\(prune_to, merge_to\\)"):
        diffrate.kept_count(10, 1, amount)


def test_a_layer_that_ranks_by_the_class_token_needs_one():
    tokens, sizes, attention = random_layer(seed=1)
    with pytest.raises(ValueError, match="num_protected >= 1"):
        diffrate.diffrate(tokens, sizes, Signals(cls_attention=attention), num_out=5, num_protected=0, amount=(5, 5))


def test_apply_rule_hands_the_rule_its_layer_amount():
    tokens, sizes, attention = random_layer(seed=2)
    reduction = diffrate.from_counts((11, 9), (11, 6))
    out = apply_rule(reduction, tokens, sizes, Signals(cls_attention=attention), num_out=6, num_protected=1, layer=1)
    want, _, _ = reference(tokens, sizes, attention, 9, 6, 1)
    np.testing.assert_allclose(np.asarray(out.tokens), want, atol=1e-6)
    with pytest.raises(ValueError, match="layer="):
        apply_rule(reduction, tokens, sizes, Signals(cls_attention=attention), num_out=6, num_protected=1)


def test_runs_under_jit_on_a_tiny_deit():
    reduction = diffrate.from_counts((17, 12), (14, 8))
    model = VisionTransformer(
        depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=3, token_reduction=reduction
    )
    images = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(1), images)
    logits = jax.jit(model.apply)(variables, images)
    assert model.token_counts() == (14, 8) and logits.shape == (2, 3) and np.isfinite(logits).all()
    plain = VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=3)
    assert not np.allclose(logits, plain.apply(variables, images), atol=1e-4)  # the rule changed something


def test_released_schedules_have_the_readme_flops():
    # OpenGVLab/DiffRate README: "Acc@1 79.538 ... flops 2.905" (DeiT-S, 2.9) and "flops 11.517" (DeiT-B, 11.5)
    small = diffrate.flops(diffrate.schedule("deit_small_patch16_224", 2.9), num_tokens=197, dim=384, patch_size=16,
                           num_classes=1000)  # fmt: skip
    base = diffrate.flops(diffrate.schedule("ViT-B-DeiT", 11.5), num_tokens=197, dim=768, patch_size=16,
                          num_classes=1000)  # fmt: skip
    assert round(small / 1e9, 3) == 2.905 and round(base / 1e9, 3) == 11.517
    with pytest.raises(ValueError, match=r"released: \[2.3, 2.5, 2.7, 2.9, 3.1\]"):
        diffrate.schedule("deit_small_patch16_224", 3.0)
    with pytest.raises(ValueError, match="no released DiffRate schedule for model"):
        diffrate.schedule("caformer_s36", 5.6)


@pytest.mark.parametrize("tag", ["a", "b"])
def test_matches_the_official_code_on_the_tiny_deit(tag):
    fixture = golden.load("diffrate")
    prune, merge = fixture.manifest["settings"][tag]
    reduction = diffrate.from_counts(prune, merge)
    logits = golden.mixtok_logits(fixture, "a", reduction)  # every setting has setting a's weights and images
    np.testing.assert_allclose(logits, fixture.arrays[f"{tag}:logits"], atol=1e-5)
    assert np.abs(fixture.arrays[f"{tag}:logits"] - fixture.arrays[f"{tag}:plain_logits"]).max() > 1e-2
    flops = diffrate.flops(reduction, num_tokens=17, dim=32, patch_size=8, num_classes=5)
    assert flops == float(fixture.arrays[f"{tag}:flops"])


def test_search_forward_and_rate_gradients_match_the_official_training_branch():
    fixture = golden.load("diffrate")
    arrays, search = fixture.arrays, fixture.manifest["search"]
    variables = timm_interop.convert(
        "deit_tiny_patch16_224", golden.state_dict(fixture, "a"), num_classes=5, **golden.MIXTOK_TINY
    )
    model = DiffRateSearchViT(granularity=search["granularity"], num_classes=5, **golden.MIXTOK_TINY)
    rates = {name: jnp.asarray(arrays[f"search:{name}"]) for name in ("prune_logits", "merge_logits")}

    def loss(rates):
        logits, sown = model.apply(
            {"params": {**variables["params"], **rates}}, arrays["a:images"], train=True, mutable=["diffrate"]
        )
        flops = sown["diffrate"]["flops"][0]
        return jnp.sum(logits * arrays["search:weights"]) + (flops / search["flops_unit"] - search["target"]) ** 2, (
            logits,
            flops,
        )

    (_, (logits, flops)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(rates)
    np.testing.assert_allclose(logits, arrays["search:logits"], atol=1e-5)
    assert float(flops) == float(arrays["search:flops"])
    for name in ("prune", "merge"):
        np.testing.assert_allclose(grads[f"{name}_logits"], arrays[f"search:{name}_grad"], atol=1e-5)
    counts = kept_numbers(arrays["search:prune_logits"], arrays["search:merge_logits"], 16, search["granularity"])
    np.testing.assert_array_equal(np.array(counts), arrays["search:kept"])


def test_a_schedule_is_a_hashable_model_attribute():
    reduction = diffrate.from_counts([17, 12], [14, 8])
    assert isinstance(reduction, TokenReduction) and reduction.amounts == ((17, 14), (12, 8))
    hash(reduction)


def test_the_one_line_form_takes_pairs():
    parsed = TokenReduction.parse("diffrate:amounts=17+17/15+12/11+9/7+3", 4)
    assert parsed == diffrate.from_counts((17, 15, 11, 7), (17, 12, 9, 3))


def test_default_settings_are_the_released_deit_s_schedules_on_deit_s_and_resampled_elsewhere():
    released = [diffrate.schedule("deit_small_patch16_224", g) for g in (2.3, 2.7, 3.1)]
    assert get_rule("diffrate").settings(12, 197, 1) == released
    tiny = diffrate.default_settings(4, 17, 1)[0]  # blocks 0, 4, 7, 11 of the 2.3 GFLOPs schedule, of 16 patches
    official = diffrate.SCHEDULES["ViT-S-DeiT", 2.3]
    want = tuple(tuple(1 + max(1, round((c[j] - 1) / 196 * 16)) for c in official) for j in (0, 4, 7, 11))
    assert tiny.amounts == want
