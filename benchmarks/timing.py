"""What the kernel benchmarks share: timing a jitted function, and the device's memory-bandwidth bound.

The benchmarks are run as scripts (`python benchmarks/NAME.py`), so this module is imported by its
plain name from the benchmarks folder.
"""

import statistics
import time
from collections.abc import Callable, Mapping

import jax

# HBM bandwidth by device kind (docs/facts/kernels.md, "H100 SXM limits"): H100 SXM 3.35 TB/s, H200 4.8 TB/s.
KNOWN_BANDWIDTH_GBS = {"H100": 3350.0, "H200": 4800.0}


def median_seconds(fn, args, repeats):
    """Median wall time of `fn(*args)` over `repeats` runs, after compilation and one warm-up run."""
    jax.block_until_ready(fn(*args))  # compile
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(
    steps: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median wall time of each zero-argument `steps[name]()`, the repeats taken in turns (a, b, a, b, ...).

    Each step must block until its work is done (`jax.block_until_ready`, `torch.cuda.synchronize`).
    Every step first runs once untimed (compilation, lazy initialisation), then `warmup` more times;
    then the timed runs alternate between the steps, so a load that comes and goes on a shared
    machine slows them alike.
    """
    for step in steps.values():
        for _ in range(1 + warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def device_bandwidth_gbs():
    """The memory-bandwidth bound of the first device in GB/s, if its kind is known; else None."""
    kind = jax.devices()[0].device_kind
    return next((gbs for name, gbs in KNOWN_BANDWIDTH_GBS.items() if name in kind), None)
