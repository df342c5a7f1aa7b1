"""Codebook usage, perplexity and entropy against numpy and scipy.stats.entropy."""

import jax
import numpy as np
import pytest

from mixtok.evaluate.codebook import (
    CodebookCounter,
    code_counts,
    codebook_entropy_bits,
    codebook_perplexity,
    codebook_usage,
    present_code_counts,
)

stats = pytest.importorskip("scipy.stats")

K = 37


def skewed_indices(seed, shape=(8, 32)):
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(K, 0.3))
    return rng.choice(K, size=shape, p=probabilities).astype(np.int32)


def test_one_call_metrics_equal_numpy_and_scipy():
    indices = skewed_indices(0)
    counts = np.bincount(indices.ravel(), minlength=K)
    np.testing.assert_array_equal(np.asarray(code_counts(indices, K)), counts)
    usage = jax.jit(codebook_usage, static_argnums=1)(indices, K)
    assert float(usage) == pytest.approx(len(np.unique(indices)) / K)
    np.testing.assert_allclose(
        float(jax.jit(codebook_perplexity, static_argnums=1)(indices, K)), np.exp(stats.entropy(counts)), rtol=1e-5
    )
    np.testing.assert_allclose(float(codebook_entropy_bits(indices, K)), stats.entropy(counts, base=2), rtol=1e-5)


@pytest.mark.parametrize("codebook_size", [37, 300, 1 << 24])
def test_fewer_indices_than_codes_are_counted_by_sorting_with_the_same_results(codebook_size):
    # 64 indices from few distinct codes (with repeats), spread over the whole codebook.
    rng = np.random.default_rng(codebook_size)
    codes = rng.choice(codebook_size, size=9, replace=False)
    indices = rng.choice(codes, size=(4, 16), p=rng.dirichlet(np.ones(9))).astype(np.int32)
    values, counts = np.unique(indices, return_counts=True)
    present = np.asarray(jax.jit(present_code_counts, static_argnums=1)(indices, codebook_size))
    assert present.shape == (min(indices.size, codebook_size),)
    np.testing.assert_array_equal(np.sort(present[present > 0]), np.sort(counts))
    assert float(jax.jit(codebook_usage, static_argnums=1)(indices, codebook_size)) == pytest.approx(
        len(values) / codebook_size
    )
    np.testing.assert_allclose(
        float(codebook_perplexity(indices, codebook_size)), np.exp(stats.entropy(counts)), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(codebook_entropy_bits(indices, codebook_size)), stats.entropy(counts, base=2), rtol=1e-5
    )


def test_uniform_and_single_code_extremes():
    uniform = np.arange(4 * K) % K
    assert float(codebook_usage(uniform, K)) == 1.0
    np.testing.assert_allclose(float(codebook_perplexity(uniform, K)), K, rtol=1e-5)
    np.testing.assert_allclose(float(codebook_entropy_bits(uniform, K)), np.log2(K), rtol=1e-5)
    single = np.full((5,), 3)
    assert float(codebook_perplexity(single, K)) == pytest.approx(1.0)
    assert float(codebook_entropy_bits(single, K)) == pytest.approx(0.0, abs=1e-7)


def test_counter_over_batches_equals_the_whole_set():
    batches = [skewed_indices(seed, shape=(3, 7)) for seed in range(5)]
    everything = np.concatenate([b.ravel() for b in batches])
    counter = CodebookCounter(K)
    for batch in batches:
        counter.update(batch)
    counts = np.bincount(everything, minlength=K)
    np.testing.assert_array_equal(counter.counts, counts)
    results = counter.results()
    assert results["codebook_usage"] == len(np.unique(everything)) / K
    np.testing.assert_allclose(results["codebook_entropy_bits"], stats.entropy(counts, base=2), rtol=1e-12)
    np.testing.assert_allclose(results["codebook_perplexity"], np.exp(stats.entropy(counts)), rtol=1e-12)
    # A single batch sees fewer codes than the whole set: why evaluation accumulates.
    assert float(codebook_usage(batches[0], K)) <= results["codebook_usage"]


def test_counter_rejects_indices_outside_the_codebook():
    counter = CodebookCounter(4)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        counter.update(np.array([0, 4]))
    with pytest.raises(ValueError, match="codebook_size"):
        CodebookCounter(0)
