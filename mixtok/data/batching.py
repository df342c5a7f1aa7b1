"""Batching that drops or masks skipped images and reports them to the caller.

Training: `SkipUndecodableBatchDataset` stacks examples into full batches,
leaving out undecodable-image markers (so every batch has the requested size)
and carrying their paths along in the batch under `SKIPPED_KEY`. It may run
in grain worker processes; `ReportSkippedIterator`, the last stage, runs in
the calling process, removes `SKIPPED_KEY`, and logs and counts the paths.

Evaluation: `stack_eval_batch` stacks examples that are never dropped (an
undecodable one becomes a masked-out zero image, like padding), so every
shard sees the same number of batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from mixtok.data import decode

SKIPPED_KEY = "_skipped_undecodable"


class SkipUndecodableBatchDataset(grain.IterDataset):
    """Full batches {'image', 'label': int32} without undecodable examples."""

    def __init__(self, parent: grain.IterDataset, batch_size: int):
        super().__init__(parent)
        self._batch_size = batch_size

    def __iter__(self) -> _SkipUndecodableBatchIterator:
        return _SkipUndecodableBatchIterator(self._parent.__iter__(), self._batch_size)

    def __str__(self) -> str:
        return f"SkipUndecodableBatchDataset(batch_size={self._batch_size})"


class _SkipUndecodableBatchIterator(grain.DatasetIterator):
    """Pulls examples until a batch is full; a short last batch is dropped."""

    def __init__(self, parent: grain.DatasetIterator, batch_size: int):
        super().__init__(parent)
        self._batch_size = batch_size

    def __next__(self) -> dict[str, Any]:
        images, labels, skipped = [], [], []
        while len(images) < self._batch_size:
            # StopIteration here drops the partial batch (drop_remainder); the
            # training stream is infinite, so it only happens for finite parents.
            example = next(self._parent)
            if decode.is_undecodable(example):
                skipped.append(example[decode.UNDECODABLE_KEY])
                continue
            images.append(example["image"])
            labels.append(example["label"])
        return {"image": np.stack(images), "label": np.asarray(labels, np.int32), SKIPPED_KEY: tuple(skipped)}

    # Batches are cut only after whole examples, so between batches the state
    # of this stage is exactly its parent's.
    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)


class ReportSkippedIterator(grain.DatasetIterator):
    """The train iterator handed to callers: grain state, plus a skip count.

    `get_state` / `set_state` are those of the grain pipeline beneath, so the
    iterator works with `grain.checkpoint.CheckpointSave/CheckpointRestore`.
    `num_skipped_undecodable` counts the images this iterator skipped since it
    was created (it is not part of the checkpointed state).
    """

    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)
        self.num_skipped_undecodable = 0

    def __next__(self) -> dict[str, np.ndarray]:
        batch = dict(next(self._parent))
        skipped = batch.pop(SKIPPED_KEY, ())
        if skipped:
            self.num_skipped_undecodable += decode.report_skipped(skipped)
        return batch

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)


def eval_example(
    example: dict[str, Any], image_size: int, sequence_length: int | None = None, num_frames: int | None = None
) -> dict[str, Any]:
    """Adds the mask: 1 for a real example, 0 (and a zero image, zero clip [num_frames, S, S, 3], or zero token
    ids [sequence_length]) otherwise."""
    if "image" in example and not decode.is_undecodable(example):
        return {"image": example["image"], "label": int(example["label"]), "mask": np.float32(1.0)}
    if sequence_length is not None:
        blank = np.zeros((sequence_length,), np.int32)
    elif num_frames is not None:
        blank = np.zeros((num_frames, image_size, image_size, 3), np.float32)
    else:
        blank = np.zeros((image_size, image_size, 3), np.float32)
    masked = {"image": blank, "label": 0, "mask": np.float32(0.0)}
    if decode.is_undecodable(example):
        masked[SKIPPED_KEY] = example[decode.UNDECODABLE_KEY]
    return masked


def stack_eval_batch(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stacks eval examples into {'image', 'label': int32, 'mask': float32}."""
    return {
        "image": np.stack([e["image"] for e in examples]),
        "label": np.asarray([e["label"] for e in examples], np.int32),
        "mask": np.asarray([e["mask"] for e in examples], np.float32),
        SKIPPED_KEY: tuple(e[SKIPPED_KEY] for e in examples if SKIPPED_KEY in e),
    }
