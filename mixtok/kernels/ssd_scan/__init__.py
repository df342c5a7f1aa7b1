"""SSD, Mamba-2's state space scan with a scalar-times-identity A per head (Dao & Gu 2024).

    y = ssd_scan(x, dt, a, b, c)          # x [B, L, H, P], dt [B, L, H], a [H], b, c [B, L, G, N] -> [B, L, H, P]

Per head, S_t = exp(dt_t a) S_{t-1} + dt_t x_t b_t^T and y_t = S_t c_t (reference.py has the matrix form):
state-spaces/mamba @ e9594ce1's `mamba_chunk_scan_combined` (mamba_ssm/ops/triton/ssd_combined.py) with D=None,
z=None and dt already positive (the caller applies softplus and dt_bias, as Hydra and Mamba-2 do). a is
negative in those models (a = -exp(A_log)); the op takes any a, but a positive a grows exponentially in L.

Implementations (`impl=`, the names of `mixtok.kernels.dispatch`):
- "reference": the recurrence as one `lax.associative_scan` over L (reference.py); it keeps all L states,
  O(L H P N) memory.
- "xla": the chunked SSD form (xla.py): a masked quadratic product within chunks of `chunk` positions plus the
  states passed between chunks; L need not be a multiple of `chunk`.
- "auto": "xla" on every backend. There is no Pallas kernel ("pallas" raises a ValueError naming the valid
  impls); mamba_ssm's Triton kernel is the GPU one in PyTorch.

Gradients: JAX differentiates both forms (no custom VJP: the chunked form is einsums, cumsums, exps and an
associative scan over chunks). Inputs may be float32 or bfloat16; everything runs in float32 and the output
has x's dtype.
"""

from mixtok.kernels import dispatch
from mixtok.kernels.ssd_scan.reference import check_inputs, ssd_scan_reference
from mixtok.kernels.ssd_scan.xla import ssd_scan_xla

VALID_IMPLS = ("auto", "reference", "xla")
DEFAULT_CHUNK = 64

__all__ = ["DEFAULT_CHUNK", "VALID_IMPLS", "resolve_impl", "ssd_scan", "ssd_scan_reference", "ssd_scan_xla"]


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on this backend ("auto" -> "xla" everywhere)."""
    return dispatch.resolve_impl("ssd_scan", impl, lambda backend: "xla", VALID_IMPLS)


def ssd_scan(x, dt, a, b, c, *, impl: str = "auto", chunk: int = DEFAULT_CHUNK):
    """SSD scan of x [B, L, H, P] with step dt [B, L, H], a [H], b and c [B, L, G, N] -> [B, L, H, P].

    impl: "auto", "reference" or "xla" (module docstring). chunk: the chunk length of "xla" (a positive int;
    it need not divide L).
    """
    check_inputs(x, dt, a, b, c)
    name = resolve_impl(impl)
    if name == "reference":
        return ssd_scan_reference(x, dt, a, b, c)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"ssd_scan: chunk must be a positive int; got {chunk!r}.")
    return ssd_scan_xla(x, dt, a, b, c, min(chunk, x.shape[1]))
