r"""Time of `mixtok.kernels.linear_attention` per implementation, on the benchmark set's shapes.

    python benchmarks/linear_attention.py --batch 2 --scale 0.0625 --repeats 3   # a CPU run, about a minute
    python benchmarks/linear_attention.py                                         # H100 / H200, full shapes

Prints one markdown table per shape (B, heads, L, d; elu+1, normalised; non-causal, then causal with
chunk 64): forward and forward+backward time (median of `--repeats` runs after compilation and one
warm-up, `block_until_ready`), the achieved bytes/s from the minimum traffic, its % of
`--bandwidth-gbs` (taken from the device kind for H100 (3350) and H200 (4800) when not given; the
column is left out when unknown, e.g. on CPU), and the speed-up over softmax attention
(`jax.nn.dot_product_attention`, [B, L, heads, d] layout, same causality) at the same shape.

Minimum traffic (on-chip state; docs/facts/kernels.md, "Roofline formulas: linear attention"):
forward reads q, k, v and writes o, 4 L d elements per (batch, head) (the "8 N d bytes" there at
bf16); the backward reads q, k, v, dO and writes dq, dk, dv (7 L d, with the normaliser
recomputed), so forward+backward is 11 L d elements. `--batch N` caps every shape's batch at N and
`--scale s` multiplies every length by s (at least 1), to shrink the set on a CPU. Inputs are
`--dtype` (bf16 by default, as in docs/facts/kernels.md, "Benchmark set").

Implementations: every one that compiles on this backend: "xla" everywhere and "pallas" on TPU and
GPU (on GPU the Mosaic GPU forward kernels, bf16 with d in {64, 128}: other shapes are skipped with
the reason; on CPU Pallas runs only in its interpreter, whose time means nothing; see
mixtok/kernels/linear_attention/). "reference", the O(L^2) definition, only with `--impls`, which
overrides. An impl that fails to compile or run at a shape is reported on a "# FAILED" line and the
others are still timed; the exit status is then 1 (a failed softmax baseline, e.g. out of memory at
the longest lengths, is reported but is not a failure). `--head-dims 64` keeps the shapes with those
d (the ones the Mosaic GPU kernels take); with `--batch 1 --scale 0.01 --repeats 1` it is a smoke run.
"""

import argparse
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from timing import device_bandwidth_gbs, median_seconds

from mixtok.kernels.linear_attention import linear_attention

# (B, heads, L, d, causal): the benchmark set of docs/facts/kernels.md.
SHAPES = [
    (128, 2, 3136, 32, False),
    (128, 4, 784, 32, False),
    (128, 8, 196, 32, False),
    (128, 16, 49, 32, False),
    (128, 2, 3136, 64, False),
    (2, 16, 16384, 64, False),
] + [(4, 8, length, 256, True) for length in (1024, 4096, 16384)]


def min_bytes(batch, heads, length, d, itemsize, backward):
    return (11 if backward else 4) * batch * heads * length * d * itemsize


def _softmax_attention(q, k, v, causal):
    """jax.nn.dot_product_attention on the [B, L, heads, d] layout it takes."""
    out = jax.nn.dot_product_attention(*(x.transpose(0, 2, 1, 3) for x in (q, k, v)), is_causal=causal)
    return out.transpose(0, 2, 1, 3)


def one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300] if lines else ''}"


def bench_shape(batch, heads, length, d, causal, dtype, impls, repeats, failures):
    """{op: (fwd s, fwd+bwd s)} at one shape; a failed impl (not the softmax baseline) goes to `failures`."""
    rng = np.random.default_rng(0)
    q, k, v, do = (jnp.asarray(rng.normal(size=(batch, heads, length, d)), dtype) for _ in range(4))
    ops = {impl: (lambda q, k, v, impl=impl: linear_attention(q, k, v, causal=causal, impl=impl)) for impl in impls}
    ops["softmax"] = lambda q, k, v: _softmax_attention(q, k, v, causal)
    rows = {}
    for name, op in ops.items():
        try:
            jax.eval_shape(op, q, k, v)
        except ValueError as error:  # e.g. the Mosaic GPU kernels take d in {64, 128} only
            print(f"# {name} skipped at B={batch} heads={heads} L={length} d={d}: {error}")
            continue
        forward = jax.jit(op)
        train = jax.jit(lambda q, k, v, do, op=op: jax.vjp(op, q, k, v)[1](do))
        try:
            rows[name] = (median_seconds(forward, (q, k, v), repeats), median_seconds(train, (q, k, v, do), repeats))
        except Exception as failure:  # does not compile or run here (or out of memory): report it, time the others
            where = f"{name} at B={batch} heads={heads} L={length} d={d} {'causal' if causal else 'non-causal'}"
            print(f"# FAILED {where}: {one_line(failure)}", flush=True)
            if name != "softmax":
                failures.append(where)
    return rows


def default_impls():
    return ["xla", "pallas"] if jax.default_backend() in ("tpu", "gpu") else ["xla"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="cap on every shape's batch")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every sequence length")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--impls", default="", help="comma-separated; default: all that compile here")
    parser.add_argument("--causal", default="both", choices=["both", "yes", "no"])
    parser.add_argument("--head-dims", default="", help="comma-separated d to keep, e.g. 64; default all")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bandwidth-gbs", type=float, default=None, help="memory bandwidth bound, GB/s")
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    impls = args.impls.split(",") if args.impls else default_impls()
    kind = jax.devices()[0].device_kind
    if not args.bandwidth_gbs:
        args.bandwidth_gbs = device_bandwidth_gbs()
    print(
        f"# jax {jax.__version__}, {kind} ({platform.processor() or platform.machine()}), {args.dtype} q/k/v, "
        f"elu+1 normalised, median of {args.repeats}; batch cap {args.batch}, length scale {args.scale}"
    )
    head_dims = {int(d) for d in args.head_dims.split(",") if d}
    failures = []
    for batch, heads, length, d, causal in SHAPES:
        if args.causal != "both" and causal != (args.causal == "yes"):
            continue
        if head_dims and d not in head_dims:
            continue
        batch = min(batch, args.batch or batch)
        length = max(1, round(length * args.scale))
        rows = bench_shape(batch, heads, length, d, causal, dtype, impls, args.repeats, failures)
        header = ["impl", "fwd ms", "fwd GB/s", "fwd+bwd ms", "fwd+bwd GB/s"]
        if args.bandwidth_gbs:
            header[3:3] = ["fwd % BW"]
            header.append("fwd+bwd % BW")
        header += ["fwd speed-up vs softmax", "fwd+bwd speed-up vs softmax"]
        print(f"\n### {'causal' if causal else 'non-causal'} B={batch} heads={heads} L={length} d={d}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        soft_fwd, soft_train = rows.get("softmax", (float("nan"), float("nan")))
        for name, (fwd, train) in rows.items():
            fwd_gbs = min_bytes(batch, heads, length, d, dtype.itemsize, False) / fwd / 1e9
            train_gbs = min_bytes(batch, heads, length, d, dtype.itemsize, True) / train / 1e9
            cells = [name, f"{fwd * 1e3:.3f}", f"{fwd_gbs:.1f}"]
            if args.bandwidth_gbs:
                cells.append(f"{100 * fwd_gbs / args.bandwidth_gbs:.1f}")
            cells += [f"{train * 1e3:.3f}", f"{train_gbs:.1f}"]
            if args.bandwidth_gbs:
                cells.append(f"{100 * train_gbs / args.bandwidth_gbs:.1f}")
            cells += [f"{soft_fwd / fwd:.2f}x", f"{soft_train / train:.2f}x"]
            print("| " + " | ".join(cells) + " |", flush=True)
    if failures:
        print(f"\n# {len(failures)} failed: {'; '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
