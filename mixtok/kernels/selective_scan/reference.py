"""The selective scan's definition (Mamba-1's S6 recurrence), and the checks every implementation shares.

    y = selective_scan_reference(u, delta, a, b, c, d)

Per batch element and channel e (group g = e // (E / G) of B and C), with a state h_t [N]:

    h_t = exp(delta_t,e a_e) * h_{t-1} + delta_t,e b_t,g u_t,e,    h_0 = 0       (elementwise over N)
    y_t,e = h_t . c_t,g + d_e u_t,e

This is state-spaces/mamba @ e9594ce1's `selective_scan_ref(u, delta, A, B, C, D)`
(mamba_ssm/ops/selective_scan_interface.py) with z=None, delta_bias=None, delta_softplus=False (the caller adds
the bias and applies softplus, as Mamba's block does in `selective_scan_fn(..., delta_bias=..., delta_softplus=True)`),
real A, and B, C input-dependent with G groups, written in mixtok's [B, L, ...] layout instead of [B, E, L]
(that function's discretisation: deltaA = exp(delta A), deltaB_u = delta B u, the zero-order hold for A and
Euler for B, as the CUDA kernel). The reference runs the recurrence step by step with one `lax.scan` over L,
differentiated by JAX; it keeps one state [B, E, N] per step for the backward pass.
"""

import jax
import jax.numpy as jnp


def check_inputs(u, delta, a, b, c, d) -> None:
    """Raises a ValueError that names the wrong input, its shape and the shape expected."""
    if u.ndim != 3:
        raise ValueError(f"selective_scan: u must be [B, L, E]; got shape {u.shape}.")
    batch, length, channels = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"selective_scan: delta must have u's shape [B, L, E] = {u.shape}; got shape {delta.shape}.")
    if a.ndim != 2 or a.shape[0] != channels:
        raise ValueError(f"selective_scan: a must be [E, N] with E = {channels}; got shape {a.shape}.")
    state = a.shape[1]
    if b.ndim != 4 or b.shape[:2] != (batch, length) or b.shape[3] != state:
        raise ValueError(
            f"selective_scan: b must be [B, L, G, N] with B, L = {(batch, length)} and N = {state}; "
            f"got shape {b.shape}."
        )
    if c.shape != b.shape:
        raise ValueError(f"selective_scan: c must have b's shape {b.shape}; got shape {c.shape}.")
    if channels % b.shape[2]:
        raise ValueError(
            f"selective_scan: the number of groups G={b.shape[2]} must divide the number of channels E={channels}."
        )
    if d is not None and d.shape != (channels,):
        raise ValueError(f"selective_scan: d must be [E] = {(channels,)} or None; got shape {d.shape}.")


def channels_of_groups(b, channels):
    """[B, L, G, N] -> [B, L, E, N]: channel e reads group e // (E / G), as selective_scan_ref's repeat."""
    return jnp.repeat(b, channels // b.shape[2], axis=2)


def as_float32(u, delta, a, b, c, d):
    f32 = jnp.float32
    d = None if d is None else d.astype(f32)
    return u.astype(f32), delta.astype(f32), a.astype(f32), b.astype(f32), c.astype(f32), d


@jax.jit
def selective_scan_reference(u, delta, a, b, c, d=None):
    """The recurrence one step at a time (`lax.scan` over L), in float32; the output has u's dtype."""
    check_inputs(u, delta, a, b, c, d)
    out_dtype = u.dtype
    u, delta, a, b, c, d = as_float32(u, delta, a, b, c, d)
    groups = b.shape[2]
    batch, _, channels = u.shape

    def step(h, inputs):
        u_t, delta_t, b_t, c_t = inputs  # [B, E], [B, E], [B, G, N], [B, G, N]
        b_t, c_t = (jnp.repeat(t, channels // groups, axis=1) for t in (b_t, c_t))  # [B, E, N]
        h = jnp.exp(delta_t[..., None] * a) * h + (delta_t * u_t)[..., None] * b_t
        return h, jnp.sum(h * c_t, axis=-1)

    h0 = jnp.zeros((batch, channels, a.shape[1]), jnp.float32)
    xs = tuple(jnp.moveaxis(t, 1, 0) for t in (u, delta, b, c))
    _, y = jax.lax.scan(step, h0, xs)
    y = jnp.moveaxis(y, 0, 1)
    if d is not None:
        y = y + u * d
    return y.astype(out_dtype)
