"""The Mosaic GPU forward spectral filter against numpy's FFT: interpreted on CPU, compiled on a Hopper GPU.

On CPU the kernel runs in the Mosaic GPU CPU interpreter, private JAX API
(jax._src.pallas.mosaic_gpu.interpret, wgmma since jax 0.10.2): the interpreter tests skip, saying
why, where it cannot be imported. It runs the kernel's TMA copies, barriers, wgmmas and SMEM
loads/stores on CPU with NaN-initialised scratch SMEM, so a pass also shows that no unwritten SMEM
slot reaches the result. It does not compile or time anything. On a Hopper GPU the same tests
compile the kernel with Mosaic GPU and run it (the `interpret` fixture; tests/kernels/backend.py),
and the public op is checked at the benchmark's target grid. Shapes are kept small: the whole file
runs in well under a minute on a 2-core CPU.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.kernels.spectral_filter import spectral_filter, spectral_filter_reference
from mixtok.kernels.spectral_filter.mosaic_gpu import (
    SMEM_LIMIT,
    _axis,
    check_inputs,
    fold_filter,
    mosaic_gpu_op,
    smem_plan,
    spectral_filter_forward_mgpu,
)
from tests.kernels.backend import gpu_only, mosaic_gpu_interpret, skip_interpreter_on_gpu


@pytest.fixture
def interpreter():
    """The interpreter's private modules; skips (with the reason) if this JAX does not have them, and on a GPU."""
    skip_interpreter_on_gpu()
    params = pytest.importorskip(
        "jax._src.pallas.mosaic_gpu.interpret.params",
        reason="the Mosaic GPU CPU interpreter (private jax._src.pallas.mosaic_gpu.interpret) is not in this JAX",
    )
    callbacks = pytest.importorskip(
        "jax._src.pallas.mosaic_gpu.interpret.gpu_callbacks",
        reason="the Mosaic GPU interpreter's gpu_callbacks module is missing",
    )
    callbacks.reset_gpu_interpret_mode_state()  # a failed earlier run leaves its state behind
    yield params
    callbacks.reset_gpu_interpret_mode_state()


@pytest.fixture
def interpret(request):
    """The kernels' `interpret`: True (the interpreter, set up) on CPU, False (compiled) on a Hopper GPU."""
    return mosaic_gpu_interpret(request)


def _inputs(batch, height, width, channels, per_sample, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(batch, height, width, channels)), jnp.bfloat16)
    shape = ((batch,) if per_sample else ()) + (height, width // 2 + 1, channels)
    filt = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return x, filt


def _numpy_filter(x, filt):
    """irfft2(rfft2(x, ortho) * filt, ortho) in float64 on the bf16-rounded input."""
    x = np.asarray(x.astype(jnp.float32), np.float64)
    spectrum = np.fft.rfft2(x, axes=(1, 2), norm="ortho") * filt
    return np.fft.irfft2(spectrum, s=x.shape[1:3], axes=(1, 2), norm="ortho")


def _assert_close(actual, expected, rtol):
    """Error relative to the largest entry of `expected` (bf16 output: 2^-8 per entry)."""
    actual = np.asarray(actual.astype(jnp.float32))
    assert not np.isnan(actual).any(), "NaN in the output: the kernel read an unwritten SMEM slot"
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


# (H, W, batch, per-sample filter, C, block_channels): 7x7 (axes shorter than 64: 8-row boxes),
# 14x14 (the target; Cb 128 is the single-buffered 224 KiB plan), 13x17 (odd, non-square).
CASES = [
    (7, 7, 1, False, 64, 64),
    (7, 7, 3, True, 128, 128),
    (14, 14, 1, True, 128, 64),
    (14, 14, 3, True, 64, 64),
    (14, 14, 3, False, 128, 128),
    (13, 17, 3, True, 64, 64),
    (13, 17, 1, False, 128, 128),
]


@pytest.mark.parametrize("height,width,batch,per_sample,channels,block", CASES)
def test_kernel_matches_numpy_fft(interpret, height, width, batch, per_sample, channels, block):
    x, filt = _inputs(batch, height, width, channels, per_sample)
    filt_real, filt_imag = fold_filter(jnp.asarray(filt, jnp.complex64), width)
    y = spectral_filter_forward_mgpu(x, filt_real, filt_imag, block_channels=block, interpret=interpret)
    assert y.shape == x.shape and y.dtype == jnp.bfloat16
    _assert_close(y, _numpy_filter(x, filt), 1e-2)


def test_interpreter_race_detector_finds_no_race(interpreter):
    from jax._src.pallas.mosaic_gpu.interpret import interpret_pallas_call  # noqa: PLC0415

    x, filt = _inputs(2, 7, 7, 64, per_sample=True, seed=1)
    filt_real, filt_imag = fold_filter(jnp.asarray(filt, jnp.complex64), 7)
    y = spectral_filter_forward_mgpu(
        x, filt_real, filt_imag, interpret=interpreter.InterpretGPUParams(detect_races=True)
    )
    _assert_close(y, _numpy_filter(x, filt), 1e-2)
    assert not interpret_pallas_call.get_races().races_found


@pytest.mark.parametrize("n", [8, 12, 28, 49, 63, 64, 112, 117, 196, 221, 256, 300])
def test_slot_layout_covers_every_row_once_with_in_bounds_8_row_boxes(n):
    axis = _axis(n)
    assert axis.slots % 64 == 0 and axis.slots >= n
    for j, chunk in enumerate(axis.chunks):
        covered = sorted(s for slot, _, count in chunk for s in range(slot, slot + count))
        assert covered == list(range(64 * j, 64 * j + 64))  # each chunk filled exactly
        for slot, row, count in chunk:
            assert slot % 8 == 0 and count % 8 == 0 and 0 <= row and row + count <= n
    for _slot, row, count in axis.merged_boxes():
        assert count <= 256 and row + count <= n
    assert sorted(axis.source[axis.first]) == list(range(n))  # every row exactly once as "first"
    stored = set()
    for j in range(len(axis.chunks)):
        for slot, row, count in axis.store_boxes(j):
            assert 64 * j <= slot and slot + count <= 64 * j + 64 and slot % 8 == 0 and count % 8 == 0
            assert list(axis.source[slot : slot + count]) == list(range(row, row + count))
            stored.update(range(row, row + count))
    assert stored == set(range(n))  # every output row is stored


def test_smem_plan_at_14x14_matches_the_documented_budget():
    plan64, plan128 = smem_plan(14, 14, 64), smem_plan(14, 14, 128)
    kib = 1024
    assert (plan64.matrix_slots, plan64.filter_slots) == (2, 2)
    assert plan64.total_bytes - plan64.bytes()["barriers"] == 192 * kib
    assert (plan128.matrix_slots, plan128.filter_slots) == (1, 1)
    assert plan128.total_bytes - plan128.bytes()["barriers"] == 224 * kib
    assert plan128.total_bytes <= SMEM_LIMIT


def test_rejects_inputs_outside_the_contract():
    x, filt = _inputs(1, 7, 7, 64, per_sample=False)
    filt_real, filt_imag = fold_filter(jnp.asarray(filt, jnp.complex64), 7)
    with pytest.raises(ValueError, match="bfloat16"):
        check_inputs(x.astype(jnp.float32), filt_real, filt_imag, 64)
    with pytest.raises(ValueError, match="multiple of block_channels"):
        check_inputs(x, filt_real, filt_imag, 128)  # C = 64
    with pytest.raises(ValueError, match="filt_real must be"):
        check_inputs(x, filt_real[:-1], filt_imag, 64)
    with pytest.raises(ValueError, match="float32"):
        check_inputs(x, filt_real.astype(jnp.bfloat16), filt_imag, 64)
    with pytest.raises(ValueError, match="block_channels must be"):
        check_inputs(x, filt_real, filt_imag, 32)


def test_the_gpu_pallas_op_runs_this_kernel_forward_and_the_xla_gradient_backward(interpret):
    # What spectral_filter(impl="pallas") runs on a GPU, with the kernel interpreted on CPU.
    x, filt = _inputs(2, 7, 7, 64, per_sample=False, seed=3)
    filt = jnp.asarray(filt, jnp.complex64)
    op = mosaic_gpu_op(64, interpret=interpret)
    y = op(x, filt)
    expected = _numpy_filter(x, filt)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y, np.float32), expected, rtol=0, atol=1e-2 * np.abs(expected).max())
    weights = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)

    def loss(fn):
        return lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32) * weights)

    # Jitted: eager grad dispatches the backward's ops while the interpreted forward is still running,
    # and the interpreter's io_callbacks (which run eager JAX ops themselves) then deadlock with them
    # on a 2-core CPU (5 hangs in 24 runs of the eager form, 0 in 30 jitted).
    dx, dfilt = jax.jit(jax.grad(loss(op), argnums=(0, 1)))(x, filt)
    dx_ref, dfilt_ref = jax.grad(loss(spectral_filter_reference), argnums=(0, 1))(x.astype(jnp.float32), filt)
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx_ref, rtol=0, atol=1e-2 * np.abs(dx_ref).max())
    np.testing.assert_allclose(dfilt, dfilt_ref, rtol=0, atol=1e-2 * np.abs(dfilt_ref).max())


@gpu_only
@pytest.mark.parametrize("height,width,batch,channels,per_sample", [(14, 14, 8, 384, False), (7, 7, 4, 512, True)])
def test_public_pallas_impl_compiles_on_gpu_and_matches_the_reference(height, width, batch, channels, per_sample):
    # spectral_filter(impl="pallas") on a GPU, as the benchmark runs it: the dispatch, the default
    # blocks (capped at 64 channels per CTA there), the Mosaic GPU forward and the "xla" gradient.
    x, filt_np = _inputs(batch, height, width, channels, per_sample, seed=5)
    filt = jnp.asarray(filt_np, jnp.complex64)
    y = jax.jit(lambda a, b: spectral_filter(a, b, impl="pallas"))(x, filt)
    assert y.dtype == jnp.bfloat16
    _assert_close(y, _numpy_filter(x, filt_np), 1e-2)
    weights = jnp.asarray(np.random.default_rng(6).normal(size=x.shape), jnp.float32)

    def grads(fn, a):
        return jax.jit(jax.grad(lambda a, b: jnp.sum(fn(a, b).astype(jnp.float32) * weights), argnums=(0, 1)))(a, filt)

    dx, dfilt = grads(lambda a, b: spectral_filter(a, b, impl="pallas"), x)
    dx_ref, dfilt_ref = grads(spectral_filter_reference, x.astype(jnp.float32))
    assert dx.dtype == jnp.bfloat16 and dfilt.dtype == jnp.complex64
    # The backward is the bf16 "xla" one (bf16 GEMMs, checked on CPU to 1e-2 at 14x14): 2e-2 here.
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx_ref, rtol=0, atol=2e-2 * np.abs(dx_ref).max())
    np.testing.assert_allclose(dfilt, dfilt_ref, rtol=0, atol=2e-2 * np.abs(dfilt_ref).max())
