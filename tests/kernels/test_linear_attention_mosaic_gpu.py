"""The Mosaic GPU forward linear attention against the reference: interpreted on CPU, compiled on a Hopper GPU.

On CPU the kernels run in the Mosaic GPU CPU interpreter; on a Hopper GPU the same tests compile
them with Mosaic GPU and run them (the `interpret` fixture; tests/kernels/backend.py), and the
public op is checked at a stage's length. The interpreter is private JAX API
(jax._src.pallas.mosaic_gpu.interpret, wgmma since jax 0.10.2): the interpreter tests skip, saying
why, where it cannot be imported. It runs the kernels' TMA copies, barriers, wgmmas and SMEM
loads/stores on CPU with NaN-initialised scratch SMEM, so a pass also shows that no unwritten SMEM
slot reaches the result. jax 0.10.2's interpreter has no rule for wgmma operands made with
`plgpu.transpose_ref` (its wgmma reads every operand through index transforms only); the
`interpreter` fixture adds one (`_wgmma_with_transposed_operands`): read the operand through its
indexers, then apply the trailing transpose (jax 0.11's interpreter reads transposes itself, and its
wgmma takes other arguments, so there the fixture leaves it alone). Separately, the kernels are put through Pallas's
Mosaic GPU lowering with `jax.export(..., platforms=["cuda"])`, which runs on a CPU. On CPU nothing
is compiled to PTX, run on a GPU or timed.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.kernels.linear_attention import DEFAULT_BLOCKS, DEFAULT_EPS, linear_attention, linear_attention_reference
from mixtok.kernels.linear_attention.mosaic_gpu import (
    HEAD_DIMS,
    _forward,
    check_mgpu_inputs,
    linear_attention_mgpu_forward,
    mosaic_gpu_op,
    smem_bytes,
)
from mixtok.kernels.linear_attention.pallas_tpu import pallas_forward
from mixtok.kernels.linear_attention.xla import xla_forward
from mixtok.kernels.mosaic_gpu_common import SMEM_LIMIT
from tests.kernels.backend import gpu_only, mosaic_gpu_interpret, skip_interpreter_on_gpu


def _wgmma_with_transposed_operands(callbacks):
    """gpu_callbacks.wgmma, extended to operands whose last transform is a TransposeTransform."""
    from jax._src.pallas.mosaic.interpret import utils as interpret_utils  # noqa: PLC0415
    from jax._src.state.types import TransposeTransform  # noqa: PLC0415

    def wgmma(
        *,
        token,
        device_id,
        grid_point_coords,
        thread_id,
        acc_allocation_key_as_array,
        acc_transforms,
        acc_dtype,
        a_allocation_key_as_array,
        a_transforms,
        b_allocation_key_as_array,
        b_transforms,
        source_info=None,
    ):
        device_id, thread_id = int(device_id), int(thread_id)
        shared_memory = callbacks._get_shared_memory()
        global_thread_id = shared_memory.get_global_thread_id(device_id, thread_id)
        logging_info = interpret_utils.GPULoggingInfo(
            device_id=device_id,
            grid_point_coords=tuple(int(x) for x in grid_point_coords),
            thread_id=thread_id,
            source_info=source_info,
        )

        def operand(key_as_array, transforms):
            transforms = callbacks._remove_noop_transforms(transforms)
            permutation = None
            if transforms and isinstance(transforms[-1], TransposeTransform):
                permutation, transforms = transforms[-1].permutation, transforms[:-1]
            if any(isinstance(t, TransposeTransform) for t in transforms):
                raise ValueError(
                    f"this interpreter rule reads a transpose only as the last transform (the "
                    f"kernels' only use); got {transforms}"
                )
            key = callbacks.HostAllocationKey.from_array(key_as_array)
            rnge = interpret_utils.to_range(jax.tree.map(int, transforms))
            value, _, _ = shared_memory.get_buffer_content(key, rnge, global_thread_id, logging_info=logging_info)
            return (value if permutation is None else np.transpose(value, permutation)), key, rnge

        a, _, _ = operand(a_allocation_key_as_array, a_transforms)
        b, _, _ = operand(b_allocation_key_as_array, b_transforms)
        acc, acc_key, acc_range = operand(acc_allocation_key_as_array, acc_transforms)
        shared_memory.store_buffer_content(
            acc_key, acc_range, acc + np.matmul(a, b, dtype=acc_dtype), global_thread_id, logging_info=logging_info
        )
        return token

    return wgmma


@pytest.fixture
def interpreter(monkeypatch):
    """The interpreter's params module; skips (with the reason) where this JAX lacks the interpreter, and on a GPU."""
    skip_interpreter_on_gpu()
    params = pytest.importorskip(
        "jax._src.pallas.mosaic_gpu.interpret.params",
        reason="the Mosaic GPU CPU interpreter (private jax._src.pallas.mosaic_gpu.interpret) is not in this JAX",
    )
    callbacks = pytest.importorskip(
        "jax._src.pallas.mosaic_gpu.interpret.gpu_callbacks",
        reason="the Mosaic GPU interpreter's gpu_callbacks module is missing",
    )
    if "device_id" in inspect.signature(callbacks.wgmma).parameters:  # jax 0.10's wgmma rule: no transposes
        for name in ("_get_shared_memory", "_remove_noop_transforms", "HostAllocationKey"):
            if not hasattr(callbacks, name):
                pytest.skip(f"the Mosaic GPU interpreter's gpu_callbacks has no {name} (another JAX version)")
        monkeypatch.setattr(callbacks, "wgmma", _wgmma_with_transposed_operands(callbacks))
    callbacks.reset_gpu_interpret_mode_state()  # a failed earlier run leaves its state behind
    yield params
    callbacks.reset_gpu_interpret_mode_state()


@pytest.fixture
def interpret(request):
    """The kernels' `interpret`: True (the interpreter, set up) on CPU, False (compiled) on a Hopper GPU."""
    return mosaic_gpu_interpret(request)


def _inputs(batch_heads, length, head_dim, value_dim, seed=0):
    rng = np.random.default_rng(seed)
    shape = (1, batch_heads, length)
    q, k = (jnp.asarray(rng.normal(size=shape + (head_dim,)), jnp.bfloat16) for _ in range(2))
    v = jnp.asarray(rng.normal(size=shape + (value_dim,)), jnp.bfloat16)
    return q, k, v


def _relative_error(actual, expected):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    assert not np.isnan(actual).any(), "NaN in the output: the kernel read an unwritten SMEM slot"
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


# (causal, feature map, L, d, dv): L 64 (one tile), 100 (padded: 28 masked keys), 192 (three tiles:
# the pair loop and the odd tail); d = 128 (two row chunks of S), dv = 128 (two value-block programs).
CASES = [
    (False, "elu1", 64, 64, 64),
    (False, "elu1", 100, 64, 64),
    (False, "elu1", 192, 64, 64),
    (False, "identity", 100, 64, 64),
    (False, "identity", 192, 64, 64),
    (False, "relu", 100, 128, 128),
    (True, "elu1", 64, 64, 64),
    (True, "elu1", 100, 64, 64),
    (True, "elu1", 192, 64, 64),
    (True, "identity", 100, 64, 64),
    (True, "identity", 192, 64, 64),
    (True, "relu", 100, 128, 128),
]


@pytest.mark.parametrize("causal,feature_map,length,head_dim,value_dim", CASES)
def test_kernel_matches_the_reference(interpret, causal, feature_map, length, head_dim, value_dim):
    q, k, v = _inputs(2, length, head_dim, value_dim)
    o, den = linear_attention_mgpu_forward(q, k, v, causal=causal, feature_map=feature_map, interpret=interpret)
    assert o.shape == v.shape and o.dtype == jnp.bfloat16
    assert den.shape == q.shape[:3] and den.dtype == jnp.float32
    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    expected = linear_attention_reference(*f32, causal=causal, feature_map=feature_map)
    assert _relative_error(o, expected) < 1e-2
    _, expected_den = xla_forward(*f32, causal, feature_map, 1e-6, 64)
    assert _relative_error(den, expected_den) < 1e-2


def test_returns_what_the_pallas_forward_returns(interpret):
    # The drop-in contract: same shapes, dtypes and values as pallas_forward (Pallas's interpreter).
    q, k, v = _inputs(2, 100, 64, 64, seed=1)
    for causal in (False, True):
        o, den = linear_attention_mgpu_forward(q, k, v, causal=causal, feature_map="elu1", interpret=interpret)
        o_ref, den_ref = pallas_forward(q, k, v, causal, "elu1", 1e-6, DEFAULT_BLOCKS, True)
        assert (o.shape, o.dtype, den.shape, den.dtype) == (o_ref.shape, o_ref.dtype, den_ref.shape, den_ref.dtype)
        assert _relative_error(o, o_ref) < 1e-2 and _relative_error(den, den_ref) < 1e-2


def test_the_gpu_pallas_op_gives_reference_outputs_and_gradients(interpret):
    # What linear_attention(impl="pallas") runs on a GPU: mosaic_gpu_op, this forward and the "xla" backward.
    causal, feature_map = True, "elu1"
    op = mosaic_gpu_op(causal, feature_map, DEFAULT_EPS, DEFAULT_BLOCKS.chunk, interpret)
    q, k, v = _inputs(2, 100, 64, 64, seed=3)
    weights = jnp.asarray(np.random.default_rng(4).normal(size=v.shape), jnp.float32)

    def loss(fn):
        return lambda *args: jnp.sum(fn(*args).astype(jnp.float32) * weights)

    reference = functools.partial(linear_attention_reference, causal=causal, feature_map=feature_map)
    expected_out = reference(*(x.astype(jnp.float32) for x in (q, k, v)))
    assert _relative_error(op(q, k, v), expected_out) < 1e-2
    # Jitted: eager grad dispatches the backward's ops while the interpreted forward is still running,
    # and the interpreter's io_callbacks (which run eager JAX ops themselves) then deadlock with them
    # on a 2-core CPU (5 hangs in 24 runs of the eager form, 0 in 30 jitted).
    grads = jax.jit(jax.grad(loss(op), argnums=(0, 1, 2)))(q, k, v)
    expected = jax.grad(loss(reference), argnums=(0, 1, 2))(*(x.astype(jnp.float32) for x in (q, k, v)))
    for grad, grad_ref in zip(grads, expected):  # the bf16 impl="xla" op is off by up to 1.2e-2 here too
        assert grad.dtype == jnp.bfloat16 and _relative_error(grad, grad_ref) < 2e-2


def test_interpreter_race_detector_finds_no_race(interpreter):
    from jax._src.pallas.mosaic_gpu.interpret import interpret_pallas_call  # noqa: PLC0415

    q, k, v = _inputs(2, 192, 64, 64, seed=2)
    for causal in (False, True):
        o, _ = linear_attention_mgpu_forward(
            q, k, v, causal=causal, feature_map="elu1", interpret=interpreter.InterpretGPUParams(detect_races=True)
        )
        expected = linear_attention_reference(*(x.astype(jnp.float32) for x in (q, k, v)), causal=causal)
        assert _relative_error(o, expected) < 1e-2
        assert not interpret_pallas_call.get_races().races_found


@pytest.mark.parametrize(
    "causal,feature_map,head_dim,value_dim",
    [(False, "elu1", 128, 64), (False, "identity", 64, 128), (True, "elu1", 64, 128), (True, "relu", 128, 64)],
)
def test_mosaic_gpu_lowering_accepts_the_kernels(causal, feature_map, head_dim, value_dim):
    # Pallas's Mosaic GPU lowering (register layouts, wgmma operand rules, tiled/swizzled SMEM loads and
    # stores, TMA) runs on a CPU machine when exporting for "cuda"; what is left to a GPU is the rest of
    # the compilation (Mosaic GPU's MLIR passes, ptxas) and the run.
    q = jax.ShapeDtypeStruct((1, 2, 100, head_dim), jnp.bfloat16)
    v = jax.ShapeDtypeStruct((1, 2, 100, value_dim), jnp.bfloat16)
    forward = functools.partial(_forward, causal=causal, feature_map=feature_map, eps=1e-6, interpret=False)
    exported = jax.export.export(jax.jit(forward), platforms=["cuda"])(q, q, v)
    assert "custom_call @mosaic_gpu" in exported.mlir_module()


def test_smem_budget_matches_the_docstring():
    kib = 1024
    extra = 64 * 4 + 7 * 8  # den staging and barriers
    assert [smem_bytes(d, c) - extra for d in HEAD_DIMS for c in (False, True)] == [
        88 * kib,
        96 * kib,
        128 * kib,
        136 * kib,
    ]
    assert max(smem_bytes(d, True) for d in HEAD_DIMS) <= SMEM_LIMIT


def test_rejects_inputs_outside_the_contract():
    q, k, v = _inputs(1, 64, 64, 64)
    with pytest.raises(ValueError, match="bfloat16"):
        check_mgpu_inputs(q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), "elu1")
    q32, k32, _ = _inputs(1, 64, 32, 64)
    with pytest.raises(ValueError, match=r"head dim d .* in \(64, 128\); got d = 32"):
        check_mgpu_inputs(q32, k32, v, "elu1")
    _, _, v48 = _inputs(1, 64, 64, 48)
    with pytest.raises(ValueError, match="multiple of 64.*got dv = 48"):
        check_mgpu_inputs(q, k, v48, "elu1")
    with pytest.raises(ValueError, match="feature map"):
        check_mgpu_inputs(q, k, v, "softmax")
    if jax.default_backend() != "gpu":
        with pytest.raises(ValueError, match="interpret=True"):
            linear_attention_mgpu_forward(q, k, v, causal=False, feature_map="elu1")


@gpu_only
@pytest.mark.parametrize("causal,length,head_dim", [(False, 196, 64), (True, 196, 64), (False, 784, 128)])
def test_public_pallas_impl_compiles_on_gpu_and_matches_the_reference(causal, length, head_dim):
    # linear_attention(impl="pallas") on a GPU, as the benchmark runs it: the dispatch, the Mosaic GPU
    # forward and the "xla" backward, at a stage's length with several (batch, head) programs.
    rng = np.random.default_rng(7)
    q, k, v = (jnp.asarray(rng.normal(size=(4, 2, length, head_dim)), jnp.bfloat16) for _ in range(3))
    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    out = jax.jit(lambda *a: linear_attention(*a, causal=causal, impl="pallas"))(q, k, v)
    assert out.dtype == jnp.bfloat16
    assert _relative_error(out, linear_attention_reference(*f32, causal=causal)) < 1e-2
    weights = jnp.asarray(rng.normal(size=v.shape), jnp.float32)

    def grads(fn, *args):
        return jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a).astype(jnp.float32) * weights), argnums=(0, 1, 2)))(*args)

    actual = grads(lambda *a: linear_attention(*a, causal=causal, impl="pallas"), q, k, v)
    expected = grads(functools.partial(linear_attention_reference, causal=causal), *f32)
    for grad, grad_ref in zip(actual, expected):  # the bf16 "xla" backward: up to 1.2e-2 (above)
        assert grad.dtype == jnp.bfloat16 and _relative_error(grad, grad_ref) < 2e-2
