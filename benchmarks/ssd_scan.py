r"""Time of `mixtok.kernels.ssd_scan` against sequence length: the chunked "xla" form vs the associative-scan reference.

    python benchmarks/ssd_scan.py --batch 1 --heads 4 --lengths 256 1024 4096 --repeats 3   # a CPU run
    python benchmarks/ssd_scan.py                                                              # defaults: Hydra ViT-B

Shapes: x [B, L, H, P], dt [B, L, H], a [H], b and c [B, L, 1, N] (one group, as Hydra's and Mamba-2's
default). The defaults are one Hydra ViT-B layer's scans (mixtok/models/hydra_vit.py: width 768, expand 2,
head dim 64 -> H = 24, N = 64; the forward and backward scans of a batch of 8 run as one of 16). Prints a
markdown table: forward and forward+backward (jax.grad of a sum) time per impl, median of `--repeats` runs
after compilation and one warm-up, and the reference's time over the chunked form's. The reference keeps all
L states ([B, L, H, P, N] float32), so at long L it may run out of memory: that row then reads "failed" and the
others are still timed.
"""

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from timing import median_seconds

from mixtok.kernels.ssd_scan import ssd_scan


def _inputs(batch, length, heads, width, state, dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, length, heads, width))
    dt = np.log1p(np.exp(rng.normal(size=(batch, length, heads)) - 3.0))
    a = -np.ones(heads)
    b, c = rng.normal(size=(2, batch, length, 1, state)) / np.sqrt(state)
    return tuple(jnp.asarray(t, dtype) for t in (x, dt, a, b, c))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--heads", type=int, default=24)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--state", type=int, default=64)
    parser.add_argument("--lengths", type=int, nargs="+", default=[197, 1024, 4096])
    parser.add_argument("--chunk", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, JAX {jax.__version__}")
    print(f"# B={args.batch} H={args.heads} P={args.head_dim} N={args.state} chunk={args.chunk} {args.dtype}")
    print("| L | impl | fwd ms | fwd+bwd ms | reference / xla (fwd) | reference / xla (fwd+bwd) |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        inputs = _inputs(args.batch, length, args.heads, args.head_dim, args.state, jnp.dtype(args.dtype))
        times = {}
        for impl in ("xla", "reference"):
            fwd = jax.jit(lambda *t, impl=impl: ssd_scan(*t, impl=impl, chunk=args.chunk))
            bwd = jax.jit(
                jax.grad(lambda *t, impl=impl: ssd_scan(*t, impl=impl, chunk=args.chunk).sum(), argnums=range(5))
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
