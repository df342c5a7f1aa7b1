"""Writes metrics to `workdir/metrics.jsonl` (one JSON object per logged step) and TensorBoard.

On resume the trainer restarts from its last checkpoint, so lines logged after that checkpoint
are removed (the resumed run writes them again, identically) and TensorBoard purges the same
steps; the file is rewritten atomically so an interruption never leaves it half-written. A fresh
run (no checkpoint) that finds a metrics.jsonl, left by a run that stopped before its first
checkpoint, moves it aside to metrics.jsonl.orphaned-<time> rather than appending to or deleting it.
"""

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter


class MetricWriter:
    """Appends metrics to metrics.jsonl and TensorBoard; a writer with `enabled=False` (every
    process but the first of a multi-host run) writes nothing."""

    def __init__(self, workdir: Path, resume_step: int | None = None, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        if not enabled:
            return
        if resume_step is None and self.path.exists() and self.path.stat().st_size:
            orphan = self.path.with_name(f"metrics.jsonl.orphaned-{int(time.time())}")
            os.replace(self.path, orphan)
            logging.getLogger(__name__).warning(
                "%s came from a run that left no checkpoint; moved it to %s.", self.path, orphan.name
            )
        if resume_step is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= resume_step
            ]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, self.path)
        self._file = open(self.path, "a")
        purge = None if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"), purge_step=purge) if tensorboard else None

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if not self.enabled:
            return
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir) -> list:
    """The records of `workdir/metrics.jsonl`, in order."""
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
