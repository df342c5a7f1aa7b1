"""Test set-up: eight simulated CPU devices, so sharding code runs on a laptop (docs/architecture.md, "Tests").

The flag must be set before JAX is imported anywhere, which is why it lives here.
"""

import os

from tests.xla_test_flags import with_test_flags

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
# XLA:CPU without LLVM's optimisation passes: compiling is most of the suite's time (tests/xla_test_flags.py).
os.environ["XLA_FLAGS"] = with_test_flags(os.environ["XLA_FLAGS"])
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# Many tests compile the same small programs (trainer steps, tiny models); a session-wide
# persistent compilation cache turns the repeats into cache hits.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "mixtok-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
