"""Procedural long-sequence classification data: token-id sequences made from a seed, nothing downloaded.

`marked_majority` (`MarkedMajoritySource`): a long-range task in the spirit of LRA's ListOps (Tay et al. 2021),
whose answers also aggregate digits spread over the whole sequence. A sequence of length L is made of
(tag, digit) pairs, zero-padded after a random real length in [L/2, L]. A quarter of the tags are the MARKER;
the label is the most common digit among the MARKED pairs (half of those digits are the label, the rest
uniform). A DECOY digit (another digit) is planted among the unmarked pairs so that, in expectation, it occurs
exactly as often in the sequence as the label: counting digits alone (a bag of tokens) cannot tell the label from
the decoy, and reaches about 50%; beyond that a model must bind each digit to the tag before it (local token
mixing) and aggregate over the whole sequence (global mixing). Chance is 10%.

Token ids (vocabulary of 32, LRA ListOps' size): 0 padding (masks are `ids != 0`, as LRA's), 1..10 the digits
0..9, 11 the marker, 12..31 the unmarked tags. Example i of a split is a pure function of (split, i), drawn from
`np.random.default_rng([4, split_id, i])`, so the data is the same on every machine and process, and `train`
and `test` are disjoint streams. Examples are {"image": int32 [L], "label": int} (the trainer's batch key stays
"image"; `mixtok.train.tasks.SequenceClassificationTask` feeds it to a sequence model).
"""

from __future__ import annotations

import numpy as np

MARKED_MAJORITY_SPLITS = ("train", "test")
MARKED_MAJORITY_VOCAB_SIZE = 32
MARKED_MAJORITY_CLASSES = 10
PAD, DIGIT0, MARKER = 0, 1, 11
MARKED_FRACTION = 0.25  # of the pairs
LABEL_SHARE = 0.5  # of the marked digits (the rest uniform over the ten)
_UNMARKED_TAGS = np.arange(MARKER + 1, MARKED_MAJORITY_VOCAB_SIZE, dtype=np.int32)  # 20 tags


def marked_majority_example(length: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """One (tokens int32 [length], label) of the marked-majority task, drawn from `rng`."""
    pairs = int(rng.integers(length // 4, length // 2 + 1))
    label, decoy = rng.choice(10, size=2, replace=False)
    marked = rng.random(pairs) < MARKED_FRACTION
    if not marked.any():
        marked[0] = True
    num_marked = int(marked.sum())
    # The decoy's share of the unmarked digits matches the label's surplus count among the marked ones.
    decoy_share = min(1.0, LABEL_SHARE * num_marked / max(pairs - num_marked, 1))
    share = np.where(marked, LABEL_SHARE, decoy_share)
    planted = np.where(marked, label, decoy)
    digits = np.where(rng.random(pairs) < share, planted, rng.integers(0, 10, size=pairs))
    tags = np.where(marked, MARKER, rng.choice(_UNMARKED_TAGS, size=pairs))
    tokens = np.full(length, PAD, np.int32)
    tokens[0 : 2 * pairs : 2] = tags
    tokens[1 : 2 * pairs : 2] = DIGIT0 + digits
    counts = np.bincount(digits[marked], minlength=10)
    return tokens, int(np.argmax(counts))  # ties go to the smallest digit


class MarkedMajoritySource:
    """`num_examples` marked-majority sequences of `sequence_length` tokens (module docstring)."""

    def __init__(self, split: str, num_examples: int, sequence_length: int):
        if split not in MARKED_MAJORITY_SPLITS:
            raise ValueError(
                f"Unknown split {split!r} for data source 'marked_majority'; valid splits: 'train', 'test'."
            )
        if sequence_length < 8:
            raise ValueError(f"data.sequence_length={sequence_length} is too short for marked_majority; use >= 8.")
        self._split_id = MARKED_MAJORITY_SPLITS.index(split)
        self._num_examples = num_examples
        self._length = sequence_length

    def __len__(self) -> int:
        return self._num_examples

    def __getitem__(self, index: int) -> dict[str, object]:
        index = int(index)
        if not 0 <= index < self._num_examples:
            raise IndexError(f"index {index} out of range [0, {self._num_examples}).")
        tokens, label = marked_majority_example(self._length, np.random.default_rng([4, self._split_id, index]))
        return {"image": tokens, "label": label}

    def __repr__(self) -> str:
        return f"MarkedMajoritySource(num_examples={self._num_examples}, sequence_length={self._length})"
