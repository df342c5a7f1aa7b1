"""Keep freed host memory in the process, so that XLA:CPU does not page-fault its temporaries every step.

    import mixtok.host_memory
    mixtok.host_memory.retain()        # first thing, before the first JAX computation

Why. XLA:CPU allocates a compiled program's temporaries (every intermediate of a training step, packed
into one block) at each call and frees them after it. glibc's malloc serves a block above 32 MiB by
mapping fresh pages from the kernel (`mmap`) and gives it back on `free` (`munmap`), so every step the
kernel maps and zeroes the whole block again, one 4 KiB page fault at a time. Measured on the 2-core
development machine (AMD EPYC, JAX 0.10.2, float32): ConvFormer-S18's train step at batch 8, 224 px, maps
and unmaps one 1.6 GB block per step (`strace -e mmap,munmap`), takes 420,000 minor page faults and 0.7 s
of kernel time per 1.43 s step; after `retain()` it takes none and the step 1.14 s. timm's step in PyTorch
on the same machine took 107,000 faults and 0.2 s of kernel time (its tensors are separate blocks, most
below the threshold).

What it does, through glibc's `mallopt` (Linux with glibc only; elsewhere it does nothing and says so):
- `M_ARENA_MAX = 1`: every thread allocates from the main arena. glibc gives other threads arenas of at
  most 64 MiB, which map any larger block with `mmap` whatever the settings below, and XLA:CPU allocates
  the block on its worker threads. This is why it must run before JAX starts its CPU backend: a thread
  keeps the arena it was given at its first allocation.
- `M_MMAP_MAX = 0`: large blocks come from the heap instead of their own mappings.
- `M_TRIM_THRESHOLD = SIZE_MAX`: freed memory stays with the process for the next step.

What it does not guarantee: a call can still grow the heap by a block when XLA's worker thread frees
the previous call's block only after the next call has allocated its own. In a jitted `(a @ b) @ c` with
a 64 MiB temporary, 12 calls after warm-up on the 2-core machine took a block's worth of faults in 0 to 3
of them when idle and 1 to 4 with three busy processes beside it (against all 12 without `retain()`);
`tests/test_host_memory.py` therefore checks the allocator's behaviour directly, not XLA's timing.

The cost: the process's resident memory stays at its peak (which a training loop reaches every step
anyway) and its threads share one allocator lock. `python -m mixtok.train` and the benchmarks call
`retain()` at start-up; the environment variable MIXTOK_RETAIN_HOST_MEMORY=0 turns it off for them.
"""

import ctypes
import logging
import os
import platform
import sys

__all__ = ["ENVIRONMENT_VARIABLE", "retain"]

ENVIRONMENT_VARIABLE = "MIXTOK_RETAIN_HOST_MEMORY"
# glibc's malloc.h parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_applied = False


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started and started())


def retain() -> bool:
    """Sets glibc's malloc to keep large freed blocks (see the module docstring); True where it did.

    False, with one logged line saying why, when MIXTOK_RETAIN_HOST_MEMORY=0, when the C library is not
    glibc, or when JAX's backend has already started (call it earlier: first thing in the program).
    Calling it again after it has applied does nothing and returns True.
    """
    global _applied
    log = logging.getLogger(__name__)
    if _applied:
        return True
    if os.environ.get(ENVIRONMENT_VARIABLE, "1") == "0":
        log.info("%s=0: leaving malloc's settings as they are.", ENVIRONMENT_VARIABLE)
        return False
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        log.info("host memory: not Linux with glibc (%s %s); malloc left as it is.", sys.platform, platform.libc_ver())
        return False
    if _backend_started():
        log.warning(
            "host memory: JAX's backend has already started, so its threads keep their own malloc arenas; "
            "call mixtok.host_memory.retain() before the first JAX computation."
        )
        return False
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # -1 as the int argument is SIZE_MAX once glibc stores it as a size_t: never trim.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    if not all(libc.mallopt(parameter, value) == 1 for parameter, value in settings):
        log.warning("host memory: glibc's mallopt refused a setting; malloc may still map large blocks.")
        return False
    _applied = True
    return True
