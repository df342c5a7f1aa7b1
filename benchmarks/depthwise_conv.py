r"""Time of `mixtok.layers.depthwise.depthwise_conv2d` per implementation, on depthwise shapes the models use.

    python benchmarks/depthwise_conv.py                       # B = 16: [16, 56, 56, 128] 7x7, ConvFormer-S18's stages
    python benchmarks/depthwise_conv.py --shapes small --repeats 3                  # a quick CPU run

Prints one row per (shape, kernel, stride, impl): forward and forward+backward time (median of `--repeats`
runs after compilation and one warm-up, `block_until_ready`; "fwd+bwd" returns the forward's output and
its VJP to both x and the kernel for a given output gradient), their ratios to "xla" (> 1: faster than
xla), and the max abs error of the forward and of the gradients (dx, dkernel) against "xla". Inputs are
N(0, 1) of `--dtype`.

Shapes (`--batch` B): ConvFormer-S18's SepConv depthwise 7x7 at 224 px (hidden = 2 * dim: [B, 56, 56, 128],
[B, 28, 28, 256], [B, 14, 14, 640], [B, 7, 7, 1024]), a 3x3 stride-1 conv (CAS-ViT, TransNeXt) and a 3x3
stride-2 one (LSNet / FFNet / AFFNet downsampling). `--shapes small` is [4, 56, 56, 64] and [4, 14, 14, 320]
7x7 and a 3x3 stride-2 [4, 28, 28, 64], whatever `--batch`.
"""

import argparse
import platform

import jax
import jax.numpy as jnp
import numpy as np
from timing import median_seconds

from mixtok.layers.depthwise import IMPLEMENTATIONS, depthwise_conv2d

# (H = W, C, kernel, stride), batch from --batch.
DEFAULT_SHAPES = [
    (56, 128, 7, 1),
    (28, 256, 7, 1),
    (14, 640, 7, 1),
    (7, 1024, 7, 1),
    (28, 128, 3, 1),
    (56, 64, 3, 2),
]
# (B, H = W, C, kernel, stride)
SMALL_SHAPES = [(4, 56, 64, 7, 1), (4, 14, 320, 7, 1), (4, 28, 64, 3, 2)]


def bench_shape(batch, size, channels, kernel_size, stride, dtype, impls, repeats):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), dtype)
    kernel = jnp.asarray(rng.normal(size=(kernel_size, kernel_size, 1, channels)) / kernel_size, dtype)
    pad = ((kernel_size - 1) // 2, kernel_size // 2)
    out_size = (size + pad[0] + pad[1] - kernel_size) // stride + 1
    dy = jnp.asarray(rng.normal(size=(batch, out_size, out_size, channels)), dtype)
    rows = {}
    for impl in impls:

        def conv(a, b, impl=impl):
            return depthwise_conv2d(a, b, stride=stride, padding=(pad, pad), impl=impl)

        forward = jax.jit(conv)
        y = forward(x, kernel)

        def forward_and_backward(a, b, dy, conv=conv):
            y, vjp = jax.vjp(conv, a, b)
            return y, *vjp(dy)

        train = jax.jit(forward_and_backward)
        rows[impl] = dict(
            fwd=median_seconds(forward, (x, kernel), repeats),
            train=median_seconds(train, (x, kernel, dy), repeats),
            y=y.astype(jnp.float32),
            grads=[g.astype(jnp.float32) for g in train(x, kernel, dy)[1:]],
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--impls", default="xla,shifted", help=f"comma-separated, of {IMPLEMENTATIONS}")
    parser.add_argument("--shapes", default="default", choices=["default", "small"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    impls = args.impls.split(",")
    shapes = SMALL_SHAPES if args.shapes == "small" else [(args.batch, *shape) for shape in DEFAULT_SHAPES]
    print(
        f"# jax {jax.__version__}, {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
        f"{args.dtype}, median of {args.repeats}"
    )
    header = ["B x H x W x C", "kernel", "impl", "fwd ms", "fwd+bwd ms", "fwd vs xla", "fwd+bwd vs xla"]
    header += ["max abs err vs xla", "grad max abs err vs xla"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for batch, size, channels, kernel_size, stride in shapes:
        rows = bench_shape(batch, size, channels, kernel_size, stride, dtype, impls, args.repeats)
        base = rows.get("xla")
        for impl, row in rows.items():
            cells = [f"{batch}x{size}x{size}x{channels}", f"{kernel_size}x{kernel_size} s{stride}", impl]
            cells += [f"{row['fwd'] * 1e3:.2f}", f"{row['train'] * 1e3:.2f}"]
            if base is None:
                cells += ["-"] * 4
            else:
                error = float(jnp.max(jnp.abs(row["y"] - base["y"])))
                pairs = zip(row["grads"], base["grads"], strict=True)
                grad_error = max(float(jnp.max(jnp.abs(a - b))) for a, b in pairs)
                cells += [f"{base['fwd'] / row['fwd']:.2f}x", f"{base['train'] / row['train']:.2f}x"]
                cells += [f"{error:.1e}", f"{grad_error:.1e}"]
            print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
