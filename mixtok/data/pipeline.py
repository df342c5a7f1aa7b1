"""Train and eval batch iterators for `config.data`, sharded per process.

    train_it = create_train_iterator(config.data, global_batch_size=256, seed=0)
    batch = next(train_it)   # {'image': f32 [256 // P, S, S, 3], 'label': i32}
    for batch in create_eval_iterator(config.data, global_batch_size=256):
      ...                    # plus 'mask': f32, 0 on padding

A video source (`data.name` sample_videos or video_folder, `mixtok.data.videos`) gives clips
{'image': f32 [b, T, S, S, 3]} through the same stream, sharding, eval padding and state; with
`data.image_ratio` > 0 the train iterator interleaves whole image steps as T = 1 clips
(`mixtok.data.mixing.ImageVideoSteps`).

Training: one global stream, the same for any number of processes: the whole
train split shuffled with `seed` anew each epoch, repeated forever, each
example augmented (`transforms.TrainTransform`) with a key from its place in
that stream. Global batch t is examples [t * B, (t + 1) * B) of it; of the P
processes, process i reads only rows [i * B / P, (i + 1) * B / P) of each
global batch. So a run gets the same batches, crops and flips on 1 process or
on 8, and a global batch is the concatenation of the processes' batches in
process order (what `jax.make_array_from_process_local_data` assembles). The
stream is repeated before it is batched, so batches are always full and none
are dropped: a batch may hold the end of one epoch and the start of the next.
(With `data.skip_undecodable`, a process that skips an image fills its rows
from its next ones, so the batches then depend on the process count.)

Repeated augmentation (`data.repeated_aug` = c > 1), DeiT's (facebookresearch/deit:
samplers.py `RASampler`): the stream is cut into epochs of L positions, L the
train split's size N rounded down to a multiple of 256 (N itself when N < 256),
and the k-th position of epoch e (0 <= k < L) is image perm_e[k // c], perm_e
being the permutation the plain stream reads in its epoch e. An epoch so holds
as many examples as before but only ceil(L / c) distinct images, each as c
consecutive positions augmented with those positions' keys (c different crops
and flips), so all in one global batch unless a batch boundary falls between
them. c = 0 or 1 is the plain stream, unchanged. The iterator state is the same
position count as without it, so resumption is exact in the same way.

RASampler, per epoch: a permutation of the N indices seeded by the epoch alone,
each index repeated c times in a row, rank r of R taking entries r, r + R, ...,
and each rank keeping the first floor(N // 256 * 256 / R) of them. Step t there
reads entries [t * B, (t + 1) * B) of the repeated list (entry p on rank p % R),
the images of this stream's batch t; with R dividing 256 an epoch is L examples
there as here (the padding RASampler appends never reaches the entries it
keeps). What differs: the row order within a global batch (process i reads a
contiguous block, so an image's copies mostly share a process; a step that
averages over the global batch does not see the order); perm_e (grain's shuffle
with seed + e, not torch's randperm seeded by e); no DataLoader drop_last (a
batch may span two epochs, as without repeated augmentation); for N < 256 an
epoch of N where RASampler's is empty. DeiT's main.py uses RASampler only when
distributed; jameslahm/lsnet: main.py and DaiShiResearch/TransNeXt:
classification/main.py use it on one GPU too. All three default to it on, with
c = 3.

Multi-scale batches (`data.multi_scale`, ml-cvnets' variable-batch sampler;
`mixtok.data.multi_scale`): step t draws a size s_t and a global batch b_t from
a generator seeded by (seed, t // 1024), the same on every process, and holds
positions [start_t, start_t + b_t) of the same global stream (start_t the sum
of the earlier b), each cropped to s_t with its position's key (so with the
crop and flip the single-size stream at s_t gives it); process i reads rows
[i * b_t / P, (i + 1) * b_t / P). The iterator is a grain dataset of steps
(`MultiScaleSteps`), so its state is {"next_index": steps read} and resumption
is exact; `read_threads` threads build a step's examples and one more thread
prefetches up to two steps. Worker processes are refused with it.

With worker_count = n > 0, worker w batches positions w, w + n, ... of the
process's stream, so (with or without repeated augmentation) batches differ
from worker_count = 0 and an image's copies spread over n consecutive batches.

Checkpointing: the train iterator is a `grain.DatasetIterator`; `get_state()`
returns a JSON-able dict and `set_state(state)` resumes with exactly the batch
that would have come next. With orbax (grain 0.2.18 registers the handler):

    mngr.save(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(train_it)))
    mngr.restore(step, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(train_it)))

(`grain.python.PyGrainCheckpointSave/Restore` are the same classes.) Each
process writes its own `process_<i>-of-<n>.json` inside the item folder. A
state restores into an iterator made with the same config, seed,
global_batch_size, shard_count and worker_count (with workers the state holds
one entry per worker). The state counts the examples this process has read, so
after step s (and no skipped images) it is s * B / P on every process.

Evaluation: one ordered pass; process i gets a contiguous block of the eval
split, padded with masked-out zero images so that all processes see the same
number of batches (no process waits in a collective on another). Iterating
the returned object again starts a fresh, identical pass.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import sys
import threading
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from mixtok.data import batching, decode, multi_scale, sources
from mixtok.data.options import DataOptions, data_options
from mixtok.data.transforms import EvalTransform, TrainTransform
from mixtok.data.video_transforms import VideoEvalTransform, VideoTrainTransform

_PREFETCH_BUFFER = 256


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and trainer need to know about the data.

    `mean` and `std` are the per-channel normalisation of the images the model sees,
    `(pixels / 255 - mean) / std`; whatever turns model outputs back into pixels (a tokenizer's
    eval, `python -m mixtok.tokenize`) reads them from here. The trainer saves this record with
    each checkpoint, so a run can be loaded without its data.
    """

    num_classes: int
    num_train: int  # size of the whole train split, all processes together
    num_eval: int  # size of the whole eval split
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_frames: int = 1  # T of the clips [B, T, S, S, 3] of a video source; 1 for images


def dataset_info(data_config: Any) -> DatasetInfo:
    """Sizes and class count of the data described by `data_config`."""
    options = data_options(data_config)
    train_source = sources.create_source(options, options.train_split)
    return DatasetInfo(
        num_classes=sources.num_classes(options, train_source),
        num_train=len(train_source),
        num_eval=len(sources.create_source(options, options.eval_split)),
        image_size=options.image_size,
        mean=options.mean,
        std=options.std,
        num_frames=options.num_frames or 1,
    )


def _shard_and_batch(global_batch_size: int, shard_index: int | None, shard_count: int | None) -> tuple[int, int, int]:
    """Returns (shard_index, shard_count, per-process batch size), checked."""
    if shard_index is None or shard_count is None:
        import jax  # pylint: disable=g-import-not-at-top

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    if not isinstance(shard_count, int) or shard_count < 1:
        raise ValueError(f"shard_count must be a positive int, got {shard_count!r}.")
    if not isinstance(shard_index, int) or not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index must be in [0, {shard_count}), got {shard_index!r}.")
    if isinstance(global_batch_size, bool) or not isinstance(global_batch_size, int) or global_batch_size < 1:
        raise ValueError(f"global_batch_size must be a positive int, got {global_batch_size!r}.")
    if global_batch_size % shard_count:
        nearest = shard_count * max(1, round(global_batch_size / shard_count))
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by "
            f"shard_count={shard_count} (the number of processes); use a multiple "
            f"of {shard_count}, e.g. {nearest}."
        )
    return shard_index, shard_count, global_batch_size // shard_count


def _read_options(options: DataOptions) -> grain.ReadOptions:
    return grain.ReadOptions(
        num_threads=options.read_threads, prefetch_buffer_size=_PREFETCH_BUFFER if options.read_threads else 0
    )


def _multiprocess(ds: grain.IterDataset, worker_count: int) -> grain.IterDataset:
    if isinstance(worker_count, bool) or not isinstance(worker_count, int) or worker_count < 0:
        raise ValueError(f"worker_count must be a non-negative int, got {worker_count!r}.")
    if worker_count == 0:
        return ds
    from absl import flags  # pylint: disable=g-import-not-at-top

    if not flags.FLAGS.is_parsed():
        # grain's worker start-up reads its absl flags, which only absl.app.run
        # parses; outside it (tests, notebooks, other launchers) use the defaults.
        flags.FLAGS.mark_as_parsed()
    return ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count), worker_init_fn=init_worker)


def init_worker(worker_index: int, worker_count: int) -> None:
    """Start-up of each grain worker process: `mixtok.host_memory.retain()`, as the trainer does in its own.

    grain starts its workers with `spawn`, so they do not inherit the parent's malloc settings. The
    transforms' per-image blocks above glibc's mmap threshold (a decoded photo, the float32 image) are
    otherwise mapped and page-faulted anew for every image. MIXTOK_RETAIN_HOST_MEMORY=0 turns it off.
    """
    del worker_index, worker_count
    from mixtok import host_memory  # pylint: disable=g-import-not-at-top

    host_memory.retain()


def create_train_iterator(
    data_config: Any,
    *,
    global_batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
) -> batching.ReportSkippedIterator:
    """An endless, shuffled, augmented, checkpointable iterator of train batches.

    Args:
      data_config: the `config.data` ConfigDict (see `mixtok.data.options`).
      global_batch_size: examples per step over all processes.
      seed: shuffle and augmentation seed, in [0, 2**32).
      shard_index, shard_count: this process and the number of processes;
        default `jax.process_index()` / `jax.process_count()`.
      worker_count: grain worker processes (0 reads in this process).

    Returns:
      a `grain.DatasetIterator` of {'image': float32 [b, S, S, 3], 'label':
      int32 [b]}, b = global_batch_size // shard_count, with `get_state` /
      `set_state` and a `num_skipped_undecodable` count. A video source gives
      clips [b, T, S, S, 3]; with `data.image_ratio` > 0 some steps are images
      as T = 1 clips (`mixtok.data.mixing`).
    """
    options = data_options(data_config)
    shard_index, shard_count, batch_size = _shard_and_batch(global_batch_size, shard_index, shard_count)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}.")
    if options.image_ratio > 0:
        from mixtok.data import mixing  # pylint: disable=g-import-not-at-top

        image_batch = options.image_batch_size or global_batch_size
        _, _, image_rows = _shard_and_batch(image_batch, shard_index, shard_count)
        videos = _train_batches(options, batch_size, seed, shard_index, shard_count, worker_count)
        images = _train_batches(options.image_source, image_rows, seed, shard_index, shard_count, worker_count)
        return mixing.ImageVideoSteps(videos, images, options.image_ratio)
    return _train_batches(options, batch_size, seed, shard_index, shard_count, worker_count)


def _train_batches(
    options: DataOptions, batch_size: int, seed: int, shard_index: int, shard_count: int, worker_count: int
) -> batching.ReportSkippedIterator:
    """The train iterator of one source: `batch_size` rows of each global batch for process `shard_index`."""
    global_batch_size = batch_size * shard_count
    source = sources.create_source(options, options.train_split)
    if len(source) == 0:
        raise ValueError(f"The {options.train_split!r} split has no examples.")
    ds = grain.MapDataset.source(source).shuffle(seed=int(seed)).repeat()
    if options.repeated_aug > 1:
        ds = RepeatedAugmentation(ds, copies=options.repeated_aug, num_examples=len(source))
    if options.multi_scale is not None:
        return _multi_scale_iterator(ds, options, global_batch_size, seed, shard_index, shard_count, worker_count)
    # random_map keys each example by its index in this global stream, so every
    # process count gives an example the same crop and flip.
    transform = VideoTrainTransform(options) if options.num_frames is not None else TrainTransform(options)
    ds = ds.random_map(transform, seed=augment_seed(seed))
    ds = ProcessRows(ds, rows=batch_size, index=shard_index, count=shard_count)
    batches = batching.SkipUndecodableBatchDataset(ds.to_iter_dataset(_read_options(options)), batch_size)
    batches = _multiprocess(batches, worker_count)
    return batching.ReportSkippedIterator(batches.__iter__())


def multi_scale_batches(data_config: Any, global_batch_size: int) -> tuple[tuple[int, int], ...] | None:
    """The (image size, global batch) pairs of a `data.multi_scale` stream at `global_batch_size`; None when off."""
    options = data_options(data_config)
    if options.multi_scale is None:
        return None
    return multi_scale.scale_batches(options.multi_scale, options.image_size, global_batch_size)


def _multi_scale_iterator(
    stream: grain.MapDataset,
    options: DataOptions,
    global_batch_size: int,
    seed: int,
    shard_index: int,
    shard_count: int,
    worker_count: int,
) -> batching.ReportSkippedIterator:
    """The train iterator of `data.multi_scale`: a grain dataset of steps over the one global `stream`."""
    if worker_count:
        raise ValueError(
            f"data.multi_scale reads its batches in threads (data.read_threads); worker_count={worker_count} "
            "worker processes are not supported with it: use worker_count=0."
        )
    multi = options.multi_scale
    if multi.batch_multiple % shard_count:
        raise ValueError(
            f"data.multi_scale.batch_multiple={multi.batch_multiple} must be a multiple of the process count "
            f"{shard_count}, so that every process reads an equal share of every step's batch."
        )
    schedule = multi_scale.ScaleSchedule(multi_scale.scale_batches(multi, options.image_size, global_batch_size), seed)
    # One stream per size, each keyed by stream position as the single-size stream is: an example's crop box
    # and flip are the same whatever size its step draws.
    streams = {
        size: stream.random_map(TrainTransform(dataclasses.replace(options, image_size=size)), seed=augment_seed(seed))
        for size, _ in schedule.pairs
    }
    steps = MultiScaleSteps(streams, schedule, index=shard_index, count=shard_count, threads=options.read_threads)
    # One thread prefetches the next steps, each built by `read_threads` threads (at most two steps in memory).
    threaded = bool(options.read_threads)
    read = grain.ReadOptions(num_threads=1 if threaded else 0, prefetch_buffer_size=2 if threaded else 0)
    return batching.ReportSkippedIterator(steps.to_iter_dataset(read).__iter__())


class MultiScaleSteps(grain.MapDataset):
    """Step t -> this process's rows of global batch t of the multi-scale stream (`mixtok.data.multi_scale`).

    Step t (size s, global batch b, first position p from `schedule`) is process `index` of `count`'s rows
    [index * b / count, (index + 1) * b / count) of stream positions [p, p + b), cropped to s by
    `streams[s]`. Undecodable images (with data.skip_undecodable) are replaced by the positions that follow
    this process's rows, in order, as the single-size stream fills its batches. A grain iterator over it
    counts steps, so its state is the step index and a restored iterator resumes at exactly the next step.
    """

    def __init__(self, streams: dict[int, grain.MapDataset], schedule, *, index: int, count: int, threads: int = 0):
        super().__init__(list(streams.values()))
        self._streams, self._schedule = streams, schedule
        self._index, self._count, self._threads = index, count, threads
        self._pool = None
        self._pool_lock = threading.Lock()

    def __len__(self) -> int:
        return sys.maxsize

    def rows(self, step: int) -> tuple[int, range]:
        """(image size, the stream positions of this process's rows) of `step`."""
        size, batch, start = self._schedule.step(step)
        per_process = batch // self._count
        first = start + self._index * per_process
        return size, range(first, first + per_process)

    def _map(self, fn, positions):
        if not self._threads:
            return [fn(p) for p in positions]
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix="multi_scale")
        return list(self._pool.map(fn, positions))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        size, positions = self.rows(index)
        stream = self._streams[size]
        examples = self._map(stream.__getitem__, positions)
        images, labels, skipped = [], [], []
        next_position = positions.stop
        for example in examples:  # grows by one replacement per undecodable image
            if decode.is_undecodable(example):
                skipped.append(example[decode.UNDECODABLE_KEY])
                examples.append(stream[next_position])
                next_position += 1
                continue
            images.append(example["image"])
            labels.append(example["label"])
        return {"image": np.stack(images), "label": np.asarray(labels, np.int32), batching.SKIPPED_KEY: tuple(skipped)}

    def __str__(self) -> str:
        return f"MultiScaleSteps(pairs={self._schedule.pairs}, index={self._index}, count={self._count})"


def augment_seed(seed: int) -> int:
    """The seed of the train stream's `random_map`: the generator of stream position t is grain's for index t."""
    return int(np.random.SeedSequence([int(seed), 0]).generate_state(1)[0])


def repeated_aug_epoch_length(num_examples: int) -> int:
    """Stream positions per epoch under repeated augmentation: RASampler's N // 256 * 256, or N when N < 256.

    RASampler (facebookresearch/deit: samplers.py) keeps `len(dataset) // 256 * 256 / num_replicas` indices per
    rank, that many per epoch in all for any replica count dividing 256; below 256 images it would keep none.
    """
    return num_examples // 256 * 256 if num_examples >= 256 else num_examples


class RepeatedAugmentation(grain.MapDataset):
    """DeiT's repeated augmentation on a shuffled, repeated stream `parent` of epochs of `num_examples`.

    Position k is parent position e * num_examples + (k % L) // copies, e = k // L, L the epoch length
    (`repeated_aug_epoch_length`): epoch e's first ceil(L / copies) images of the parent's epoch e, each
    `copies` times in a row. A `random_map` after it keys each copy by its own position.
    """

    def __init__(self, parent: grain.MapDataset, *, copies: int, num_examples: int):
        super().__init__(parent)
        self._copies, self._num_examples = copies, num_examples
        self._epoch_length = repeated_aug_epoch_length(num_examples)

    def __len__(self) -> int:
        return len(self._parent)

    def parent_index(self, index: int) -> int:
        epoch, position = divmod(int(index), self._epoch_length)
        return epoch * self._num_examples + position // self._copies

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.parent_index(index)]

    def __str__(self) -> str:
        return f"RepeatedAugmentation(copies={self._copies}, epoch_length={self._epoch_length})"


class ProcessRows(grain.MapDataset):
    """Process `index` of `count`'s rows of each global batch of `rows * count` examples of `parent`.

    Local example m is global example (m // rows * count + index) * rows + m % rows, so batching the
    local stream by `rows` gives, at every step, this process's block of the same global batch.
    """

    def __init__(self, parent: grain.MapDataset, *, rows: int, index: int, count: int):
        super().__init__(parent)
        self._rows, self._index, self._count = rows, index, count

    def __len__(self) -> int:
        return len(self._parent) // self._count

    def global_index(self, local: int) -> int:
        batch, row = divmod(int(local), self._rows)
        return (batch * self._count + self._index) * self._rows + row

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.global_index(index)]

    def __str__(self) -> str:
        return f"ProcessRows(rows={self._rows}, index={self._index}, count={self._count})"


class _PaddedShard:
    """Examples [start, stop) of a source, then padding markers up to `length`."""

    def __init__(self, source, start: int, stop: int, length: int):
        self._source, self._start, self._stop = source, start, stop
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, Any]:
        position = self._start + int(index)
        if position < self._stop:
            return self._source[position]
        return {"padding": True}


class _EvalExample(grain.transforms.Map):
    """Eval transform for real examples; a masked zero image for padding."""

    def __init__(self, options: DataOptions):
        self._transform = VideoEvalTransform(options) if options.num_frames is not None else EvalTransform(options)
        self._shape = (options.image_size, options.sequence_length, options.num_frames)

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        if element.get("padding"):
            return batching.eval_example({}, *self._shape)
        return batching.eval_example(self._transform.map(element), *self._shape)


class EvalBatches:
    """A re-iterable single pass over this process's shard of the eval split.

    `len()` is the number of batches, equal on every process. Undecodable
    images (with data.skip_undecodable) appear as masked-out zero images and
    are counted in `num_skipped_undecodable`.
    """

    def __init__(
        self,
        dataset: grain.MapDataset,
        num_batches: int,
        num_examples: int,
        options: DataOptions,
        worker_count: int,
        as_clips: bool = False,
    ):
        self._dataset = dataset
        self._as_clips = as_clips  # images as T = 1 clips (the image part of a joint image-video config)
        self._num_batches = num_batches
        self.num_examples = num_examples  # real (unmasked) examples in this shard
        self._options = options
        self._worker_count = worker_count
        self.num_skipped_undecodable = 0

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        ds = _multiprocess(self._dataset.to_iter_dataset(_read_options(self._options)), self._worker_count)
        iterator = ds.__iter__()
        try:
            for batch in iterator:
                batch = dict(batch)
                skipped = batch.pop(batching.SKIPPED_KEY, ())
                if skipped:
                    self.num_skipped_undecodable += decode.report_skipped(skipped)
                if self._as_clips:
                    batch["image"] = batch["image"][:, None]
                yield batch
        finally:
            iterator.close()


def create_eval_iterator(
    data_config: Any,
    *,
    global_batch_size: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    worker_count: int = 0,
    part: str = "main",
) -> EvalBatches:
    """One ordered, padded pass over the eval split; each example once overall.

    `part="image"` reads the eval split of a joint image-video config's `data.image_source` instead, its
    images as T = 1 clips [b, 1, S, S, 3]; the default is the config's own source (the clips of a video one).

    Returns:
      an `EvalBatches` iterable of {'image': float32 [b, S, S, 3] (a video
      source: [b, T, S, S, 3]), 'label': int32 [b], 'mask': float32 [b]},
      b = global_batch_size // shard_count, with mask 0 on padding; every
      process gets `len()` batches.
    """
    options = data_options(data_config)
    if part not in ("main", "image"):
        raise ValueError(f"part must be 'main' or 'image', got {part!r}.")
    as_clips = part == "image"
    if as_clips:
        if options.image_source is None:
            raise ValueError(f"part='image' needs data.image_source; data.name={options.name!r} has none.")
        options = options.image_source
    shard_index, shard_count, batch_size = _shard_and_batch(global_batch_size, shard_index, shard_count)
    source = sources.create_source(options, options.eval_split)
    total = len(source)
    start = total * shard_index // shard_count
    stop = total * (shard_index + 1) // shard_count
    largest_shard = math.ceil(total / shard_count)
    num_batches = max(1, math.ceil(largest_shard / batch_size))
    padded = _PaddedShard(source, start, stop, num_batches * batch_size)
    ds = grain.MapDataset.source(padded).map(_EvalExample(options))
    ds = ds.batch(batch_size, batch_fn=batching.stack_eval_batch)
    return EvalBatches(ds, num_batches, stop - start, options, worker_count, as_clips)
