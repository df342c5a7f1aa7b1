"""mixtok.host_memory.retain: large freed blocks stay with the process instead of being mapped anew.

Each case runs in a fresh interpreter: the setting is process-wide and must come before JAX's backend.
The test allocates through glibc itself (ctypes), on a thread of its own as XLA:CPU's workers do, and
counts page faults, not times: with nothing else allocating between the calls, the count is exact
whatever the machine's load. (Through XLA the effect also holds, but how often a step still grows the
heap depends on when a worker thread frees the previous step's block, so it is not asserted here; the
module docstring gives the measurement.)
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt only",
)

_BLOCK = 64 << 20  # above glibc's largest mmap threshold (32 MiB), like XLA's per-call temporaries
_PAGES = _BLOCK // 4096

# Allocates, touches and frees one 64 MiB block eight times on a new thread; prints the faults of each.
_PROGRAM = textwrap.dedent(
    f"""
    import ctypes, resource, sys, threading
    import mixtok.host_memory
    if sys.argv[1] == "before":
        print("retain", mixtok.host_memory.retain())
    if sys.argv[1] == "after":
        import jax.numpy as jnp
        jnp.ones(1).block_until_ready()
        print("retain", mixtok.host_memory.retain())
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    faults = []

    def work():
        for _ in range(8):
            start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            block = libc.malloc({_BLOCK})
            ctypes.memset(block, 1, {_BLOCK})
            libc.free(block)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    print("faults", " ".join(map(str, faults)))
    """
)


def _run(mode, **env):
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
        check=True,
    ).stdout
    fields = dict(line.split(" ", 1) for line in out.splitlines())
    return fields.get("retain"), [int(n) for n in fields["faults"].split()]


def test_without_retain_every_large_block_is_mapped_and_faulted_anew():
    _, faults = _run("none")
    assert min(faults) >= _PAGES, faults


def test_retain_keeps_a_freed_large_block_for_the_next_allocation_on_a_worker_thread():
    retained, faults = _run("before")
    assert retained == "True"
    # The first allocation grows the heap (a fault per page it had not touched yet); every later one reuses it.
    assert faults[0] > _PAGES * 9 // 10, faults
    assert max(faults[1:]) < _PAGES // 100, faults


def test_retain_declines_after_the_backend_started_and_when_turned_off():
    assert _run("after")[0] == "False"
    assert _run("before", MIXTOK_RETAIN_HOST_MEMORY="0")[0] == "False"
