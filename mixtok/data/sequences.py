"""Procedural long-sequence classification data: token-id sequences made from a seed, nothing downloaded.

`marked_sum` (`MarkedSumSource`): a long-range task in the spirit of LRA's ListOps (Tay et al. 2021), whose
`[SM ...]` operator is a sum modulo 10. Each sequence is a random stream of distractor tokens (the ten digits
and twenty other symbols) of random length in [L/2, L], zero-padded to L, in which exactly two digits are
MARKED: each follows a marker token. The label is the sum of the two marked digits modulo 10. Solving it needs
a token to see its neighbour (the marker) and the two marked digits, anywhere in the sequence, to meet: chance
is 10%, and a model that ignores order cannot tell a marked digit from the many unmarked ones.

Token ids (vocabulary of 32, LRA ListOps' size): 0 padding (masks are `ids != 0`, as LRA's), 1..10 the digits
0..9, 11 the marker, 12..31 other symbols. Example i of a split is a pure function of (split, i), drawn from
`np.random.default_rng([4, split_id, i])`, so the data is the same on every machine and process, and `train`
and `test` are disjoint streams. Examples are {"image": int32 [L], "label": int} (the trainer's batch key stays
"image"; `mixtok.train.tasks.SequenceClassificationTask` feeds it to a sequence model).
"""

from __future__ import annotations

import numpy as np

MARKED_SUM_SPLITS = ("train", "test")
MARKED_SUM_VOCAB_SIZE = 32
MARKED_SUM_CLASSES = 10
PAD, DIGIT0, MARKER = 0, 1, 11
_DISTRACTORS = np.array([t for t in range(1, MARKED_SUM_VOCAB_SIZE) if t != MARKER], np.int32)


def marked_sum_example(length: int, rng: np.random.Generator, num_marked: int = 2) -> tuple[np.ndarray, int]:
    """One (tokens int32 [length], label) of the marked-sum task with `num_marked` marked digits, drawn from `rng`."""
    used = int(rng.integers(length // 2, length + 1))
    tokens = np.full(length, PAD, np.int32)
    tokens[:used] = rng.choice(_DISTRACTORS, size=used)
    # Two marker slots, never overlapping: a marker at p and its digit at p + 1.
    positions = np.sort(rng.choice(used // 2, size=num_marked, replace=False)) * 2
    digits = rng.integers(0, 10, size=num_marked)
    for position, digit in zip(positions, digits):
        tokens[position], tokens[position + 1] = MARKER, DIGIT0 + digit
    return tokens, int(digits.sum() % 10)


class MarkedSumSource:
    """`num_examples` marked-sum sequences of `sequence_length` tokens (module docstring)."""

    def __init__(self, split: str, num_examples: int, sequence_length: int):
        if split not in MARKED_SUM_SPLITS:
            raise ValueError(f"Unknown split {split!r} for data source 'marked_sum'; valid splits: 'train', 'test'.")
        if sequence_length < 8:
            raise ValueError(f"data.sequence_length={sequence_length} is too short for marked_sum; use >= 8.")
        self._split_id = MARKED_SUM_SPLITS.index(split)
        self._num_examples = num_examples
        self._length = sequence_length

    def __len__(self) -> int:
        return self._num_examples

    def __getitem__(self, index: int) -> dict[str, object]:
        index = int(index)
        if not 0 <= index < self._num_examples:
            raise IndexError(f"index {index} out of range [0, {self._num_examples}).")
        tokens, label = marked_sum_example(self._length, np.random.default_rng([4, self._split_id, index]))
        return {"image": tokens, "label": label}

    def __repr__(self) -> str:
        return f"MarkedSumSource(num_examples={self._num_examples}, sequence_length={self._length})"
