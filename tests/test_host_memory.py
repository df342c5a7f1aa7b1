"""mixtok.host_memory.retain: XLA:CPU's large per-call temporaries stop being mapped anew each call.

Each case runs in a fresh interpreter: the setting is process-wide and must come before JAX's backend.
Page-fault counts, not times, are compared (the machine may be loaded).
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

# A program whose 64 MiB intermediate (one dot's output, the next dot's input) is an XLA temporary.
_PROGRAM = textwrap.dedent(
    """
    import resource, sys
    import mixtok.host_memory
    if sys.argv[1] == "before":
        print("retain", mixtok.host_memory.retain())
    import jax, jax.numpy as jnp
    if sys.argv[1] == "after":
        jnp.ones(1).block_until_ready()
        print("retain", mixtok.host_memory.retain())
    f = jax.jit(lambda a, b, c: (a @ b) @ c)
    a, b, c = jnp.ones((2048, 512)), jnp.ones((512, 8192)), jnp.ones((8192, 8))
    faults = []
    for _ in range(16):
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(a, b, c).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    print("faults", " ".join(map(str, faults[4:])))
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


def test_retain_stops_page_faults_on_the_temporaries():
    _, faults_default = _run("none")
    retained, faults_retained = _run("before")
    assert retained == "True"
    # Without it every call maps the 64 MiB anew: 16,384 faults of 4 KiB. With it the block is reused; a call
    # may still grow the heap by a block while the previous call's block is being freed on a worker thread
    # (seen in the first dozen calls), so most calls, not all, take no faults.
    assert min(faults_default) > 15_000, faults_default
    assert sorted(faults_retained)[len(faults_retained) // 2] < 1_000, faults_retained


def test_retain_declines_after_the_backend_started_and_when_turned_off():
    assert _run("after")[0] == "False"
    assert _run("before", MIXTOK_RETAIN_HOST_MEMORY="0")[0] == "False"
