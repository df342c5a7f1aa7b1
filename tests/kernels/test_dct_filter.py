"""dct_filter: every impl against scipy's DCT in float64, its gradients against jax.grad of the reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from jax.test_util import check_grads

from mixtok.kernels.dct_filter import dct_filter, dct_filter_reference, dct_matrix, resolve_impl
from mixtok.kernels.dct_filter import xla as dct_xla

IMPLS = ["reference", "xla"]  # "auto" resolves to one of these; test_auto_* checks which
# Odd, even, non-square, and one grid past the Kronecker form (the separable GEMMs).
GRIDS = [(7, 7), (14, 14), (13, 17), (32, 32)]


def _inputs(batch, height, width, channels, per_sample, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, height, width, channels))
    filt = rng.normal(size=((batch,) if per_sample else ()) + (height, width, channels))
    return jnp.asarray(x, dtype), jnp.asarray(filt, jnp.float32)


_filter = jax.jit(dct_filter, static_argnames=("impl",))  # eager mode would compile op by op


def _scipy_filter(x, filt):
    """The op in float64 scipy: idctn(dctn(x, type 2, ortho) * filt, type 2, ortho) over (H, W)."""
    x = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
    spectrum = scipy.fft.dctn(x, type=2, axes=(1, 2), norm="ortho") * np.asarray(filt, np.float64)
    return scipy.fft.idctn(spectrum, type=2, axes=(1, 2), norm="ortho")


def _assert_close(actual, expected, rtol, message=""):
    """Error relative to the largest entry of `expected` (a scale-aware absolute tolerance)."""
    actual = np.asarray(jnp.asarray(actual, jnp.float32))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max(), err_msg=message)


CASES = [(1, False), (3, False), (1, True), (3, True)]  # (batch, per-sample filter)
# Every grid and case in one program per test: compiling jax's FFT-based DCT costs ~1.5 s a program
# on a 2-core CPU, and one program for all shapes keeps the "reference" tests within seconds.


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_scipy_dct_for_static_and_per_sample_filters(impl):
    inputs = [_inputs(batch, h, w, 4, per_sample) for h, w in GRIDS for batch, per_sample in CASES]
    outputs = jax.jit(lambda pairs: [dct_filter(x, filt, impl=impl) for x, filt in pairs])(inputs)
    for (x, filt), y in zip(inputs, outputs):
        assert y.shape == x.shape and y.dtype == jnp.float32
        _assert_close(y, _scipy_filter(x, filt), 1e-5, f"x {x.shape}, filt {filt.shape}")


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_input_returns_bfloat16_within_one_percent(impl):
    inputs = [_inputs(3, h, w, 8, per_sample=True, dtype=jnp.bfloat16) for h, w in [(14, 14), (13, 17), (32, 32)]]
    outputs = jax.jit(lambda pairs: [dct_filter(x, filt, impl=impl) for x, filt in pairs])(inputs)
    for (x, filt), y in zip(inputs, outputs):
        assert y.dtype == jnp.bfloat16
        _assert_close(y, _scipy_filter(x, filt), 1e-2, f"x {x.shape}")


def test_dct_matrix_is_orthonormal_and_is_scipys_dct():
    for size in [1, 2, 7, 16]:
        matrix = dct_matrix(size)
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(size), atol=1e-12)
        np.testing.assert_allclose(matrix, scipy.fft.dct(np.eye(size), type=2, norm="ortho", axis=0), atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_is_a_circular_convolution_of_the_mirror_extended_map(impl):
    # An independent form: reflect the map to 2H x 2W and convolve circularly with the even kernel
    # whose DFT is the filter mirrored (zero at the Nyquist row and column).
    height, width = 5, 6
    x, filt = _inputs(1, height, width, 1, per_sample=False, seed=7)
    f = np.asarray(filt[..., 0], np.float64)

    def mirror(values, n, axis):  # [v0 .. v_{n-1}] -> [v0 .. v_{n-1}, 0, v_{n-1} .. v1] along axis
        values = np.moveaxis(values, axis, 0)
        out = np.concatenate([values, np.zeros_like(values[:1]), values[1:][::-1]])
        return np.moveaxis(out, 0, axis)

    kernel_dft = mirror(mirror(f, height, 0), width, 1)
    plane = np.asarray(x[0, ..., 0], np.float64)
    extended = np.block([[plane, plane[:, ::-1]], [plane[::-1], plane[::-1, ::-1]]])
    expected = np.fft.ifft2(np.fft.fft2(extended) * kernel_dft).real[:height, :width]
    _assert_close(_filter(x, filt, impl=impl)[0, ..., 0], expected, 1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_pass_numerical_check(impl):
    x, static = _inputs(2, 5, 6, 2, per_sample=False, seed=2)
    _, per_sample = _inputs(2, 5, 6, 2, per_sample=True, seed=3)

    def both(x, static, per_sample):  # one program checks a static and a per-sample filter
        return dct_filter(x, static, impl=impl) + 0.5 * dct_filter(x, per_sample, impl=impl)

    check_grads(jax.jit(both), (x, static, per_sample), order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)


def _grads(fn, x, filt, seed=3):
    """jax.grad of a real loss <fn(x, filt), r> for a fixed random r, w.r.t. x and filt."""
    weights = jnp.asarray(np.random.default_rng(seed).normal(size=x.shape), jnp.float32)
    return jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32) * weights), argnums=(0, 1))(x, filt)


def _gradient_cases():
    return [
        _inputs(3, h, w, 3, per_sample, seed=4) for h, w in [(7, 7), (13, 17), (32, 32)] for per_sample in (False, True)
    ]


@functools.cache
def _reference_gradients():
    """jax.grad of the reference on every gradient case, computed once for both impls."""
    return jax.jit(lambda pairs: [_grads(dct_filter_reference, *pair) for pair in pairs])(_gradient_cases())


@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_equal_jax_grad_of_the_reference(impl):
    inputs = _gradient_cases()
    grads = jax.jit(lambda pairs: [_grads(functools.partial(dct_filter, impl=impl), *pair) for pair in pairs])(inputs)
    for (x, filt), (dx, dfilt), (dx_ref, dfilt_ref) in zip(inputs, grads, _reference_gradients()):
        assert dfilt.dtype == jnp.float32 and dfilt.shape == filt.shape
        _assert_close(dx, np.asarray(dx_ref), 1e-5, f"dx, x {x.shape}, filt {filt.shape}")
        _assert_close(dfilt, np.asarray(dfilt_ref), 1e-5, f"dfilt, x {x.shape}, filt {filt.shape}")


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_gradients_are_bfloat16_for_x_and_float32_for_filt(impl):
    x, filt = _inputs(3, 14, 14, 4, per_sample=False, seed=5, dtype=jnp.bfloat16)
    dx, dfilt = jax.jit(functools.partial(_grads, functools.partial(dct_filter, impl=impl)))(x, filt)
    dx_ref, dfilt_ref = jax.jit(functools.partial(_grads, dct_filter_reference))(x.astype(jnp.float32), filt)
    assert dx.dtype == jnp.bfloat16 and dfilt.dtype == jnp.float32
    _assert_close(dx, np.asarray(dx_ref), 1e-2)
    _assert_close(dfilt, np.asarray(dfilt_ref), 1e-2)


@pytest.mark.parametrize("impl", ["xla", "auto"])  # the custom VJP wrapper is the same for "reference"
def test_runs_eagerly_and_under_jit_alike(impl):
    x, filt = _inputs(2, 8, 6, 3, per_sample=True, seed=6)
    jitted = jax.jit(functools.partial(dct_filter, impl=impl))
    _assert_close(jitted(x, filt), _scipy_filter(x, filt), 1e-5)
    _assert_close(dct_filter(x, filt, impl=impl), np.asarray(jitted(x, filt)), 1e-6)


def test_auto_follows_the_measured_cpu_threshold():
    assert jax.default_backend() == "cpu"
    assert resolve_impl("auto", 7, 7) == "xla" and resolve_impl("auto", 256, 256) == "xla"
    assert resolve_impl("auto", 512, 512) == "reference"
    assert resolve_impl("reference", 7, 7) == "reference" and resolve_impl("xla", 512, 512) == "xla"


def test_kronecker_and_separable_forms_agree():
    x, filt = _inputs(2, 6, 5, 3, per_sample=True, seed=8)
    kronecker = dct_filter(x, filt, impl="xla")
    original = dct_xla.KRONECKER_MAX_PIXELS
    dct_xla.KRONECKER_MAX_PIXELS = 0
    try:
        separable = dct_filter(x, filt, impl="xla")
    finally:
        dct_xla.KRONECKER_MAX_PIXELS = original
    _assert_close(kronecker, np.asarray(separable), 1e-6)


def test_wrong_filter_shape_names_the_expected_shapes():
    x, _ = _inputs(2, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match=r"\[8, 6, 3\].*\[2, 8, 6, 3\].*got \[8, 4, 3\]"):
        dct_filter(x, jnp.zeros((8, 4, 3)))


def test_complex_filter_is_rejected():
    x, filt = _inputs(2, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="must be real"):
        dct_filter(x, filt.astype(jnp.complex64), impl="xla")


def test_integer_input_is_rejected():
    _, filt = _inputs(2, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="x must be real floating point.*int32"):
        dct_filter(jnp.zeros((2, 8, 6, 3), jnp.int32), filt)


def test_x_that_is_not_nhwc_is_rejected():
    with pytest.raises(ValueError, match="NHWC"):
        dct_filter(jnp.zeros((8, 6, 3)), jnp.zeros((8, 6, 3)))


def test_unknown_impl_lists_the_valid_ones():
    x, filt = _inputs(1, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="Did you mean 'xla'.*auto, reference, xla"):
        dct_filter(x, filt, impl="xal")


@pytest.mark.parametrize("old,new", [("fft", "reference"), ("dct", "xla")])
def test_impl_names_of_the_first_layout_name_their_successor(old, new):
    x, filt = _inputs(1, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match=f"'{old}' was renamed to '{new}'.*auto, reference, xla"):
        dct_filter(x, filt, impl=old)


def test_pallas_says_there_is_no_kernel_and_names_the_impls_there_are():
    x, filt = _inputs(1, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="no 'pallas' implementation yet.*auto, reference, xla"):
        dct_filter(x, filt, impl="pallas")
