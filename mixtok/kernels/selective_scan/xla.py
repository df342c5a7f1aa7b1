"""The selective scan in chunks (impl="xla"): an associative scan within each chunk, a `lax.scan` across chunks.

    y = selective_scan_xla(u, delta, a, b, c, d, chunk)

The recurrence h_t = exp(delta_t a) h_{t-1} + delta_t b_t u_t is linear in h, so the pairs (decay, input) compose
associatively: (a1, x1) then (a2, x2) is (a1 a2, a2 x1 + x2) (the parallel scan Mamba's paper, section 3.3.2,
and its CUDA kernel use). Within a chunk of Q positions `lax.associative_scan` gives every state from the state
entering the chunk in O(log Q) parallel steps; a `lax.scan` over the L/Q chunks carries that state from one
chunk to the next. Each chunk's body is rematerialised (`jax.checkpoint`), so the backward pass stores one state
[B, E, N] per chunk and recomputes a chunk's Q states when it reaches it: O((L/Q + Q) B E N) memory instead of the
reference's O(L B E N) residuals, with the same per-chunk work forwards and backwards.

L need not be a multiple of Q: the inputs are zero-padded at the end (delta = 0 there: decay 1, no input), which
changes no earlier output. Everything runs in float32; JAX differentiates it (no hand-written VJP: the
associative scan, the exps and the products transpose as cheaply as they run).
"""

import functools

import jax
import jax.numpy as jnp

from mixtok.kernels.selective_scan.reference import as_float32, channels_of_groups


def _chunked(t, chunk):
    """[B, L, ...] -> [L/Q, B, Q, ...], zero-padded at the end (chunks first, for `lax.scan`)."""
    length = t.shape[1]
    padded = -(-length // chunk) * chunk
    t = jnp.pad(t, [(0, 0), (0, padded - length)] + [(0, 0)] * (t.ndim - 2))
    t = t.reshape((t.shape[0], padded // chunk, chunk) + t.shape[2:])
    return jnp.moveaxis(t, 1, 0)


def _combine(left, right):
    return left[0] * right[0], right[0] * left[1] + right[1]


@functools.partial(jax.jit, static_argnames="chunk")  # one XLA computation, also when called eagerly (a module's init)
def selective_scan_xla(u, delta, a, b, c, d, chunk):
    """u, delta [B, L, E], a [E, N], b, c [B, L, G, N], d [E] or None -> y [B, L, E] (u's dtype)."""
    out_dtype = u.dtype
    u, delta, a, b, c, d = as_float32(u, delta, a, b, c, d)
    batch, length, channels = u.shape

    @jax.checkpoint
    def one_chunk(h, inputs):
        u_q, delta_q, b_q, c_q = inputs  # [B, Q, E], [B, Q, E], [B, Q, G, N], [B, Q, G, N]
        b_q, c_q = channels_of_groups(b_q, channels), channels_of_groups(c_q, channels)  # [B, Q, E, N]
        decay = jnp.exp(delta_q[..., None] * a)  # [B, Q, E, N]
        drive = (delta_q * u_q)[..., None] * b_q
        # Fold the entering state into the first step's input, then scan the chunk.
        drive = drive.at[:, 0].add(decay[:, 0] * h)
        _, states = jax.lax.associative_scan(_combine, (decay, drive), axis=1)
        return states[:, -1], jnp.sum(states * c_q, axis=-1)

    h0 = jnp.zeros((batch, channels, a.shape[1]), jnp.float32)
    chunks = tuple(_chunked(t, chunk) for t in (u, delta, b, c))
    if chunks[0].shape[0] == 1:  # one chunk: no loop to carry a state through (a smaller program to compile)
        y = one_chunk(h0, tuple(t[0] for t in chunks))[1][None]
    else:
        _, y = jax.lax.scan(one_chunk, h0, chunks)
    y = jnp.moveaxis(y, 0, 1).reshape(batch, -1, channels)[:, :length]
    if d is not None:
        y = y + u * d
    return y.astype(out_dtype)
