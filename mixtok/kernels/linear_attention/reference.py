"""Linear attention's definition, and what every implementation shares: feature maps, eps, the checks, the layout.

    o = linear_attention_reference(q, k, v, causal=False, feature_map="elu1")

The definition as a masked L x L product in float32, A = phi(Q) phi(K)^T, O = A V / (A 1 + eps),
differentiated by JAX: impl="reference", and the ground truth the tests hold every other impl to.
It costs O(L^2) memory; the other impls keep the [d, dv] state instead.
"""

import jax.numpy as jnp

from mixtok.kernels.dispatch import check_query_key_value
from mixtok.registry import unknown_name_error

FEATURE_MAPS = ("elu1", "relu", "identity")
DEFAULT_EPS = 1e-6  # fast-transformers' LinearAttention(eps=1e-6)


def check_inputs(q, k, v, feature_map: str) -> None:
    """Raises a ValueError that says which input is wrong and why."""
    if feature_map not in FEATURE_MAPS:
        raise unknown_name_error("linear_attention feature map", feature_map, FEATURE_MAPS)
    check_query_key_value("linear_attention", q, k, v)


def features(x, feature_map):
    """phi(x) in float32."""
    x = x.astype(jnp.float32)
    if feature_map == "elu1":
        return jnp.where(x > 0, x + 1.0, jnp.exp(jnp.minimum(x, 0.0)))
    if feature_map == "relu":
        return jnp.maximum(x, 0.0)
    return x


def feature_slope(x, feature_map):
    """phi'(x) in float32 (relu: 0 at 0, as jax.nn.relu's gradient)."""
    x = x.astype(jnp.float32)
    if feature_map == "elu1":
        return jnp.where(x > 0, 1.0, jnp.exp(jnp.minimum(x, 0.0)))
    if feature_map == "relu":
        return (x > 0).astype(jnp.float32)
    return jnp.ones_like(x)


def linear_attention_reference(q, k, v, *, causal=False, feature_map="elu1", eps=DEFAULT_EPS):
    """The definition as a masked L x L product in float32: A = phi(Q) phi(K)^T, O = A V / (A 1 + eps)."""
    check_inputs(q, k, v, feature_map)
    qf, kf = features(q, feature_map), features(k, feature_map)
    scores = jnp.einsum("bhid,bhjd->bhij", qf, kf, precision="highest")
    if causal:
        scores = jnp.tril(scores)
    out = jnp.einsum("bhij,bhje->bhie", scores, v.astype(jnp.float32), precision="highest")
    if feature_map != "identity":
        out = out / (scores.sum(-1, keepdims=True) + eps)
    return out.astype(v.dtype)


def flat_padded(x, padded):
    """[B, H, L, ...] -> [B*H, padded, ...], zero rows at the end: the kernels' layout."""
    x = x.reshape((-1,) + x.shape[2:])
    return jnp.pad(x, [(0, 0), (0, padded - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
