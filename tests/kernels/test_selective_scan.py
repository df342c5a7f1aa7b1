"""selective_scan: both impls against a float64 numpy per-step loop, their gradients against each other, and the
input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.kernels.selective_scan import resolve_impl, selective_scan


def _inputs(batch=2, length=13, channels=6, groups=2, state=5, seed=0, with_d=True):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(batch, length, channels))
    delta = np.log1p(np.exp(rng.normal(size=(batch, length, channels))))  # softplus: positive steps
    a = -np.exp(rng.normal(size=(channels, state)) * 0.5)
    b = rng.normal(size=(batch, length, groups, state))
    c = rng.normal(size=(batch, length, groups, state))
    d = rng.normal(size=channels) if with_d else None
    return u, delta, a, b, c, d


def _numpy_loop(u, delta, a, b, c, d):
    """h = exp(delta a) h + delta u b; y = h . c + d u, one channel and one step at a time in float64."""
    batch, length, channels = u.shape
    rep = channels // b.shape[2]
    y = np.zeros_like(u)
    for n in range(batch):
        for e in range(channels):
            h = np.zeros(a.shape[1])
            for t in range(length):
                h = np.exp(delta[n, t, e] * a[e]) * h + delta[n, t, e] * u[n, t, e] * b[n, t, e // rep]
                y[n, t, e] = h @ c[n, t, e // rep] + (0.0 if d is None else d[e] * u[n, t, e])
    return y


def _f32(inputs):
    return tuple(None if t is None else jnp.asarray(t, jnp.float32) for t in inputs)


_scan = jax.jit(selective_scan, static_argnames=("impl", "chunk"))


@pytest.mark.parametrize(("impl", "chunk"), [("reference", 64), ("xla", 4), ("xla", 13), ("xla", 64)])
def test_against_numpy_loop(impl, chunk):
    # L = 13: chunk 4 does not divide it (3 padded steps), 13 is one chunk, 64 is longer than the sequence.
    inputs = _inputs()
    got = _scan(*_f32(inputs), impl=impl, chunk=chunk)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), _numpy_loop(*inputs), rtol=2e-5, atol=2e-5)


def test_without_d_one_group_a_single_step_and_a_chunk_of_one():
    for length, chunk in ((1, 64), (6, 1)):
        inputs = _inputs(batch=1, length=length, groups=1, seed=3, with_d=False)
        got = _scan(*_f32(inputs), impl="xla", chunk=chunk)
        np.testing.assert_allclose(np.asarray(got), _numpy_loop(*inputs), rtol=2e-5, atol=2e-5)


def test_gradients_match_reference():
    inputs = _f32(_inputs(length=11, seed=1))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=inputs[0].shape), jnp.float32)

    def loss(impl, chunk):
        return jax.jit(
            jax.grad(lambda *t: jnp.sum(selective_scan(*t, impl=impl, chunk=chunk) * weights), argnums=range(6))
        )

    want = loss("reference", 64)(*inputs)
    got = loss("xla", 4)(*inputs)
    for g, w in zip(got, want, strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)


def test_bfloat16_inputs_give_bfloat16_output_close_to_float32():
    inputs = _inputs(batch=1, length=9, seed=4)
    got = _scan(*(jnp.asarray(t, jnp.bfloat16) for t in inputs), impl="xla", chunk=4)
    assert got.dtype == jnp.bfloat16
    want = _numpy_loop(*(np.asarray(jnp.asarray(t, jnp.bfloat16), np.float64) for t in inputs))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-2, atol=5e-2)


def test_input_checks():
    u, delta, a, b, c, d = _f32(_inputs())
    assert resolve_impl("auto") == ("reference" if jax.default_backend() == "cpu" else "xla")
    with pytest.raises(ValueError, match="delta must have u's shape"):
        selective_scan(u, delta[:, :-1], a, b, c, d)
    with pytest.raises(ValueError, match="a must be"):
        selective_scan(u, delta, a[:-1], b, c, d)
    with pytest.raises(ValueError, match="must divide the number of channels"):
        selective_scan(u, delta, a, b[:, :, :1].repeat(4, axis=2), c[:, :, :1].repeat(4, axis=2), d)
    with pytest.raises(ValueError, match="d must be"):
        selective_scan(u, delta, a, b, c, d[:-1])
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        selective_scan(u, delta, a, b, c, d, chunk=0)
    with pytest.raises(ValueError, match="pallas"):
        selective_scan(u, delta, a, b, c, d, impl="pallas")
