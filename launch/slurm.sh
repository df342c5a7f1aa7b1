#!/usr/bin/env bash
# Writes an sbatch script (one trainer process per GPU, srun, SIGTERM before the time limit) and
# submits it.
# Needs: a SLURM login node (sbatch), Python with mixtok and a CUDA jax on every node, a shared
#   filesystem for --workdir; --dry-run needs only Python.
# Usage: launch/slurm.sh --nodes N --gpus-per-node G [--partition P] [--time T] [--requeue] [--dry-run] \
#          -- --config FILE[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]
# A thin wrapper: `python -m mixtok.launch slurm --help` lists the options; launch/README.md
# explains them.
set -euo pipefail
exec "${PYTHON:-python3}" -m mixtok.launch slurm "$@"
