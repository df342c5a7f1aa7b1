"""spectral_filter: every impl against numpy's FFT, its gradients against jax.grad of the reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mixtok.kernels import dft
from mixtok.kernels.spectral_filter import (
    SpectralFilterBlocks,
    resolve_impl,
    spectral_filter,
    spectral_filter_reference,
)
from tests.kernels.backend import ON_GPU, PALLAS, cpu_pallas_only, fp32_tolerance

# "auto" resolves to one of these; test_auto_* checks that it does. On CPU "pallas" runs in Pallas's
# interpreter, which executes the kernel body block by block as written; on a GPU these cases skip
# (tests/kernels/backend.py): test_spectral_filter_mosaic_gpu.py compiles the GPU kernel.
IMPLS = ["reference", "xla", PALLAS]
# Odd, non-square, even-W non-square, and one grid past the Kronecker form (separable DFT).
GRIDS = [(7, 7), (14, 14), (13, 17), (8, 6), (32, 32)]


def _inputs(batch, height, width, channels, per_sample, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, height, width, channels))
    shape = ((batch,) if per_sample else ()) + (height, width // 2 + 1, channels)
    filt = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return jnp.asarray(x, dtype), jnp.asarray(filt, jnp.complex64)


# One compilation per shape; eager mode would compile every small op of the transforms separately.
_jitted_filter = jax.jit(spectral_filter, static_argnames=("impl", "interpret", "blocks"))


def _filter(x, filt, impl, **kwargs):
    return _jitted_filter(x, filt, impl=impl, interpret=impl == "pallas", **kwargs)


def _op(impl):
    return functools.partial(spectral_filter, impl=impl, interpret=impl == "pallas")


def _numpy_filter(x, filt):
    """The op in float64 numpy: irfft2(rfft2(x, ortho) * filt, s=(H, W), ortho)."""
    x = np.asarray(x, np.float64)
    spectrum = np.fft.rfft2(x, axes=(1, 2), norm="ortho") * np.asarray(filt, np.complex128)
    return np.fft.irfft2(spectrum, s=x.shape[1:3], axes=(1, 2), norm="ortho")


def _assert_close(actual, expected, rtol):
    """Error relative to the largest entry of `expected` (a scale-aware absolute tolerance).

    On a GPU an fp32 `rtol` has a floor (tests/kernels/backend.py, "Tolerances")."""
    actual = np.asarray(jnp.asarray(actual).astype(jnp.float32) if actual.dtype == jnp.bfloat16 else actual)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=fp32_tolerance(rtol) * np.abs(expected).max())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("height,width", GRIDS)
def test_matches_numpy_fft_for_static_and_per_sample_filters(impl, height, width):
    for batch, per_sample in [(1, False), (3, False), (1, True), (3, True)]:
        x, filt = _inputs(batch, height, width, 4, per_sample)
        y = _filter(x, filt, impl=impl)
        assert y.shape == x.shape and y.dtype == jnp.float32
        _assert_close(y, _numpy_filter(x, filt), 2e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("height,width", [(8, 6), (7, 7), (13, 17), (6, 20)])
def test_discards_the_imaginary_part_of_the_dc_and_nyquist_columns_like_irfft2(impl, height, width):
    # A filter that is purely imaginary on the k = 0 and k = W/2 columns is not Hermitian-consistent
    # there; irfft2 drops what cannot come from a real signal, and so must every impl.
    x, filt = _inputs(2, height, width, 3, per_sample=False, seed=1)
    columns = [0, width // 2] if width % 2 == 0 else [0]
    filt = filt.at[:, columns].set(1j * jnp.abs(filt[:, columns]) + 0.3)
    _assert_close(_filter(x, filt, impl=impl), _numpy_filter(x, filt), 2e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("height,width", [(14, 14), (13, 17), (32, 32)])
def test_bfloat16_input_returns_bfloat16_within_one_percent(impl, height, width):
    x, filt = _inputs(3, height, width, 8, per_sample=False, dtype=jnp.bfloat16)
    y = _filter(x, filt, impl=impl)
    assert y.dtype == jnp.bfloat16
    _assert_close(y, _numpy_filter(x.astype(jnp.float32), filt), 1e-2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_gradients_pass_numerical_check(impl, per_sample):
    for height, width in [(4, 6), (5, 5)]:  # even W (a Nyquist column) and odd W
        x, filt = _inputs(2, height, width, 2, per_sample, seed=2)
        check_grads(_op(impl), (x, filt), order=1, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)


def _grads(fn, x, filt, seed=3):
    """jax.grad of a real loss <fn(x, filt), r> for a fixed random r, w.r.t. x and filt."""
    weights = jnp.asarray(np.random.default_rng(seed).normal(size=x.shape), jnp.float32)
    return jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32) * weights), argnums=(0, 1)))(x, filt)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("height,width", [(7, 7), (8, 6), (13, 17), (32, 32)])
def test_gradients_equal_jax_grad_of_the_reference(impl, height, width):
    for batch, per_sample in [(3, False), (3, True)]:
        x, filt = _inputs(batch, height, width, 3, per_sample, seed=4)
        dx, dfilt = _grads(_op(impl), x, filt)
        dx_ref, dfilt_ref = _grads(spectral_filter_reference, x, filt)
        assert dfilt.dtype == jnp.complex64 and dfilt.shape == filt.shape
        _assert_close(dx, np.asarray(dx_ref), 2e-6)
        _assert_close(dfilt, np.asarray(dfilt_ref), 2e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_gradients_are_bfloat16_for_x_and_complex64_for_filt(impl):
    x, filt = _inputs(3, 14, 14, 4, per_sample=False, seed=5, dtype=jnp.bfloat16)
    dx, dfilt = _grads(_op(impl), x, filt)
    dx_ref, dfilt_ref = _grads(spectral_filter_reference, x.astype(jnp.float32), filt)
    assert dx.dtype == jnp.bfloat16 and dfilt.dtype == jnp.complex64
    _assert_close(dx, np.asarray(dx_ref), 1e-2)
    _assert_close(dfilt, np.asarray(dfilt_ref), 1e-2)


@pytest.mark.parametrize("impl", IMPLS + ["auto"])
def test_runs_eagerly_and_under_jit_alike(impl):
    x, filt = _inputs(2, 8, 6, 3, per_sample=True, seed=6)
    jitted = jax.jit(_op(impl))
    _assert_close(jitted(x, filt), _numpy_filter(x, filt), 2e-6)
    _assert_close(_op(impl)(x, filt), np.asarray(jitted(x, filt)), 1e-6)


def test_hermitian_weights_are_one_at_dc_and_nyquist_and_two_elsewhere():
    np.testing.assert_array_equal(dft.half_spectrum_weights(6), [1, 2, 2, 1])
    np.testing.assert_array_equal(dft.half_spectrum_weights(7), [1, 2, 2, 2])


def test_auto_follows_the_measured_cpu_threshold():
    if ON_GPU:  # "xla" on every grid until the Mosaic GPU kernel has been measured
        assert resolve_impl("auto", 7, 7) == "xla" and resolve_impl("auto", 56, 56) == "xla"
    else:
        assert jax.default_backend() == "cpu"
        assert resolve_impl("auto", 7, 7) == "xla" and resolve_impl("auto", 56, 56) == "reference"
    assert resolve_impl("reference", 7, 7) == "reference" and resolve_impl("xla", 56, 56) == "xla"


def test_wrong_filter_shape_names_the_expected_shapes():
    x, _ = _inputs(2, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match=r"\[8, 4, 3\].*\[2, 8, 4, 3\].*got \[8, 6, 3\]"):
        spectral_filter(x, jnp.zeros((8, 6, 3), jnp.complex64))


def test_real_filter_is_rejected():
    x, filt = _inputs(2, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="must be complex"):
        spectral_filter(x, jnp.real(filt), impl="xla")


def test_x_that_is_not_nhwc_is_rejected():
    with pytest.raises(ValueError, match="NHWC"):
        spectral_filter(jnp.zeros((8, 6, 3)), jnp.zeros((8, 4, 3), jnp.complex64))


def test_unknown_impl_lists_the_valid_ones():
    x, filt = _inputs(1, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match="Did you mean 'xla'.*auto, pallas, reference, xla"):
        spectral_filter(x, filt, impl="xal")


@pytest.mark.parametrize("old,new", [("fft", "reference"), ("dft", "xla"), ("mosaic_gpu", "pallas")])
def test_impl_names_of_the_first_layout_name_their_successor(old, new):
    x, filt = _inputs(1, 8, 6, 3, per_sample=False)
    with pytest.raises(ValueError, match=f"'{old}' was renamed to '{new}'.*auto, pallas, reference, xla"):
        spectral_filter(x, filt, impl=old)


@pytest.mark.parametrize(
    "channels,block,expected",
    [(4, 128, 4), (256, 128, 128), (384, 128, 128), (320, 128, 320), (768, 256, 256), (640, 256, 128)],
)
def test_channel_block_divides_the_channels(channels, block, expected):
    assert SpectralFilterBlocks(channels=block).channel_block(channels) == expected


@cpu_pallas_only
@pytest.mark.parametrize("per_sample", [False, True])
def test_pallas_with_several_channel_blocks_matches_numpy_and_sums_the_filter_gradient_over_the_batch(per_sample):
    # 8 channels in blocks of 4 (the 128 rule does not bind below the block size): 2 x 3 programs,
    # and the static filter's gradient accumulates over the batch, the grid's inner axis.
    blocks = SpectralFilterBlocks(channels=4)
    assert blocks.channel_block(8) == 4
    x, filt = _inputs(3, 7, 6, 8, per_sample, seed=7)
    _assert_close(_filter(x, filt, "pallas", blocks=blocks), _numpy_filter(x, filt), 2e-6)
    op = functools.partial(spectral_filter, impl="pallas", interpret=True, blocks=blocks)
    dx, dfilt = _grads(op, x, filt)
    dx_ref, dfilt_ref = _grads(spectral_filter_reference, x, filt)
    _assert_close(dx, np.asarray(dx_ref), 2e-6)
    _assert_close(dfilt, np.asarray(dfilt_ref), 2e-6)


@cpu_pallas_only
def test_pallas_is_one_kernel_forward_and_one_backward():
    x, filt = _inputs(2, 7, 7, 4, per_sample=False)
    forward = jax.make_jaxpr(_op("pallas"))(x, filt)
    train = jax.make_jaxpr(lambda a, b: jax.vjp(_op("pallas"), a, b)[1](a))(x, filt)
    assert str(forward).count("pallas_call") == 1
    assert str(train).count("pallas_call") == 2  # the forward (for the primal) and the gradient kernel


@pytest.mark.skipif(ON_GPU, reason="on a GPU impl='pallas' compiles without interpret")
def test_pallas_on_cpu_without_interpret_says_to_pass_it():
    x, filt = _inputs(1, 7, 7, 2, per_sample=False)
    with pytest.raises(ValueError, match="interpret=True"):
        spectral_filter(x, filt, impl="pallas")


def test_pallas_rejects_grids_past_its_kronecker_form():
    x, filt = _inputs(1, 40, 40, 2, per_sample=False)
    with pytest.raises(ValueError, match="at most 1024 pixels.*40x40 = 1600.*impl='xla'"):
        spectral_filter(x, filt, impl="pallas", interpret=True)
