#!/usr/bin/env bash
# Creates an xpk workload on a GKE cluster: the trainer on every TPU VM or GPU node.
# Needs: xpk (pip install xpk, with gcloud and kubectl), an xpk cluster, a container image with
#   mixtok, a filesystem mounted in every container for --workdir (an absolute path; gs:// URLs are
#   refused); --dry-run needs only Python.
# Usage: launch/gke.sh --cluster C --workload W (--tpu-type T [--num-slices S] | --device-type D --num-nodes N) [--dry-run] \
#          -- --config FILE[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]
# A thin wrapper: `python -m mixtok.launch gke --help` lists the options; launch/README.md
# explains them.
set -euo pipefail
exec "${PYTHON:-python3}" -m mixtok.launch gke "$@"
