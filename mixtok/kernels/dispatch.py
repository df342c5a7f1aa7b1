"""What every kernel op shares: the `impl` names, the backend choice, and the checks of its inputs.

Every op (`spectral_filter`, `dct_filter`, `linear_attention`) takes `impl=` from one vocabulary:

- "auto": the implementation the op picks for this backend and shape (each op says why);
- "reference": the plain-jnp definition (jnp.fft, jax.scipy's DCT, the einsum form);
- "xla": the XLA form tuned for accelerators (DFT / DCT as GEMMs, the chunked state form);
- "pallas": the op's Pallas kernel for the backend: a Mosaic TPU `pl.pallas_call` on TPU, and in
  Pallas's interpreter on any backend with `interpret=True` (how the tests run it on CPU); the
  Mosaic GPU kernel (`plgpu.kernel`) on GPU.

The names of the first layout (`"fft"`, `"dft"`, `"dct"`, `"mosaic_gpu"`) raise a ValueError that
names their successor, so a config written against them fails at once instead of running another
implementation.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from mixtok.registry import unknown_name_error

IMPLS = ("auto", "reference", "xla", "pallas")
RENAMED_IMPLS = {"fft": "reference", "dft": "xla", "dct": "xla", "mosaic_gpu": "pallas"}


def check_impl(op: str, impl: str, valid: Sequence[str] = IMPLS) -> None:
    """Raises a ValueError naming `impl` and the valid names of `op` unless `impl` is one of them."""
    if impl in valid:
        return
    if impl in IMPLS:
        raise ValueError(f"{op} has no {impl!r} implementation yet. Valid {op} impls: {', '.join(sorted(valid))}.")
    if impl in RENAMED_IMPLS and RENAMED_IMPLS[impl] in valid:
        raise ValueError(
            f"{op} impl {impl!r} was renamed to {RENAMED_IMPLS[impl]!r} (one impl vocabulary for every kernel). "
            f"Valid {op} impls: {', '.join(sorted(valid))}."
        )
    raise unknown_name_error(f"{op} impl", impl, valid)


def resolve_impl(op: str, impl: str, auto: Callable[[str], str], valid: Sequence[str] = IMPLS) -> str:
    """The implementation `impl` stands for: itself, or `auto(backend)` for "auto"."""
    check_impl(op, impl, valid)
    return auto(jax.default_backend()) if impl == "auto" else impl


def pallas_target(op: str, interpret: bool) -> str:
    """Which Pallas kernel impl="pallas" runs here: "pallas_call" (Mosaic TPU, or interpreted) or "mosaic_gpu".

    Raises a ValueError on a backend with no kernel, and on CPU without `interpret=True`, where
    Pallas runs only in its interpreter.
    """
    backend = jax.default_backend()
    if interpret or backend == "tpu":
        return "pallas_call"
    if backend == "gpu":
        return "mosaic_gpu"
    if backend == "cpu":
        raise ValueError(
            f"{op}(impl='pallas') runs on CPU only in Pallas's interpreter: pass interpret=True, or use "
            "impl='auto' (the faster XLA form on CPU)."
        )
    raise ValueError(f"{op}(impl='pallas') has no kernel for the {backend!r} backend; use impl='auto'.")


def check_compiles_for_gpu(op: str, interpret) -> None:
    """A Mosaic GPU kernel compiles only on an NVIDIA GPU; elsewhere it runs only interpreted."""
    if not interpret and jax.default_backend() != "gpu":
        raise ValueError(
            f"{op} compiles only for an NVIDIA Hopper (sm_90) GPU; the backend is "
            f"{jax.default_backend()!r}. Pass interpret=True to run it in the Mosaic GPU interpreter."
        )


# --------------------------------------------------------------------------------------------------
# Input checks.


def check_image_and_filter(op: str, x: jax.Array, filt: jax.Array, spectrum_width: int, complex_filter: bool) -> None:
    """Raises a ValueError naming the dimension or dtype of NHWC `x` or of its filter that is wrong.

    The filter is [H, spectrum_width, C] (one for the batch) or [B, H, spectrum_width, C] (per
    sample); complex for a Fourier spectrum, real for a cosine one.
    """
    if x.ndim != 4:
        raise ValueError(f"{op} takes NHWC x [B, H, W, C]; got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be real floating point (float32 or bfloat16); got {x.dtype}.")
    batch, height, _, channels = x.shape
    static = (height, spectrum_width, channels)
    name = "[H, W//2+1, C]" if complex_filter else "[H, W, C]"
    if filt.shape not in (static, (batch,) + static):
        raise ValueError(
            f"filt must be {name} = {list(static)} (static) or [B, {name[1:]} = {[batch, *static]} (per sample) "
            f"for x of shape {list(x.shape)}; got {list(filt.shape)}."
        )
    if complex_filter and not jnp.issubdtype(filt.dtype, jnp.complexfloating):
        raise ValueError(f"filt must be complex (complex64); got {filt.dtype}.")
    if not complex_filter and not jnp.issubdtype(filt.dtype, jnp.floating):
        raise ValueError(f"filt must be real floating point (the DCT spectrum is real); got {filt.dtype}.")


ATTENTION_DTYPES = (jnp.float32, jnp.bfloat16)


def check_query_key_value(op: str, q: jax.Array, k: jax.Array, v: jax.Array) -> None:
    """Raises a ValueError naming the input of q, k [B, heads, L, d], v [B, heads, L, dv] that is wrong."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(f"{op} takes {name} as [B, heads, L, d]; got shape {x.shape}.")
        if x.dtype not in ATTENTION_DTYPES:
            raise ValueError(f"{op} takes float32 or bfloat16 inputs; {name} is {x.dtype}.")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape [B, heads, L, d]; got {q.shape} and {k.shape}.")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, heads, L, dv] with the (B, heads, L) of q = {q.shape[:3]}; got {v.shape}.")
    if not q.dtype == k.dtype == v.dtype:
        raise ValueError(f"q, k and v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}.")
