#!/usr/bin/env bash
# The trainer on every worker of a Cloud TPU VM slice (gcloud ... tpu-vm ssh --worker=all),
# optionally created first as a queued resource.
# Needs: the Google Cloud CLI (gcloud, logged in, with a project), a mixtok checkout on every
#   worker, a filesystem every worker mounts for --workdir (an absolute path; gs:// URLs are refused);
#   --dry-run needs only Python.
# Usage: launch/tpu.sh --name NAME --zone ZONE [--create TYPE [--spot|--reserved]] [--dry-run] \
#          -- --config FILE[:ARGS] --workdir DIR [--config.FIELD=VALUE ...]
# A thin wrapper: `python -m mixtok.launch tpu --help` lists the options; launch/README.md
# explains them.
set -euo pipefail
exec "${PYTHON:-python3}" -m mixtok.launch tpu "$@"
