"""grain's worker processes keep freed host memory (mixtok.host_memory.retain), as the trainer's process does.

A transform run in the worker allocates, touches and frees one 64 MiB block twice through glibc and returns
the page faults of the second allocation: a block's worth when glibc maps it anew, about none when the
freed block is kept. Fault counts, not times: the result does not depend on the machine's load.
"""

import ctypes
import os
import resource
import sys

import grain
import numpy as np
import pytest

from mixtok.data import pipeline

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="glibc's mallopt only",
)

_BLOCK = 64 << 20
_PAGES = _BLOCK // 4096


class SecondAllocationFaults(grain.transforms.Map):
    def map(self, element):
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        faults = []
        for _ in range(2):
            start = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            block = libc.malloc(_BLOCK)
            ctypes.memset(block, 1, _BLOCK)
            libc.free(block)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - start)
        return np.int64(faults[1])


def _faults_in_a_worker(monkeypatch, retain: str) -> int:
    monkeypatch.setenv("MIXTOK_RETAIN_HOST_MEMORY", retain)  # the spawned worker inherits the environment
    ds = grain.MapDataset.range(1).map(SecondAllocationFaults()).to_iter_dataset()
    return int(next(iter(pipeline._multiprocess(ds, worker_count=1))))


def test_a_worker_keeps_a_freed_large_block_for_the_next_allocation(monkeypatch):
    assert _faults_in_a_worker(monkeypatch, "1") < _PAGES // 100


def test_with_retain_turned_off_a_worker_maps_every_large_block_anew(monkeypatch):
    assert _faults_in_a_worker(monkeypatch, "0") >= _PAGES
