r"""Time of `mixtok.kernels.selective_scan` against sequence length: the chunked "xla" form vs the lax.scan reference.

    python benchmarks/selective_scan.py --batch 2 --channels 192 --lengths 64 256 1024 --repeats 3   # a CPU run
    python benchmarks/selective_scan.py                                                                # defaults

Shapes: u and delta [B, L, E], a [E, N], b and c [B, L, G, N], d [E]. The defaults are one ViM2-T stage-1
token mixer's scan (mixtok/models/mamba_mixer.py: width 96, expand 2 -> 192 channels per direction, 4 cross-scan
directions folded into E = 768 channels with G = 4 groups, N = 16; L = 56 x 56 = 3136 at 224 px) for a batch of 8.
Prints a markdown table: forward and forward+backward (jax.grad of a sum) time per impl, median of `--repeats`
runs after compilation and one warm-up, and the reference's time over the chunked form's.

Measured (2026-12-07, the 2-core shared CPU of the mixtok sessions, AMD EPYC, JAX 0.10.2, load average 15-19
from other jobs, so absolute times are inflated and noisy; `--batch 2 --channels 192 --groups 4 --lengths 64 256
1024 --repeats 3`, float32, chunk 64):

    | L | impl | fwd ms | fwd+bwd ms | reference / xla (fwd) | reference / xla (fwd+bwd) |
    |---|---|---|---|---|---|
    | 64 | xla | 22.26 | 108.37 |  |  |
    | 64 | reference | 3.05 | 52.31 | 0.14x | 0.48x |
    | 256 | xla | 20.01 | 55.95 |  |  |
    | 256 | reference | 20.05 | 433.98 | 1.00x | 7.76x |
    | 1024 | xla | 220.35 | 620.18 |  |  |
    | 1024 | reference | 112.01 | 1261.82 | 0.51x | 2.03x |

On this CPU the per-step lax.scan is the faster forward (each step is a small fused update; the associative scan
does about 2 log2(chunk) passes over [B, Q, E, N]) and the faster forward+backward at L = 64 (one chunk); from
L = 256 the reference's backward (a reversed loop of L steps over stored states) is 2-8x slower than "xla"'s.
Hence "auto" picks "reference" on CPU, where mixtok's tests and quickstarts run short sequences, and "xla"
elsewhere: its point is memory (O((L/Q + Q) B E N) with rematerialised chunks) and parallel depth (L/Q + log Q
sequential steps instead of L), which an accelerator needs; not measured on one here.
"""

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from timing import median_seconds

from mixtok.kernels.selective_scan import selective_scan


def _inputs(batch, length, channels, groups, state, dtype):
    rng = np.random.default_rng(0)
    u = rng.normal(size=(batch, length, channels))
    delta = np.log1p(np.exp(rng.normal(size=(batch, length, channels)) - 3.0))
    a = -np.tile(np.arange(1, state + 1, dtype=np.float64), (channels, 1))
    b, c = rng.normal(size=(2, batch, length, groups, state)) / np.sqrt(state)
    d = np.ones(channels)
    return tuple(jnp.asarray(t, dtype) for t in (u, delta, a, b, c, d))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=768)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--lengths", type=int, nargs="+", default=[196, 784, 3136])
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, JAX {jax.__version__}")
    print(f"# B={args.batch} E={args.channels} G={args.groups} N={args.state} chunk={args.chunk} {args.dtype}")
    print("| L | impl | fwd ms | fwd+bwd ms | reference / xla (fwd) | reference / xla (fwd+bwd) |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        inputs = _inputs(args.batch, length, args.channels, args.groups, args.state, jnp.dtype(args.dtype))
        times = {}
        for impl in ("xla", "reference"):
            fwd = jax.jit(lambda *t, impl=impl: selective_scan(*t, impl=impl, chunk=args.chunk))
            bwd = jax.jit(
                jax.grad(lambda *t, impl=impl: selective_scan(*t, impl=impl, chunk=args.chunk).sum(), argnums=range(6))
            )
            try:
                times[impl] = (median_seconds(fwd, inputs, args.repeats), median_seconds(bwd, inputs, args.repeats))
            except Exception as error:  # noqa: BLE001 (out of memory at long L: report it and go on)
                print(f"| {length} | {impl} | failed: {type(error).__name__} | | | |")
        for impl, (f, b) in times.items():
            ratio = ("", "")
            if impl == "reference" and "xla" in times:
                ratio = (f"{f / times['xla'][0]:.2f}x", f"{b / times['xla'][1]:.2f}x")
            print(f"| {length} | {impl} | {f * 1e3:.2f} | {b * 1e3:.2f} | {ratio[0]} | {ratio[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
