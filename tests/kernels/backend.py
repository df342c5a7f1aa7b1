"""Where the kernel tests run: compiled on a Hopper GPU, in the interpreters on a CPU.

The same test files check the kernels on either backend; `jax.default_backend()` decides.

- CPU (the default test run; tests/conftest.py sets JAX_PLATFORMS=cpu unless it is set): "pallas"
  runs the Mosaic TPU `pallas_call` kernels in Pallas's interpreter (`interpret=True`), and the
  Mosaic GPU kernels run in the Mosaic GPU CPU interpreter (private JAX API).
- GPU (`JAX_PLATFORMS=cuda python -m pytest tests/kernels`, as benchmarks/gpu_check.sh runs them):
  "reference" and "xla" compile with XLA:GPU, and the Mosaic GPU kernels compile
  (`interpret=False`): impl="pallas" on a GPU is the Mosaic GPU forward kernel, which takes only
  bf16 inputs at its own shapes (spectral_filter: C a multiple of 64; linear_attention: d in
  {64, 128}, dv a multiple of 64). The generic op tests' small float32 shapes are outside that
  contract, so their "pallas" cases skip there, saying so; the *_mosaic_gpu.py files compile the
  kernels at their shapes, forward and (through the op) gradients. The Mosaic TPU kernels have no
  GPU lowering (they use `jnp.dot`, which Mosaic GPU does not lower, and Pallas's Triton path is
  deprecated and needs power-of-two blocks; dispatch never sends impl="pallas" there on a GPU),
  and interpreted on a GPU they would check nothing the CPU run does not, so they run on CPU only.
  The Mosaic GPU kernels need Hopper (sm_90: wgmma); on another GPU their tests skip.
- Any other backend (TPU): as on CPU, everything interpreted.

Tolerances. Every fp32 GEMM of the kernels and references runs at precision=HIGHEST (no TF32 on a
GPU), so the CPU's fp32 tolerances would nearly hold; cuFFT and cuBLAS sum in other orders than
the CPU, so on a GPU an fp32 tolerance below GPU_FP32_FLOOR is raised to it (`fp32_tolerance`).
That still fails a GEMM that silently ran in TF32 (about 1e-3 relative) or a wrong kernel; bf16
tolerances (1e-2 and up) and every CPU tolerance are unchanged.
"""

import jax
import pytest

BACKEND = jax.default_backend()
ON_GPU = BACKEND == "gpu"
GPU_FP32_FLOOR = 1e-5


def _compute_capability() -> str:
    return str(getattr(jax.devices()[0], "compute_capability", "")) if ON_GPU else ""


# wgmma is Hopper's (sm_90); Blackwell (sm_100) has tcgen05 MMAs instead.
MOSAIC_GPU_COMPILES = ON_GPU and _compute_capability().split(".")[0] == "9"

PALLAS_ON_GPU = (
    "on a GPU impl='pallas' is the compiled Mosaic GPU kernel (bf16 only, at its own shapes): this case is "
    "outside its contract; the *_mosaic_gpu.py tests compile it, and the Pallas TPU kernel runs interpreted on CPU"
)
INTERPRETER_ONLY = "the Mosaic GPU interpreter's own check (race detector): runs on CPU; on a GPU the kernels compile"
NOT_HOPPER = f"the Mosaic GPU kernels compile for Hopper (sm_90) only; this GPU is sm_{_compute_capability()}"
GPU_ONLY = "compiles the Mosaic GPU kernel through the public op: needs a Hopper (sm_90) GPU"

# The op tests' "pallas" case: interpreted on CPU; on a GPU skipped (see the module docstring).
PALLAS = pytest.param("pallas", marks=pytest.mark.skipif(ON_GPU, reason=PALLAS_ON_GPU))
# The impls an op test loops over that are interpreted Pallas kernels: none on a GPU.
INTERPRETED_PALLAS = () if ON_GPU else ("pallas",)
cpu_pallas_only = pytest.mark.skipif(ON_GPU, reason=PALLAS_ON_GPU)
gpu_only = pytest.mark.skipif(not MOSAIC_GPU_COMPILES, reason=GPU_ONLY)


def fp32_tolerance(rtol: float) -> float:
    """`rtol` on CPU; on a GPU at least GPU_FP32_FLOOR (module docstring, "Tolerances")."""
    return max(rtol, GPU_FP32_FLOOR) if ON_GPU else rtol


def mosaic_gpu_interpret(request) -> bool:
    """`interpret` for a Mosaic GPU kernel test: False (compiled) on a Hopper GPU, True on CPU.

    On CPU it sets up the interpreter through the test file's `interpreter` fixture (which skips,
    saying why, where this JAX lacks it); on a GPU other than Hopper it skips.
    """
    if MOSAIC_GPU_COMPILES:
        return False
    if ON_GPU:
        pytest.skip(NOT_HOPPER)
    request.getfixturevalue("interpreter")
    return True


def skip_interpreter_on_gpu() -> None:
    """Skips an interpreter-only test (the race detector) on a GPU, where the kernels compile instead."""
    if ON_GPU:
        pytest.skip(INTERPRETER_ONLY)
