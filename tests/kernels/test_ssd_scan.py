"""ssd_scan: both impls against a float64 numpy per-step recurrence and the explicit semiseparable matrix y = M x,
their gradients against each other, and the input checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.kernels.ssd_scan import resolve_impl, ssd_scan


def _inputs(batch=2, length=13, heads=4, width=3, groups=2, state=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, length, heads, width))
    dt = np.log1p(np.exp(rng.normal(size=(batch, length, heads))))  # softplus: positive steps
    a = -np.exp(rng.normal(size=heads) * 0.5)
    b = rng.normal(size=(batch, length, groups, state))
    c = rng.normal(size=(batch, length, groups, state))
    return x, dt, a, b, c


def _numpy_recurrence(x, dt, a, b, c):
    """S_t = exp(dt_t a) S_{t-1} + dt_t x_t b_t^T, y_t = S_t c_t, one step at a time in float64."""
    batch, length, heads, width = x.shape
    rep = heads // b.shape[2]
    y = np.zeros_like(x)
    for n in range(batch):
        for h in range(heads):
            s = np.zeros((width, b.shape[3]))
            for t in range(length):
                s = np.exp(dt[n, t, h] * a[h]) * s + dt[n, t, h] * np.outer(x[n, t, h], b[n, t, h // rep])
                y[n, t, h] = s @ c[n, t, h // rep]
    return y


def _numpy_matrix(x, dt, a, b, c):
    """y = M x with M[i, j] = (c_i . b_j) exp(a sum_{k=j+1..i} dt_k) dt_j for j <= i, built entry by entry."""
    batch, length, heads, _ = x.shape
    rep = heads // b.shape[2]
    y = np.zeros_like(x)
    for n in range(batch):
        for h in range(heads):
            m = np.zeros((length, length))
            for i in range(length):
                for j in range(i + 1):
                    m[i, j] = c[n, i, h // rep] @ b[n, j, h // rep] * np.exp(a[h] * dt[n, j + 1 : i + 1, h].sum())
                    m[i, j] *= dt[n, j, h]
            y[n, :, h] = m @ x[n, :, h]
    return y


_scan = jax.jit(ssd_scan, static_argnames=("impl", "chunk"))


@pytest.mark.parametrize(("impl", "chunk"), [("reference", 64), ("xla", 4), ("xla", 13)])
def test_against_recurrence_and_matrix(impl, chunk):
    # L = 13: chunk 4 does not divide it (3 padded rows), 13 does (one chunk); chunk > L: the next test.
    inputs = _inputs()
    want = _numpy_recurrence(*inputs)
    np.testing.assert_allclose(_numpy_matrix(*inputs), want, rtol=1e-10, atol=1e-10)  # the two forms agree
    got = _scan(*(jnp.asarray(t, jnp.float32) for t in inputs), impl=impl, chunk=chunk)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


def test_chunk_of_one_a_single_step_and_a_chunk_longer_than_the_sequence():
    for length, chunk in ((6, 1), (1, 64), (6, 64)):
        inputs = _inputs(batch=1, length=length, heads=2, groups=1, seed=3)
        got = _scan(*(jnp.asarray(t, jnp.float32) for t in inputs), impl="xla", chunk=chunk)
        np.testing.assert_allclose(np.asarray(got), _numpy_recurrence(*inputs), rtol=2e-5, atol=2e-5)


def test_gradients_match_reference():
    inputs = tuple(jnp.asarray(t, jnp.float32) for t in _inputs(length=11, seed=1))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=inputs[0].shape), jnp.float32)

    def loss(impl, chunk):
        return jax.jit(jax.grad(lambda *t: jnp.sum(ssd_scan(*t, impl=impl, chunk=chunk) * weights), argnums=range(5)))

    want = loss("reference", 64)(*inputs)
    got = loss("xla", 4)(*inputs)
    for g, w in zip(got, want, strict=True):
        assert np.all(np.isfinite(np.asarray(g)))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-4, atol=1e-4)


def test_bfloat16_inputs_give_bfloat16_output_close_to_float32():
    inputs = _inputs(batch=1, length=9, seed=4)
    got = _scan(*(jnp.asarray(t, jnp.bfloat16) for t in inputs), impl="xla", chunk=4)
    assert got.dtype == jnp.bfloat16
    want = _numpy_recurrence(*(np.asarray(jnp.asarray(t, jnp.bfloat16), np.float64) for t in inputs))
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=2e-2, atol=5e-2)


def test_input_checks():
    x, dt, a, b, c = (jnp.asarray(t, jnp.float32) for t in _inputs())
    assert resolve_impl("auto") == "xla"
    with pytest.raises(ValueError, match="dt must be"):
        ssd_scan(x, dt[:, :-1], a, b, c)
    with pytest.raises(ValueError, match="a must be"):
        ssd_scan(x, dt, a[:-1], b, c)
    with pytest.raises(ValueError, match="must divide the number of heads"):
        ssd_scan(x, dt, a, b[:, :, :1].repeat(3, axis=2), c[:, :, :1].repeat(3, axis=2))
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        ssd_scan(x, dt, a, b, c, chunk=0)
    with pytest.raises(ValueError, match="pallas"):
        ssd_scan(x, dt, a, b, c, impl="pallas")
