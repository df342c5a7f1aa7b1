"""SSD's definition (Mamba-2's scalar-A state space scan), and the checks every implementation shares.

    y = ssd_scan_reference(x, dt, a, b, c)

Per batch element and head h (group g = h // (H / G) of B and C), with a state S_t [P, N]:

    S_t = exp(dt_t a) S_{t-1} + dt_t x_t b_t^T,    S_0 = 0
    y_t = S_t c_t

which is y = M x with the lower-triangular (semiseparable) matrix
M[i, j] = (c_i . b_j) exp(a (dt_{j+1} + ... + dt_i)) dt_j for j <= i. This is what state-spaces/mamba
@ e9594ce1's `mamba_chunk_scan_combined(x, dt, A, B, C)` (mamba_ssm/ops/triton/ssd_combined.py) computes with
D=None, z=None, no dt_bias, no dt_softplus and no initial state (its `ssd_minimal_discrete` in
mamba_ssm/modules/ssd_minimal.py is the same chunked form as xla.py). The reference runs the recurrence as one
`lax.associative_scan` over L of the pairs (exp(dt a), dt x b^T), differentiated by JAX: it keeps all L states,
O(L H P N) memory, for checking rather than training.
"""

import jax
import jax.numpy as jnp


def check_inputs(x, dt, a, b, c) -> None:
    """Raises a ValueError that names the wrong input, its shape and the shape expected."""
    if x.ndim != 4:
        raise ValueError(f"ssd_scan: x must be [B, L, H, P]; got shape {x.shape}.")
    batch, length, heads, _ = x.shape
    if dt.shape != (batch, length, heads):
        raise ValueError(f"ssd_scan: dt must be [B, L, H] = {(batch, length, heads)}; got shape {dt.shape}.")
    if a.shape != (heads,):
        raise ValueError(f"ssd_scan: a must be [H] = {(heads,)}; got shape {a.shape}.")
    if b.ndim != 4 or b.shape[:2] != (batch, length):
        raise ValueError(f"ssd_scan: b must be [B, L, G, N] with B, L = {(batch, length)}; got shape {b.shape}.")
    if c.shape != b.shape:
        raise ValueError(f"ssd_scan: c must have b's shape {b.shape}; got shape {c.shape}.")
    if heads % b.shape[2]:
        raise ValueError(f"ssd_scan: the number of groups G={b.shape[2]} must divide the number of heads H={heads}.")


def heads_of_groups(b, heads):
    """[B, L, G, N] -> [B, L, H, N]: head h reads group h // (H / G), as mamba_ssm's repeat."""
    return jnp.repeat(b, heads // b.shape[2], axis=2)


def ssd_scan_reference(x, dt, a, b, c):
    """The recurrence as one associative scan over L, in float32; the output has x's dtype."""
    check_inputs(x, dt, a, b, c)
    f32 = jnp.float32
    heads = x.shape[2]
    x, dt, a = x.astype(f32), dt.astype(f32), a.astype(f32)
    b, c = heads_of_groups(b.astype(f32), heads), heads_of_groups(c.astype(f32), heads)
    decay = jnp.exp(dt * a)[..., None, None]  # [B, L, H, 1, 1]
    inputs = (dt[..., None] * x)[..., None] * b[..., None, :]  # [B, L, H, P, N]

    def combine(left, right):
        return left[0] * right[0], right[0] * left[1] + right[1]

    _, states = jax.lax.associative_scan(combine, (decay, inputs), axis=1)
    return jnp.einsum("blhpn,blhn->blhp", states, c, precision="highest").astype(x.dtype)
