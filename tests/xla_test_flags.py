"""XLA flags for every process the tests run JAX in (tests/conftest.py, and the workers that set their own).

`--xla_backend_optimization_level=0`: XLA:CPU compiles its generated code without LLVM's optimisation passes.
The suite's programs are small and mostly compiled once, so compilation, not execution, is most of their time:
measured on the 2-core development machine with a cold compilation cache, tests/train/test_trainer.py took 89 s
instead of 130 s, and tests/models/test_metaformer.py with tests/interop/test_golden_timm.py and tests/kernels
228 s instead of 398 s, all passing. XLA's own (HLO) optimisations still run, so what is computed is the same;
only the machine code is slower. Nothing outside the tests (benchmarks, the trainer) sets it.
"""

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


def with_test_flags(flags: str) -> str:
    """`flags` (an XLA_FLAGS value) with TEST_XLA_FLAGS added, once."""
    return flags if TEST_XLA_FLAGS in flags.split() else f"{flags} {TEST_XLA_FLAGS}".strip()
