#!/usr/bin/env bash
# N trainer processes on this machine, joined by jax.distributed over loopback on CPU devices.
# Needs: Python 3.11 with mixtok installed (pip install -e .); nothing else.
# Usage: launch/local.sh [--processes N] [--devices-per-process K] [--port P] [--dry-run] \
#          -- --config FILE[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]
# A thin wrapper: `python -m mixtok.launch local --help` lists the options; launch/README.md
# explains them.
set -euo pipefail
exec "${PYTHON:-python3}" -m mixtok.launch local "$@"
