r"""Inference and training throughput of MetaFormer variants, against timm (PyTorch) as baseline.

    python benchmarks/metaformer_throughput.py --models poolformer_s12,caformer_s18 --batch 32 --size 224

Prints one row per model: parameters, forward FLOPs per image (XLA's cost analysis), forward
and train-step time, images/s, achieved FLOP/s as a % of `--peak-tflops` (the hardware bound;
omit it and the column is left out), and mixtok's speed relative to timm's eager forward on the same
machine (when torch and timm are installed). Timings are the median of `--repeats` runs after
warm-up; compile time is excluded. Record results, with the device, JAX version and date, in
benchmarks/RESULTS.md.
"""

import argparse
import platform
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mixtok import host_memory
from mixtok.models import count_params, create_model


def _median_seconds(fn, repeats):
    fn()  # warm-up (compilation happened before)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_mixtok(name, batch, size, repeats, dtype):
    model = create_model(name, dtype=dtype)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, 3)), jnp.float32)
    labels = jnp.zeros((batch,), jnp.int32)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x[:1]))
    forward = jax.jit(model.apply).lower(variables, x).compile()
    flops = (forward.cost_analysis() or {}).get("flops", float("nan"))
    if isinstance(flops, (list, tuple)):  # older JAX returns one dict per device
        flops = flops[0]

    def loss(params):
        logits = model.apply({**variables, "params": params}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grad = jax.jit(jax.grad(loss)).lower(variables["params"]).compile()
    t_fwd = _median_seconds(lambda: jax.block_until_ready(forward(variables, x)), repeats)
    t_train = _median_seconds(lambda: jax.block_until_ready(grad(variables["params"])), repeats)
    return count_params(variables), flops / batch, t_fwd, t_train


def bench_timm(name, batch, size, repeats):
    try:
        import timm
        import torch
    except ImportError:
        return None
    from mixtok.models import model_spec

    if not model_spec(name).timm_name:
        return None
    model = timm.create_model(model_spec(name).timm_name, pretrained=False).eval()
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        return _median_seconds(lambda: model(x), repeats)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="poolformer_s12,poolformerv2_s12,convformer_s18,caformer_s18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s at --dtype, for the %% of bound column",
    )
    parser.add_argument("--no-timm", action="store_true", help="skip the timm (PyTorch) baseline")
    args = parser.parse_args()

    host_memory.retain()  # before JAX's backend starts (mixtok/host_memory.py)
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({device.platform}) x{jax.device_count()}, {_cpu_name()}"
        f" | jax {jax.__version__} | batch {args.batch}, {args.size}px, {args.dtype}, median of {args.repeats}"
    )
    header = ["model", "params", "GFLOP/img", "fwd ms", "fwd img/s", "train ms", "train img/s"]
    if args.peak_tflops:
        header += ["fwd % peak"]
    header += ["timm fwd ms", "fwd speed vs timm"]
    rows = []
    for name in args.models.split(","):
        params, flops, t_fwd, t_train = bench_mixtok(
            name, args.batch, args.size, args.repeats, getattr(jnp, args.dtype)
        )
        row = [
            name,
            f"{params / 1e6:.2f}M",
            f"{flops / 1e9:.2f}",
            f"{t_fwd * 1e3:.1f}",
            f"{args.batch / t_fwd:.1f}",
            f"{t_train * 1e3:.1f}",
            f"{args.batch / t_train:.1f}",
        ]
        if args.peak_tflops:
            row.append(f"{100 * flops * args.batch / t_fwd / (args.peak_tflops * 1e12):.1f}%")
        t_timm = None if args.no_timm else bench_timm(name, args.batch, args.size, args.repeats)
        row += ["-", "-"] if t_timm is None else [f"{t_timm * 1e3:.1f}", f"{t_timm / t_fwd:.2f}x"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
