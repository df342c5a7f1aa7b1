"""Test set-up: eight simulated CPU devices, so sharding code runs on a laptop (DESIGN.md, Tests).

The flag must be set before JAX is imported anywhere, which is why it lives here.
"""

import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
