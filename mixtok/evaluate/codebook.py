"""How a tokenizer uses its codebook: usage, perplexity and entropy of the token indices.

    codebook_usage(indices, K)         # |unique indices| / K
    codebook_perplexity(indices, K)    # exp(H), H = -sum p ln p
    codebook_entropy_bits(indices, K)  # -sum p log2 p
    counter = CodebookCounter(K); counter.update(indices) ...; counter.usage(), counter.entropy_bits()

p is the empirical frequency of each of the K codes among all indices given. The one-call functions are jnp and
jit-able (per batch, e.g. as training diagnostics); TiTok reports usage over the whole evaluation set, which a batch
underestimates, so evaluation accumulates counts with `CodebookCounter` (numpy int64 bincounts). When a batch has
fewer indices N than codes K (FSQ / LFQ / BSQ codebooks run to 2^16 ... 2^24 and beyond), the one-call functions
count by sorting the N indices (`present_code_counts`) instead of building a K-long histogram every step.

Follows TiTok's evaluator (bytedance/1d-tokenizer @ 942a96f: evaluator/evaluator.py, VQGANEvaluator's
`CodebookUsage` = len(set of indices) / num_codebook_entries and `CodebookEntropy` = sum(-log2(p + 1e-8) * p)).
Difference: the entropy here is exact, 0 * log 0 = 0, without the 1e-8 inside the log (which changes the value by
~1e-8 per code).
"""

import jax
import jax.numpy as jnp
import numpy as np


def _check_size(codebook_size, name: str) -> int:
    if int(codebook_size) != codebook_size or codebook_size < 1:
        raise ValueError(f"{name}: codebook_size must be a positive integer, got {codebook_size!r}.")
    return int(codebook_size)


def code_counts(indices, codebook_size: int):
    """Occurrences of each code, [K] int32, over all entries of an integer array of indices.

    Under jit, indices outside [0, K) cannot be checked: jnp.bincount drops those >= K and counts negative ones as 0.
    """
    codebook_size = _check_size(codebook_size, "code_counts")
    return jnp.bincount(jnp.ravel(jnp.asarray(indices)).astype(jnp.int32), length=codebook_size)


def present_code_counts(indices, codebook_size: int):
    """Counts whose positive entries are the occurrences of each code present in `indices`, as `code_counts`'s.

    Length min(N, K) for N indices: the K-long histogram (`code_counts`) when N >= K, else the N run lengths of
    the sorted indices (zero-padded), which costs O(N log N) however large K is. Usage is
    `usage_from_counts(counts, K)`; entropy and perplexity are the same from either form.
    """
    codebook_size = _check_size(codebook_size, "present_code_counts")
    flat = jnp.ravel(jnp.asarray(indices)).astype(jnp.int32)
    if flat.shape[0] >= codebook_size or flat.shape[0] == 0:
        return code_counts(flat, codebook_size)
    ordered = jnp.sort(flat)
    starts = jnp.concatenate([jnp.ones((1,), bool), ordered[1:] != ordered[:-1]])
    run = jnp.cumsum(starts) - 1  # which distinct code each sorted index belongs to
    return jax.ops.segment_sum(jnp.ones_like(flat), run, num_segments=flat.shape[0])


def _entropy_nats(counts):
    probabilities = counts / jnp.maximum(jnp.sum(counts), 1)
    return jnp.sum(jax.scipy.special.entr(probabilities))  # entr(p) = -p ln p, 0 at p = 0


def usage_from_counts(counts, codebook_size=None):
    """Fraction of the K codes whose count is positive (float32 scalar); counts may be weighted.

    counts: the K-long histogram, or `present_code_counts`'s shorter form with `codebook_size` = K given.
    """
    counts = jnp.asarray(counts)
    total = counts.shape[-1] if codebook_size is None else _check_size(codebook_size, "usage_from_counts")
    return jnp.count_nonzero(counts > 0).astype(jnp.float32) / total


def perplexity_from_counts(counts):
    """exp of the natural-log entropy of the frequencies `counts` [K] (which may be weighted)."""
    return jnp.exp(_entropy_nats(jnp.asarray(counts, jnp.float32)))


def codebook_usage(indices, codebook_size: int):
    """Fraction of the K codes that occur at least once in `indices` (float32 scalar)."""
    return usage_from_counts(present_code_counts(indices, codebook_size), codebook_size)


def codebook_perplexity(indices, codebook_size: int):
    """exp of the natural-log entropy of the code frequencies: K for uniform use, 1 for a single code."""
    return perplexity_from_counts(present_code_counts(indices, codebook_size))


def codebook_entropy_bits(indices, codebook_size: int):
    """-sum p log2 p of the code frequencies, in bits (TiTok's CodebookEntropy): log2 K at most."""
    return _entropy_nats(present_code_counts(indices, codebook_size).astype(jnp.float32)) / jnp.log(2.0)


class CodebookCounter:
    """Code frequencies accumulated over many batches (numpy int64), for usage and entropy over a whole eval set."""

    def __init__(self, codebook_size: int):
        self.codebook_size = _check_size(codebook_size, "CodebookCounter")
        self.counts = np.zeros(self.codebook_size, np.int64)

    def update(self, indices) -> None:
        """Counts every entry of an integer array of indices (any shape)."""
        flat = np.ravel(np.asarray(indices))
        if flat.size == 0:
            return
        if not np.issubdtype(flat.dtype, np.integer):
            raise ValueError(f"CodebookCounter.update: indices must be integers, got dtype {flat.dtype}.")
        if flat.min() < 0 or flat.max() >= self.codebook_size:
            raise ValueError(
                f"CodebookCounter.update: indices must lie in [0, {self.codebook_size}), got values "
                f"from {flat.min()} to {flat.max()}."
            )
        self.counts += np.bincount(flat, minlength=self.codebook_size)

    def reset(self) -> None:
        self.counts[:] = 0

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def probabilities(self) -> np.ndarray:
        if self.total == 0:
            raise ValueError("CodebookCounter: no indices were counted.")
        return self.counts / self.total

    def usage(self) -> float:
        return float(np.count_nonzero(self.counts)) / self.codebook_size

    def entropy_bits(self) -> float:
        p = self.probabilities()
        p = p[p > 0]
        return float(-(p * np.log2(p)).sum())

    def perplexity(self) -> float:
        p = self.probabilities()
        p = p[p > 0]
        return float(np.exp(-(p * np.log(p)).sum()))

    def results(self) -> dict:
        """{"codebook_usage", "codebook_entropy_bits", "codebook_perplexity"} as floats."""
        return {
            "codebook_usage": self.usage(),
            "codebook_entropy_bits": self.entropy_bits(),
            "codebook_perplexity": self.perplexity(),
        }
