"""The selective scan, Mamba-1's S6 recurrence with a diagonal A per channel (Gu & Dao 2023).

    y = selective_scan(u, delta, a, b, c, d)   # u, delta [B, L, E], a [E, N], b, c [B, L, G, N], d [E] -> [B, L, E]

Per channel e: h_t = exp(delta_t a_e) h_{t-1} + delta_t b_t u_t, y_t = h_t . c_t + d_e u_t (reference.py):
state-spaces/mamba @ e9594ce1's `selective_scan_ref` (mamba_ssm/ops/selective_scan_interface.py) with z=None and
delta already positive (the caller adds delta_bias and applies softplus, as Mamba's block does). a is negative in
Mamba (a = -exp(A_log)); the op takes any a, but a positive a grows exponentially in L. G groups of B and C: channel
e reads group e // (E / G) (mamba_ssm's "variable B" with groups; G = 1 is Mamba's block, G = K the K directions of
a cross-scan folded into the channels as VMamba does).

Implementations (`impl=`, the names of `mixtok.kernels.dispatch`):
- "reference": the recurrence one step at a time, one `lax.scan` over L (reference.py); O(L B E N) residuals.
- "xla": an associative scan within chunks of `chunk` positions, a `lax.scan` carrying the state across chunks,
  each chunk rematerialised in the backward pass (xla.py); L need not be a multiple of `chunk`.
- "auto": "reference" on CPU, where mixtok runs tests and quickstarts on short sequences: there
  benchmarks/selective_scan.py measured it faster than "xla" forwards at every length and forwards+backwards at
  L = 64, and it compiles much faster (at L >= 256 "xla"'s backward was 2-8x faster: pass impl="xla" to train
  long sequences on a CPU); "xla" on GPU and TPU, where the per-step loop would run L small sequential steps
  (not measured: no accelerator was available to this session). There is no Pallas kernel ("pallas" raises a ValueError
  naming the valid impls); mamba_ssm's CUDA kernel is the GPU one in PyTorch.

Gradients: JAX differentiates both forms (no custom VJP). Inputs may be float32 or bfloat16; everything runs in
float32 and the output has u's dtype.
"""

from mixtok.kernels import dispatch
from mixtok.kernels.selective_scan.reference import check_inputs, selective_scan_reference
from mixtok.kernels.selective_scan.xla import selective_scan_xla

VALID_IMPLS = ("auto", "reference", "xla")
DEFAULT_CHUNK = 64

__all__ = [
    "DEFAULT_CHUNK",
    "VALID_IMPLS",
    "resolve_impl",
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_xla",
]


def resolve_impl(impl: str) -> str:
    """The implementation `impl` stands for on this backend ("auto" -> "reference" on CPU, else "xla")."""
    return dispatch.resolve_impl(
        "selective_scan", impl, lambda backend: "reference" if backend == "cpu" else "xla", VALID_IMPLS
    )


def selective_scan(u, delta, a, b, c, d=None, *, impl: str = "auto", chunk: int = DEFAULT_CHUNK):
    """Selective scan of u [B, L, E] with step delta [B, L, E], a [E, N], b and c [B, L, G, N], d [E] or None.

    impl: "auto", "reference" or "xla" (module docstring). chunk: the chunk length of "xla" (a positive int;
    it need not divide L).
    """
    check_inputs(u, delta, a, b, c, d)
    name = resolve_impl(impl)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise ValueError(f"selective_scan: chunk must be a positive int; got {chunk!r}.")
    if name == "reference":
        return selective_scan_reference(u, delta, a, b, c, d)
    return selective_scan_xla(u, delta, a, b, c, d, min(chunk, u.shape[1]))
