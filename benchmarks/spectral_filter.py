r"""Time of `mixtok.kernels.spectral_filter` per implementation, on the benchmark set's shapes.

    python benchmarks/spectral_filter.py --batch 8 --repeats 5               # a CPU run, a few minutes
    python benchmarks/spectral_filter.py --bandwidth-gbs 3350                # H100 SXM, B = 128

Prints one row per (shape, impl): forward and forward+backward time (median of `--repeats` runs
after compilation and one warm-up, `block_until_ready`), the achieved bytes/s from the minimum
traffic of the spectral filter's roofline (forward E*(s_in + s_out) + H*Wf*C*8; backward
3*s*E + 2*H*Wf*C*8, i.e. 6E at bf16; docs/facts/kernels.md, "Roofline formulas: spectral filter"),
its % of `--bandwidth-gbs` (the column is left out without it), the speed-up over "reference", and
the max abs error of the forward vs float32 "reference". Inputs are `--dtype` (bf16 by default, as
in the benchmark set: docs/facts/kernels.md, "Benchmark set") with a static complex64 filter; the
24x24 shape runs at half batch.

Implementations: by default every one that compiles on this backend: "reference" and "xla"
everywhere, and "pallas" on TPU (on CPU it only runs in Pallas's interpreter, whose time means
nothing; on GPU its Mosaic GPU forward kernel has never been compiled on hardware, so ask for it
with `--impls reference,xla,pallas`; see mixtok/kernels/spectral_filter/). "pallas" rows are left out
for grids past its Kronecker form (SpectralFilterBlocks.max_pixels), and an impl is skipped, with
the reason, at a shape or dtype outside its contract (on GPU "pallas" takes bf16 x only). An impl
that fails to compile or run at a shape is reported on a "# FAILED" line and the rest are still
timed; the exit status is then 1 (skips and failures are listed below the table). The bandwidth
bound is taken from the device kind for H100/H200 when `--bandwidth-gbs` is not given. `--sizes`
and `--batch` shrink the set (a smoke run: `--batch 2 --sizes 8 --repeats 2`).
"""

import argparse
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from timing import device_bandwidth_gbs, median_seconds

from mixtok.kernels.spectral_filter import DEFAULT_BLOCKS, spectral_filter

# (H = W, C, batch factor): the benchmark set of docs/facts/kernels.md.
SHAPES = [(14, c, 1) for c in (64, 128, 256, 384, 512)] + [
    (7, 512, 1),
    (7, 768, 1),
    (8, 320, 1),
    (16, 256, 1),
    (24, 384, 0.5),
    (28, 128, 1),
    (28, 192, 1),
    (32, 128, 1),
    (56, 64, 1),
    (56, 96, 1),
    (56, 128, 1),
]


def min_bytes(batch, size, channels, itemsize, backward):
    elements = batch * size * size * channels
    filt = size * (size // 2 + 1) * channels * 8
    forward = elements * 2 * itemsize + filt
    return forward + (3 * itemsize * elements + 2 * filt if backward else 0)


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def bench_shape(batch, size, channels, dtype, impls, repeats, notes, failures):
    """{impl: (fwd s, fwd+bwd s, max abs error)} at one shape; skips go to `notes`, failures to both lists."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), dtype)
    shape = (size, size // 2 + 1, channels)
    filt = jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64)
    dy = jnp.asarray(rng.normal(size=x.shape), dtype)
    exact = jax.jit(lambda x, f: spectral_filter(x, f, impl="reference"))(x.astype(jnp.float32), filt)
    rows = {}
    for impl in impls:
        if impl == "pallas" and size * size > DEFAULT_BLOCKS.max_pixels:
            continue
        forward = jax.jit(lambda x, f, impl=impl: spectral_filter(x, f, impl=impl))
        train = jax.jit(lambda x, f, dy, impl=impl: jax.vjp(lambda a, b: spectral_filter(a, b, impl=impl), x, f)[1](dy))
        where = f"{impl} at {batch}x{size}x{size}x{channels} {jnp.dtype(dtype).name}"
        try:
            jax.eval_shape(forward, x, filt)
        except ValueError as reason:  # outside the impl's contract, e.g. the Mosaic GPU kernel takes bf16 x only
            notes.append(f"# {where} skipped: {reason}")
            continue
        try:
            error = float(jnp.max(jnp.abs(forward(x, filt).astype(jnp.float32) - exact)))
            times = (median_seconds(forward, (x, filt), repeats), median_seconds(train, (x, filt, dy), repeats))
        except Exception as failure:  # a kernel that does not compile or run here: report it, time the others
            notes.append(f"# FAILED {where}: {one_line(failure)}")
            failures.append(where)
            continue
        rows[impl] = (*times, error)
    return rows


def default_impls():
    return ["reference", "xla", "pallas"] if jax.default_backend() == "tpu" else ["reference", "xla"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--impls", default="", help="comma-separated; default: all that compile here")
    parser.add_argument("--sizes", default="", help="comma-separated H = W to keep, e.g. 7,14; default all")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="memory bandwidth bound, GB/s")
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    impls = args.impls.split(",") if args.impls else default_impls()
    if not args.bandwidth_gbs:
        args.bandwidth_gbs = device_bandwidth_gbs()
    sizes = {int(s) for s in args.sizes.split(",") if s}
    print(
        f"# jax {jax.__version__}, {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
        f"{args.dtype} x, complex64 static filter, median of {args.repeats}"
    )
    header = ["B x H x W x C", "impl", "fwd ms", "fwd GB/s", "fwd+bwd ms", "fwd+bwd GB/s"]
    if args.bandwidth_gbs:
        header[4:4] = ["fwd % BW"]
        header.append("fwd+bwd % BW")
    header += ["fwd speed-up vs reference", "fwd+bwd speed-up vs reference", "max abs err vs fp32 reference"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    notes, failures = [], []
    for size, channels, factor in SHAPES:
        if sizes and size not in sizes:
            continue
        batch = max(1, int(args.batch * factor))
        rows = bench_shape(batch, size, channels, dtype, impls, args.repeats, notes, failures)
        for impl, (fwd, train, error) in rows.items():
            fwd_gbs = min_bytes(batch, size, channels, dtype.itemsize, False) / fwd / 1e9
            train_gbs = min_bytes(batch, size, channels, dtype.itemsize, True) / train / 1e9
            cells = [f"{batch}x{size}x{size}x{channels}", impl, f"{fwd * 1e3:.3f}", f"{fwd_gbs:.1f}"]
            if args.bandwidth_gbs:
                cells.append(f"{100 * fwd_gbs / args.bandwidth_gbs:.1f}")
            cells += [f"{train * 1e3:.3f}", f"{train_gbs:.1f}"]
            if args.bandwidth_gbs:
                cells.append(f"{100 * train_gbs / args.bandwidth_gbs:.1f}")
            base_fwd, base_train = rows["reference"][:2] if "reference" in rows else (float("nan"),) * 2
            cells += [f"{base_fwd / fwd:.2f}x", f"{base_train / train:.2f}x", f"{error:.2e}"]
            print("| " + " | ".join(cells) + " |", flush=True)
    print("\n".join(["", *notes]) if notes else "")
    if failures:
        print(f"# {len(failures)} failed: {'; '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
