"""SSD in chunks as XLA einsums (impl="xla"): quadratic within a chunk, states passed between chunks.

    y = ssd_scan_xla(x, dt, a, b, c, chunk)

The chunked form of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs", section 6; state-spaces/mamba @ e9594ce1:
mamba_ssm/modules/ssd_minimal.py `ssd_minimal_discrete`). With X = dt x, s = the cumulative sum of dt a
within a chunk of length Q, for positions i, j of one chunk:

- intra-chunk (the diagonal blocks of M): Y_i += sum_{j <= i} (c_i . b_j) exp(s_i - s_j) X_j;
- the state each chunk leaves: S_c = sum_j exp(s_Q - s_j) X_j b_j^T;
- the state entering chunk c, an exclusive scan over chunks, H_c = exp(s_Q of c-1) H_{c-1} + S_{c-1}, by
  `lax.associative_scan` over the L/Q chunks;
- inter-chunk (the off-diagonal blocks): Y_i += exp(s_i) H_c c_i.

L need not be a multiple of Q: the inputs are zero-padded at the end (dt = 0 there: decay 1, no input), which
changes no earlier output. Memory is O(L Q H + (L/Q) H P N); no L x L matrix is built. Everything runs in
float32 at HIGHEST precision; JAX differentiates it (no hand-written VJP: every step is an einsum, a cumsum, an
exp or the associative scan, whose transposes are as cheap as they are).
"""

import jax
import jax.numpy as jnp

from mixtok.kernels.ssd_scan.reference import heads_of_groups

_HI = jax.lax.Precision.HIGHEST


def _chunked(t, chunk):
    """[B, L, ...] -> [B, L/Q, Q, ...], zero-padded at the end."""
    length = t.shape[1]
    padded = -(-length // chunk) * chunk
    t = jnp.pad(t, [(0, 0), (0, padded - length)] + [(0, 0)] * (t.ndim - 2))
    return t.reshape((t.shape[0], padded // chunk, chunk) + t.shape[2:])


def ssd_scan_xla(x, dt, a, b, c, chunk):
    """x [B, L, H, P], dt [B, L, H], a [H], b, c [B, L, G, N] -> y [B, L, H, P] (x's dtype)."""
    f32 = jnp.float32
    batch, length, heads, width = x.shape
    out_dtype = x.dtype
    x, dt, a = x.astype(f32), dt.astype(f32), a.astype(f32)
    b, c = heads_of_groups(b.astype(f32), heads), heads_of_groups(c.astype(f32), heads)
    xs = _chunked(dt[..., None] * x, chunk)  # [B, C, Q, H, P]
    da = _chunked(dt * a, chunk)  # [B, C, Q, H]
    bs, cs = _chunked(b, chunk), _chunked(c, chunk)  # [B, C, Q, H, N]
    s = jnp.cumsum(da, axis=2)  # [B, C, Q, H]

    # Intra-chunk: the masked decay exp(s_i - s_j), j <= i.
    mask = jnp.tril(jnp.ones((chunk, chunk), bool))[None, None, :, :, None]
    diff = s[:, :, :, None, :] - s[:, :, None, :, :]  # [B, C, Qi, Qj, H]
    decay = jnp.exp(jnp.where(mask, diff, -jnp.inf))
    scores = jnp.einsum("bcihn,bcjhn->bcijh", cs, bs, precision=_HI) * decay
    y = jnp.einsum("bcijh,bcjhp->bcihp", scores, xs, precision=_HI)

    # The state each chunk leaves, then the state entering each chunk (exclusive scan over chunks).
    to_end = jnp.exp(s[:, :, -1:, :] - s)  # [B, C, Q, H]
    chunk_states = jnp.einsum("bcjh,bcjhn,bcjhp->bchpn", to_end, bs, xs, precision=_HI)
    chunk_decay = jnp.exp(s[:, :, -1, :])[..., None, None]  # [B, C, H, 1, 1]

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    _, after = jax.lax.associative_scan(combine, (chunk_decay, chunk_states), axis=1)
    entering = jnp.concatenate([jnp.zeros_like(after[:, :1]), after[:, :-1]], axis=1)  # [B, C, H, P, N]
    y = y + jnp.einsum("bcih,bcihn,bchpn->bcihp", jnp.exp(s), cs, entering, precision=_HI)
    return y.reshape(batch, -1, heads, width)[:, :length].astype(out_dtype)
