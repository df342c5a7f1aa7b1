"""ml-cvnets' multi-scale variable-batch sampler: each training step at one of a few image sizes, its batch scaled.

    config.data.image_size = 256            # the base size (cvnets' sampler.vbs.crop_size_*)
    config.data.multi_scale = dict(min_size=160, max_size=320, num_scales=5, check_scale=32, batch_multiple=8)

MobileViT's recipe (apple/ml-cvnets: data/sampler/variable_batch_sampler.py `VariableBatchSamplerDDP`, with
config/classification/imagenet/mobilevit.yaml's `sampler.vbs`: crop 256, min / max 160 / 320, max_n_scales 5,
check_scale 32, batch 128 per GPU on 8 GPUs). What cvnets computes, transcribed here function by function:

- the sizes (data/sampler/utils.py `create_intervallic_integer_list`): `linspace(min, max, n)` plus the base
  size, each made divisible by `check_scale` with utils/math_utils.py `make_divisible` (round to the nearest
  multiple, at least the divisor, and one divisor more when that fell below 0.9 v), duplicates merged
  (`image_batch_pairs` keeps a set of tuples). For mobilevit.yaml: 160, 192, 256, 288, 320;
- the per-GPU batch at size (h, w) (`image_batch_pairs`): max(1, int(round(base_h * base_w * batch_gpu0 /
  (h * w), 2))); for mobilevit.yaml 327, 227, 128, 101, 81;
- each batch draws one (h, w, batch) uniformly (`random.choice`), every rank the same one (each rank seeds
  Python's `random` with the epoch before drawing), and reads its next `batch` indices; the dataset
  random-resized-crops every image of the batch to (h, w).

mixtok's form (`mixtok.data.pipeline`): `batch_multiple` stands for cvnets' GPU count, so that the global
batch at size s is batch_multiple * (cvnets' per-GPU batch with batch_gpu0 = B / batch_multiple), B the
config's global batch (`batch_size`) at the base size: with batch_multiple 8 and B = 1024 every per-GPU
batch equals cvnets'. Step t's size is drawn uniformly from a generator seeded by (seed, t // 1024) (the
draws of 1,024 steps at a time, the same on every process); step t reads the next b_t examples of the one
global train stream (positions [start_t, start_t + b_t), start_t the sum of the earlier steps' batches),
each cropped to s_t with the key of its stream position, and process i of P reads rows [i b_t / P,
(i + 1) b_t / P). Only square sizes: mixtok's transforms crop squares (cvnets' min / max height and width
are equal in mobilevit.yaml).

What differs from cvnets: the draws (numpy's generator, not Python's `random` reseeded per epoch); no
epochs in the stream (cvnets restarts its index list each epoch and pads the last batch of an epoch with
the epoch's first indices; here a batch may hold the end of one epoch and the start of the next, as every
mixtok stream); the per-epoch scale increase (`sampler.vbs.scale_inc`, off in mobilevit.yaml) is absent.
An epoch of N images is about N / mean(b) steps (the configs set their per-epoch schedules from that).

`rule="cas_vit"`: CAS-ViT's sampler (Tianfang-Zhang/CAS-ViT classification/data/samplers.py
`MultiScaleSamplerDDP` and `_image_batch_pairs`, the README's `--multi_scale_sampler`), which differs from
cvnets' only in the batches and the sizes' rounding:
- the sizes: `linspace(min, max, n)` and the base size (when not already among them), each made divisible by
  `check_scale` (the file's fixed 32) with the same `make_divisible`: for 224 px and 160-320, 5 scales:
  160, 192, 224, 256, 288, 320;
- the per-GPU batch at (h, w): `max(batch_gpu0, int(round(base_h * base_w * batch_gpu0 / (h * w), 2)))`,
  never below the base batch, then `make_divisible(b, n_gpus)` and one less when odd: at batch_gpu0 128 on
  8 GPUs, 248, 176, 128, 128, 128, 128;
- each batch draws its (h, w, batch) with `random.choice` after `random.seed(epoch)`, the same on every rank.
With the official `--update_freq 2` each of an update's two micro-batches draws its own size: in mixtok,
`config.grad_accum_steps = 2` reads two batches of this stream per step (mixtok.train.steps).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

# The sizes of this many consecutive steps are drawn at once (and their batch sizes summed at once), so
# that the start of step t costs t / 1024 draws, not t.
DRAW_CHUNK = 1024
_FIELDS = ("min_size", "max_size", "num_scales", "check_scale", "batch_multiple", "rule")
RULES = ("cvnets", "cas_vit")


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """ml-cvnets' utils/math_utils.py `make_divisible`: the nearest multiple of `divisor`, at least
    `min_value` (default `divisor`), one divisor more when rounding went below 0.9 * value."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def intervallic_sizes(base: int, min_size: int, max_size: int, num_scales: int, divisor: int) -> list[int]:
    """ml-cvnets' data/sampler/utils.py `create_intervallic_integer_list`: linspace(min, max, n) and `base`,
    each made divisible by `divisor`, sorted (duplicates kept, as there)."""
    values = set(np.linspace(min_size, max_size, num_scales).tolist())
    values.add(base)
    return sorted(make_divisible(v, divisor) for v in values)


def image_batch_pairs(
    base: int, batch_per_gpu: int, *, min_size: int, max_size: int, num_scales: int, check_scale: int
) -> list[tuple[int, int, int]]:
    """ml-cvnets' `image_batch_pairs` for square sizes: sorted distinct (h, w, per-GPU batch)."""
    sizes = intervallic_sizes(base, min_size, max_size, num_scales, check_scale)
    pixels = base * base * batch_per_gpu
    return sorted({(s, s, max(1, int(round(pixels / (s * s), 2)))) for s in sizes})


def cas_vit_image_batch_pairs(
    base: int, batch_per_gpu: int, n_gpus: int, *, min_size: int, max_size: int, num_scales: int, check_scale: int
) -> list[tuple[int, int, int]]:
    """CAS-ViT's samplers.py `_image_batch_pairs` for square sizes: sorted distinct (h, w, per-GPU batch).

    The batch never drops below `batch_per_gpu`, is made divisible by `n_gpus` and then even (one less).
    """
    sizes = list(np.linspace(min_size, max_size, num_scales).tolist())
    if base not in sizes:
        sizes.append(base)
    pixels = base * base * batch_per_gpu
    pairs = set()
    for size in {make_divisible(v, check_scale) for v in sizes}:
        batch = make_divisible(max(batch_per_gpu, int(round(pixels / (size * size), 2))), n_gpus)
        pairs.add((size, size, batch if batch % 2 == 0 else batch - 1))
    return sorted(pairs)


@dataclasses.dataclass(frozen=True)
class MultiScaleOptions:
    """`config.data.multi_scale`, checked; the defaults are cvnets' (and mobilevit.yaml's)."""

    min_size: int = 160
    max_size: int = 320
    num_scales: int = 5
    check_scale: int = 32
    batch_multiple: int = 8  # cvnets' number of GPUs: the per-GPU batches are the global ones / this
    rule: str = "cvnets"  # or "cas_vit": CAS-ViT's batches, never below the base one (module docstring)


def multi_scale_options(value: Any) -> MultiScaleOptions | None:
    """The `data.multi_scale` block (a mapping of `_FIELDS`), checked; None (or absent, or empty) is off."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise ValueError(f"data.multi_scale must be None or a block with fields {', '.join(_FIELDS)}; got {value!r}.")
    if not value:
        return None
    for key in value:
        if key not in _FIELDS:
            raise ValueError(f"data.multi_scale has no field {key!r}; valid fields are {', '.join(_FIELDS)}.")
    fields = {**dataclasses.asdict(MultiScaleOptions()), **value}
    if fields["rule"] not in RULES:
        raise ValueError(f"data.multi_scale.rule must be one of {', '.join(RULES)}; got {fields['rule']!r}.")
    for key, number in fields.items():
        if key == "rule":
            continue
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"data.multi_scale.{key} must be a positive integer, got {number!r}.")
    if fields["min_size"] > fields["max_size"]:
        raise ValueError(f"data.multi_scale.min_size={fields['min_size']} must be <= max_size={fields['max_size']}.")
    return MultiScaleOptions(**fields)


def scale_batches(options: MultiScaleOptions, base: int, global_batch_size: int) -> tuple[tuple[int, int], ...]:
    """The (image size, global batch) pairs a step draws from, sorted by size.

    The global batch at size s is `batch_multiple` times the rule's (cvnets' or CAS-ViT's) per-GPU batch for
    batch_gpu0 = global_batch_size / batch_multiple at `base`; a batch_multiple that does not divide the batch is
    refused.
    """
    if global_batch_size % options.batch_multiple:
        raise ValueError(
            f"data.multi_scale.batch_multiple={options.batch_multiple} must divide the global batch "
            f"{global_batch_size} (it plays cvnets' GPU count: batch_size = per-GPU batch x batch_multiple)."
        )
    sizes = dict(
        min_size=options.min_size,
        max_size=options.max_size,
        num_scales=options.num_scales,
        check_scale=options.check_scale,
    )
    per_gpu = global_batch_size // options.batch_multiple
    if options.rule == "cas_vit":
        pairs = cas_vit_image_batch_pairs(base, per_gpu, options.batch_multiple, **sizes)
    else:
        pairs = image_batch_pairs(base, per_gpu, **sizes)
    return tuple((h, options.batch_multiple * b) for h, _, b in pairs)


def mean_global_batch(options: MultiScaleOptions, base: int, global_batch_size: int) -> float:
    """The expected global batch of a step (sizes drawn uniformly): what an epoch's step count divides."""
    return float(np.mean([b for _, b in scale_batches(options, base, global_batch_size)]))


class ScaleSchedule:
    """Step t -> (image size, global batch, first stream position): the same on every process.

    Sizes are drawn uniformly, DRAW_CHUNK steps at a time from `np.random.default_rng([seed, chunk, ...])`;
    the first stream position of step t is the sum of the earlier steps' batches. Thread-safe (grain reads
    steps from several threads).
    """

    def __init__(self, pairs: tuple[tuple[int, int], ...], seed: int):
        self.pairs = pairs
        self._sizes = np.asarray([s for s, _ in pairs], np.int64)
        self._batches = np.asarray([b for _, b in pairs], np.int64)
        self._seed = int(seed)
        self._chunk_starts = [0]  # first stream position of each chunk drawn so far, and of the next one
        self._chunks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()

    def choices(self, chunk: int) -> np.ndarray:
        """The indices into `pairs` of steps [chunk * DRAW_CHUNK, (chunk + 1) * DRAW_CHUNK)."""
        rng = np.random.default_rng([self._seed, int(chunk), 0x6D75_6C74])  # "mult": not the shuffle's stream
        return rng.integers(len(self.pairs), size=DRAW_CHUNK)

    def _chunk(self, chunk: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            while len(self._chunk_starts) <= chunk:  # the chunks before it, for its first position
                done = len(self._chunk_starts) - 1
                self._chunk_starts.append(self._chunk_starts[-1] + int(self._batches[self.choices(done)].sum()))
            if chunk not in self._chunks:
                if len(self._chunks) > 8:  # steps are read in order: keep a few chunks only
                    self._chunks.clear()
                picks = self.choices(chunk)
                batches = self._batches[picks]
                starts = self._chunk_starts[chunk] + np.concatenate([[0], np.cumsum(batches)[:-1]])
                self._chunks[chunk] = (picks, starts)
            return self._chunks[chunk]

    def step(self, t: int) -> tuple[int, int, int]:
        """(image size, global batch, first stream position) of step t."""
        chunk, k = divmod(int(t), DRAW_CHUNK)
        picks, starts = self._chunk(chunk)
        return int(self._sizes[picks[k]]), int(self._batches[picks[k]]), int(starts[k])
