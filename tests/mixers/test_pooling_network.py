"""PoNet's pooling mixer against a direct float64 numpy form (explicit loops over heads, tokens, segments and
windows), on padded and unpadded sequences and on grids, plus its segment layout and input checks. (Its jit,
finite gradients and bfloat16 are in tests/mixers/test_metaformer_mixers.py, which runs every registered mixer.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok import mixers
from mixtok.mixers.pooling_network import PoolingNetwork, segment_index
from tests.helpers import random_variables

DIM, HEADS = 8, 2


def _linear(p, name, x):
    return x @ p[name]["kernel"] + p[name]["bias"]


def _numpy_sequence(variables, x, segment_num, mask=None):
    """The official PoNetAttention + ff, token by token: segments by the official index formula, windows of 3."""
    p = jax.tree.map(lambda t: np.asarray(t, np.float64), variables["params"])
    x = np.asarray(x, np.float64)
    batch, length, _ = x.shape
    mask = np.ones((batch, length)) if mask is None else np.asarray(mask, np.float64)
    q, k, o = _linear(p, "W_q", x), _linear(p, "W_k", x), _linear(p, "W_v", x)
    local, segment = _linear(p, "W_local", x), _linear(p, "W_segment", x)
    d = DIM // HEADS
    seg_len = length // segment_num + 1
    y = np.zeros_like(x)
    for b in range(batch):
        real = [i for i in range(length) if mask[b, i] > 0.5]
        seg = np.where(mask[b][:, None] > 0.5, segment[b], -10000.0)
        loc = np.where(mask[b][:, None] > 0.5, local[b], -10000.0)
        for h in range(HEADS):
            cols = slice(h * d, (h + 1) * d)
            g = sum(q[b, i, cols] for i in real) / len(real)
            scores = np.array([g @ k[b, j, cols] / np.sqrt(d) if mask[b, j] > 0.5 else -10000.0 for j in range(length)])
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            pooled = sum(weights[j] * k[b, j, cols] for j in range(length))
            for i in range(length):
                same = [j for j in range(length) if j // seg_len == i // seg_len]
                s_max = np.max([seg[j, cols] for j in same], axis=0)
                l_max = np.max([loc[j, cols] for j in range(max(0, i - 1), min(length, i + 2))], axis=0)
                y[b, i, cols] = (pooled + s_max) * o[b, i, cols] + l_max if mask[b, i] > 0.5 else 0.0
    return _linear(p, "ff", y)


def _numpy_grid(variables, x):
    """The grid form: global pooling over all tokens, segments = rows, a 3x3 local window."""
    p = jax.tree.map(lambda t: np.asarray(t, np.float64), variables["params"])
    x = np.asarray(x, np.float64)
    batch, height, width, _ = x.shape
    q, k, o = _linear(p, "W_q", x), _linear(p, "W_k", x), _linear(p, "W_v", x)
    local, segment = _linear(p, "W_local", x), _linear(p, "W_segment", x)
    d = DIM // HEADS
    y = np.zeros_like(x)
    for b in range(batch):
        for h in range(HEADS):
            cols = slice(h * d, (h + 1) * d)
            qs, ks = q[b, ..., cols].reshape(-1, d), k[b, ..., cols].reshape(-1, d)
            scores = qs.mean(0) @ ks.T / np.sqrt(d)
            weights = np.exp(scores - scores.max())
            pooled = (weights / weights.sum()) @ ks
            for r in range(height):
                s_max = segment[b, r, :, cols].max(axis=0)
                for c in range(width):
                    window = local[b, max(0, r - 1) : r + 2, max(0, c - 1) : c + 2, cols]
                    y[b, r, c, cols] = (pooled + s_max) * o[b, r, c, cols] + window.max(axis=(0, 1))
    return _linear(p, "ff", y)


def _inputs(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("length,segment_num", [(11, 3), (7, 64)])
def test_sequence_matches_the_official_pooling_token_by_token(length, segment_num):
    x = _inputs((2, length, DIM), seed=length)
    module = PoolingNetwork(dim=DIM, num_heads=HEADS, segment_num=segment_num)
    variables = random_variables(module, x, seed=1, std=0.4)
    out = np.asarray(module.apply(variables, x))
    np.testing.assert_allclose(out, _numpy_sequence(variables, x, segment_num), rtol=1e-5, atol=2e-5)


def test_padded_sequence_pools_only_real_tokens_as_the_official_mask():
    x = _inputs((2, 13, DIM), seed=3)
    mask = np.ones((2, 13), np.float32)
    mask[0, 9:] = 0.0  # a padded tail, as LRA's input_ids != 0
    mask[1, 4:6] = 0.0  # and a hole, so the windows and a segment see padding on both sides
    module = PoolingNetwork(dim=DIM, num_heads=HEADS, segment_num=4)
    variables = random_variables(module, x, seed=2, std=0.4)
    out = np.asarray(module.apply(variables, x, mask=jnp.asarray(mask)))
    np.testing.assert_allclose(out, _numpy_sequence(variables, x, 4, mask), rtol=1e-5, atol=2e-5)
    # Padded rows carry only ff's bias, and changing padded inputs changes nothing else.
    np.testing.assert_allclose(out[0, 9:], np.broadcast_to(variables["params"]["ff"]["bias"], (4, DIM)), atol=1e-6)
    changed = np.asarray(module.apply(variables, x.at[0, 10:].set(5.0), mask=jnp.asarray(mask)))
    np.testing.assert_allclose(changed, out, rtol=1e-6, atol=1e-6)


def test_grid_pools_rows_as_segments_and_a_square_local_window():
    x = _inputs((2, 4, 5, DIM), seed=4)
    module = PoolingNetwork(dim=DIM, num_heads=HEADS)
    variables = random_variables(module, x, seed=4, std=0.4)
    out = np.asarray(module.apply(variables, x))
    np.testing.assert_allclose(out, _numpy_grid(variables, x), rtol=1e-5, atol=2e-5)


def test_segments_follow_the_official_index_formula():
    # lxchtan/PoNet get_segment_index: pieces of L // segment_num + 1 tokens; ListOps' 2000 tokens in 64 pieces
    # give 63 segments of 32 and one of 16; Text's segment_num 4096 at length 4096 gives 2048 pairs.
    counts = np.bincount(segment_index(2000, 64))
    assert len(counts) == 63 and set(counts[:-1]) == {32} and counts[-1] == 16
    assert np.bincount(segment_index(4096, 4096)).tolist() == [2] * 2048


def test_registered_and_heads_default_to_the_lra_head_width():
    assert mixers.get("pooling_network") is PoolingNetwork
    assert PoolingNetwork(dim=64).heads() == 2  # LRA: transformer_dim 64, head_dim 32, num_head 2


def test_bad_inputs_get_one_line_naming_the_value():
    x = jnp.zeros((1, 4, 4, DIM))
    with pytest.raises(ValueError, match="local_window must be odd.*got 4"):
        PoolingNetwork(dim=DIM, local_window=4).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="mask must be \\[B, L\\]"):
        PoolingNetwork(dim=DIM).init(jax.random.PRNGKey(0), x, mask=jnp.ones((1, 16)))
    with pytest.raises(ValueError, match="num_heads=3 must be >= 1 and divide dim=8"):
        PoolingNetwork(dim=DIM, num_heads=3).init(jax.random.PRNGKey(0), jnp.zeros((1, 5, DIM)))
