"""Linear attention as XLA einsums (impl="xla"): the state form, causal in chunks, with its written-out gradient.

    o, den = xla_forward(q, k, v, causal, feature_map, eps, chunk)
    dq, dk, dv = xla_backward(q, k, v, g, h, causal, feature_map, chunk)

Non-causal: S = phi(K)^T V [d, dv] and z = sum_j phi(K_j), then O = phi(Q) S / (phi(Q) . z + eps).
Causal: chunked (docs/facts/kernels.md, "FLA (causal chunked linear attention)"): masked
intra-chunk products plus the inter-chunk states, an exclusive cumulative sum of the per-chunk
phi(K)^T V, materialised ([.., L/C, d, dv] float32). Unlike impl="reference" (the masked L x L
product), neither form builds an L x L matrix beyond one chunk.

Gradients (`attention_op`, the custom VJP every impl but "reference" shares). With G = dO / den and
h_i = -(dO_i . O_i) / den_i (G = dO and h = 0 without the normaliser), the op is linear in phi(Q),
phi(K), V through num = A V and den = A 1 + eps, A the (masked) phi(Q) phi(K)^T; so
dA = mask * (G V^T + h 1^T), dphi(Q) = dA phi(K), dphi(K) = dA^T phi(Q), dV = A^T G, evaluated
without A in the state form (non-causal: dphi(Q) = G S^T + h z^T, dphi(K) = V dS^T + dz,
dV = phi(K) dS). dQ = dphi(Q) * phi'(Q) and likewise for K.
"""

import functools

import jax
import jax.numpy as jnp

from mixtok.kernels.linear_attention.reference import feature_slope, features


def _einsum(spec, a, b, dtype):
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jnp.einsum(spec, a.astype(dtype), b.astype(dtype), precision=precision, preferred_element_type=jnp.float32)


def _chunked(x, chunk):
    """[..., L, d] -> [..., L/C, C, d], zero-padded at the end (padded rows are never attended to)."""
    length = x.shape[-2]
    padded = -(-length // chunk) * chunk
    x = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, padded - length), (0, 0)])
    return x.reshape(x.shape[:-2] + (padded // chunk, chunk, x.shape[-1]))


def _unchunked(x, length):
    return x.reshape(x.shape[:-3] + (-1, x.shape[-1]))[..., :length, :]


def xla_forward(q, k, v, causal, feature_map, eps, chunk):
    """(O, den): den [..., L] float32 (ones without the normaliser)."""
    dtype, normalize, length = q.dtype, feature_map != "identity", q.shape[-2]
    qf, kf = features(q, feature_map), features(k, feature_map)
    if not causal:
        state = _einsum("...ld,...le->...de", kf, v, dtype)
        num = _einsum("...ld,...de->...le", qf, state, dtype)
        den = jnp.einsum("...ld,...d->...l", qf, kf.sum(-2), precision="highest") + eps
    else:
        qf, kf, vc = _chunked(qf, chunk), _chunked(kf, chunk), _chunked(v, chunk)
        mask = jnp.tril(jnp.ones((chunk, chunk), bool))
        scores = jnp.where(mask, _einsum("...cid,...cjd->...cij", qf, kf, dtype), 0.0)
        chunk_states = _einsum("...cjd,...cje->...cde", kf, vc, dtype)
        previous = jnp.cumsum(chunk_states, axis=-3) - chunk_states  # exclusive: chunks before c
        num = _einsum("...cij,...cje->...cie", scores, vc, dtype) + _einsum(
            "...cid,...cde->...cie", qf, previous, dtype
        )
        chunk_norms = kf.sum(-2)
        previous_norm = jnp.cumsum(chunk_norms, axis=-2) - chunk_norms
        den = scores.sum(-1) + jnp.einsum("...cid,...cd->...ci", qf, previous_norm, precision="highest") + eps
        num = _unchunked(num, length)
        den = den.reshape(den.shape[:-2] + (-1,))[..., :length]
    if not normalize:
        return num.astype(v.dtype), jnp.ones(num.shape[:-1], jnp.float32)
    return (num / den[..., None]).astype(v.dtype), den


def xla_backward(q, k, v, g, h, causal, feature_map, chunk):
    dtype, normalize, length = q.dtype, feature_map != "identity", q.shape[-2]
    qf, kf = features(q, feature_map), features(k, feature_map)
    if not causal:
        state = _einsum("...ld,...le->...de", kf, v, dtype)
        dstate = _einsum("...ld,...le->...de", qf, g, dtype)
        dqf = _einsum("...le,...de->...ld", g, state, dtype)
        dkf = _einsum("...le,...de->...ld", v, dstate, dtype)
        dv = _einsum("...ld,...de->...le", kf, dstate, dtype)
        if normalize:
            dqf = dqf + h[..., None] * kf.sum(-2)[..., None, :]
            dkf = dkf + jnp.einsum("...l,...ld->...d", h, qf, precision="highest")[..., None, :]
    else:
        qf, kf, vc, gc = (_chunked(x, chunk) for x in (qf, kf, v, g))
        hc = _chunked(h[..., None], chunk)[..., 0]
        mask = jnp.tril(jnp.ones((chunk, chunk), bool))
        scores = jnp.where(mask, _einsum("...cid,...cjd->...cij", qf, kf, dtype), 0.0)
        dscores = jnp.where(mask, _einsum("...cie,...cje->...cij", gc, vc, dtype) + hc[..., None], 0.0)
        chunk_states = _einsum("...cjd,...cje->...cde", kf, vc, dtype)
        previous = jnp.cumsum(chunk_states, axis=-3) - chunk_states
        chunk_dstates = _einsum("...cid,...cie->...cde", qf, gc, dtype)
        later = jnp.cumsum(chunk_dstates[..., ::-1, :, :], axis=-3)[..., ::-1, :, :] - chunk_dstates
        dqf = _einsum("...cij,...cjd->...cid", dscores, kf, dtype) + _einsum(
            "...cie,...cde->...cid", gc, previous, dtype
        )
        dkf = _einsum("...cij,...cid->...cjd", dscores, qf, dtype) + _einsum("...cje,...cde->...cjd", vc, later, dtype)
        dv = _einsum("...cij,...cie->...cje", scores, gc, dtype) + _einsum("...cjd,...cde->...cje", kf, later, dtype)
        if normalize:
            chunk_norms = kf.sum(-2)
            dqf = dqf + hc[..., None] * (jnp.cumsum(chunk_norms, axis=-2) - chunk_norms)[..., None, :]
            chunk_dnorms = jnp.einsum("...ci,...cid->...cd", hc, qf, precision="highest")
            later_dnorm = jnp.cumsum(chunk_dnorms[..., ::-1, :], axis=-2)[..., ::-1, :] - chunk_dnorms
            dkf = dkf + later_dnorm[..., None, :]
        dqf, dkf, dv = (_unchunked(x, length) for x in (dqf, dkf, dv))
    dq = dqf * feature_slope(q, feature_map)
    dk = dkf * feature_slope(k, feature_map)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype)


def output_gradients(do, o, den, normalize):
    """G = dO / den and h = -(dO . O) / den (float32); without the normaliser G = dO, h = 0."""
    do = do.astype(jnp.float32)
    if not normalize:
        return do, jnp.zeros(do.shape[:-1], jnp.float32)
    return do / den[..., None], -jnp.sum(do * o.astype(jnp.float32), -1) / den


def attention_op(forward, backward, normalize: bool):
    """The op from forward(q, k, v) -> (o, den) and backward(q, k, v, G, h) -> (dq, dk, dv), as a custom VJP."""

    @jax.custom_vjp
    def op(q, k, v):
        return forward(q, k, v)[0]

    def op_fwd(q, k, v):
        o, den = forward(q, k, v)
        return o, (q, k, v, o, den)

    def op_bwd(residuals, do):
        q, k, v, o, den = residuals
        g, h = output_gradients(do, o, den, normalize)
        return backward(q, k, v, g, h)

    op.defvjp(op_fwd, op_bwd)
    return op


@functools.cache
def xla_op(causal: bool, feature_map: str, eps: float, chunk: int):
    """impl="xla" for one static configuration: these einsums forward and backward."""
    return attention_op(
        lambda q, k, v: xla_forward(q, k, v, causal, feature_map, eps, chunk),
        lambda q, k, v, g, h: xla_backward(q, k, v, g, h, causal, feature_map, chunk),
        feature_map != "identity",
    )
