"""The trainer: one loop for every task, jit-compiled steps with explicit shardings.

    train_and_evaluate(config, workdir)

It builds the mesh, the data iterators and the task (`mixtok.train.tasks`), which builds the model
from `config.model` (`create_model(config.model.name, **config.model.kwargs)` for classification,
`create_tokenizer(...)` for tokenizers), creates the train state already sharded, resumes from
the latest checkpoint in `workdir` if there is one, and then trains to `config.total_steps`,
logging to `workdir/metrics.jsonl` and TensorBoard, evaluating every `eval_every` steps and
checkpointing every `checkpoint_every` steps, on SIGTERM, and at the end. With `config.model_ema`
the state also holds a moving average of the parameters (with `model_ema.buffers`, of the
`batch_stats` too; timm's ModelEmaV3, `mixtok.train.ema`),
checkpointed with it and, with `model_ema.eval` (the default), evaluated beside the raw model
(`eval_ema/...` beside `eval/...`).

Nothing lost, nothing silent: the workdir is checked, created and locked first (one trainer per
workdir, `mixtok.train.workdir`); a run stopped by SIGTERM saves a checkpoint and raises
`Preempted(step)`, never returning as if it had finished; a NaN or infinite loss raises
`NonFiniteLossError` naming the step, the likely causes and the last checkpoint; a metrics write
that fails (a full disk) raises `MetricsWriteError` and keeps the metrics written before it.

With `config.data.multi_scale` (ml-cvnets' variable-batch sampler, `mixtok.data.multi_scale`) the steps
have a few batch shapes: the jitted train step traces once for each, every global batch must split over
the batch axis's devices (checked at start-up), and the progress bar's img_s counts each step's images.

With `config.grad_accum_steps` k > 1 a step reads k micro-batches from the train iterator and makes one
optimizer update with their mean gradient (`steps.make_train_step`); steps, schedules, EMA updates,
evaluations and checkpoints all count updates, and the iterator's checkpointed position counts batches.

With several processes (`jax.distributed`), a SIGTERM to any of them stops all of them at one step,
agreed through JAX's preemption sync point (`_stop_signal`; docs/reliability.md): every process saves
its part of the same checkpoint and raises `Preempted` with the same step.

The pieces it composes (`mixtok.train.steps`: the train state, the jitted train and eval steps)
are importable, so a notebook can run the same steps by hand and get the same numbers.

Runs are exactly reproducible: the step's random key is `fold_in(seed key, step)`, the data
iterator's position is checkpointed, and nothing else carries state, so a run that is
interrupted and resumed ends with the same parameters and metrics as one that never stopped.
"""

import logging
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from ml_collections import ConfigDict
from tqdm import tqdm

from mixtok import data as data_lib
from mixtok.parallel import (
    DEFAULT_SHARDING_TOLERANCE,
    batch_sharding,
    check_sufficiently_sharded,
    create_mesh,
    rules_from_config,
)
from mixtok.train import steps
from mixtok.train.checkpointing import create_checkpointer
from mixtok.train.config import validate_config
from mixtok.train.ema import model_ema_from_config
from mixtok.train.metric_writer import MetricWriter
from mixtok.train.steps import TrainState
from mixtok.train.tasks import DEFAULT_TASK, get_task
from mixtok.train.workdir import Workdir, open_workdir

__all__ = ["NonFiniteLossError", "Preempted", "TrainState", "train_and_evaluate"]

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss or the gradient norm became NaN or infinite."""


class Preempted(Exception):
    """The run was stopped by a signal (SIGTERM: preemption) after saving a checkpoint at `step`.

    Raised rather than returned, so that a stopped run is never taken for a finished one; running
    the same command (or call) again resumes from that checkpoint.
    """

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum
        super().__init__(f"preempted at step {step}; rerun the same command to resume")


class _StopSignal:
    """Turns SIGTERM (preemption) into a flag the loop checks after each step (one process)."""

    def __init__(self):
        self.received = None
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.received = signum

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def stopping(self, step: int) -> bool:
        """Whether to save and stop after `step`; called once per step by every process (host-side only)."""
        return self.received is not None

    def stop_agreed(self) -> bool:
        """A second chance to stop, called by every process at the steps where the loop has just read the
        metrics (the same steps everywhere, after that step finished), unless `stopping` said yes."""
        return False


class _GatheredStopSignal(_StopSignal):
    """Several processes without JAX's preemption service (`jax_enable_preemption_service=False`, or no
    `jax.distributed` client): the processes all-gather their SIGTERM flags at the steps where the loop reads
    the metrics anyway (log, eval and checkpoint steps) and all stop there if any process got one."""

    def stopping(self, step: int) -> bool:
        return False

    def stop_agreed(self) -> bool:
        self.received = _max_over_processes(self.received or 0) or None
        return self.received is not None


# The coordination-service key under which JAX's preemption sync manager posts a SIGTERM notice (openxla/xla:
# xla/tsl/distributed_runtime/preemption/preemption_sync_manager.cc, kPreemptionNoticeKey).
_PREEMPTION_NOTICE_KEY = "RECEIVED_PREEMPTION_NOTICE"


class _PreemptionSyncPoint:
    """Several processes with JAX's preemption service: after SIGTERM on any process, all stop at one step.

    `jax.distributed.initialize` starts a preemption sync manager whose C++ notifier catches SIGTERM
    (openxla/xla: xla/tsl/distributed_runtime/preemption/preemption_notifier.cc, `std::signal`). The notice
    reaches every process through the coordination service, which agrees on the largest step any process
    has reported plus one (jax/experimental/multihost_utils.py, `reached_preemption_sync_point`: all hosts
    call it at every step, from the same start step). The call reads a host-side counter: no device sync.
    No Python SIGTERM handler is installed: it would replace JAX's notifier.

    A safety net, at the steps where the loop reads the metrics anyway: the processes all-gather whether
    the notice was posted, and all stop there if so. It catches the notices the sync point misses: one
    handled before the first step of a resumed run (the agreed step, from counters still 0, is then long
    past) or while orbax's save-finalize thread had put the counter back to the saved step (orbax's
    `CheckpointManager` calls `reached_preemption_sync_point(saved step)` from that thread too).
    """

    received = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def stopping(self, step: int) -> bool:
        if multihost_utils.reached_preemption_sync_point(step):
            self.received = signal.SIGTERM  # JAX's notifier listens for SIGTERM only
        return self.received is not None

    def stop_agreed(self) -> bool:
        if _max_over_processes(_notice()):
            self.received = signal.SIGTERM
        return self.received is not None


def _notice() -> int:
    """1 if JAX's preemption notice has been posted in the coordination service, else 0."""
    try:
        _distributed_state().client.key_value_try_get(_PREEMPTION_NOTICE_KEY)
    except Exception:  # NOT_FOUND: no notice (or a JAX that keeps it elsewhere)
        return 0
    return 1


def _max_over_processes(value: int) -> int:
    """The largest of every process's `value` (a collective: every process must call it at the same step)."""
    return int(np.max(multihost_utils.process_allgather(np.int32(value))))


def _distributed_state():
    from jax._src import distributed  # where JAX keeps the distributed client and the preemption sync manager

    return distributed.global_state


def _stop_signal() -> _StopSignal | _PreemptionSyncPoint:
    """How the loop learns that it must save and stop: alone (one process), or agreed by every process."""
    if jax.process_count() == 1:
        return _StopSignal()
    state = _distributed_state()
    if getattr(state, "client", None) is not None and getattr(state, "preemption_sync_manager", None) is not None:
        return _PreemptionSyncPoint()
    return _GatheredStopSignal()


def _nonfinite_message(bad: tuple, config: ConfigDict, last_checkpoint: int | None) -> str:
    """Names the step and value, the likely causes that apply to this config, and what to resume from."""
    step, key, value = bad
    optimizer = config.optimizer
    clip = optimizer.get("grad_clip", None)
    clipped = {"agc": f"adaptively clipped with factor {clip}", "value": f"clipped to +-{clip} each"}.get(
        optimizer.get("clip_mode", "norm"), f"clipped to global norm {clip}"
    )
    causes = [
        "the data (NaN or inf in the inputs)",
        f"the learning rate (optimizer.lr={optimizer.get('lr', '?')}; lower it)",
        f"the gradients ({clipped}; lower the clip or the learning rate)"
        if clip
        else "the gradients (clipping is off: enable optimizer.grad_clip, e.g. 1.0)",
    ]
    if last_checkpoint is None:
        after = "No checkpoint was saved before it: fix the cause and start again."
    else:
        after = (
            f"The last checkpoint (step {last_checkpoint}) is untouched: fix the cause and rerun to resume from it "
            "(a changed optimizer or data setting also needs --config.resume_mismatch=allow)."
        )
    return f"Training stopped: {key} is {value} at step {step}. Likely causes: {'; '.join(causes)}. {after}"


def _first_nonfinite(history) -> tuple | None:
    for step, metrics in history:
        for key in ("loss", "grad_norm"):
            value = float(metrics[key])
            if not np.isfinite(value):
                return step, key, value
    return None


def _check_multi_scale_batches(config: ConfigDict, sharding) -> None:
    """With data.multi_scale, every step's global batch must split evenly over the devices of the batch axis."""
    pairs = data_lib.multi_scale_batches(config.data, config.batch_size)
    if pairs is None:
        return
    axes = sharding.spec[0] if sharding.spec else None
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    devices = int(np.prod([sharding.mesh.shape[a] for a in axes]))
    bad = {size: batch for size, batch in pairs if batch % devices}
    if bad:
        raise ValueError(
            f"data.multi_scale gives global batches {dict(pairs)} (size: batch), and those at {bad} do not split "
            f"over the {devices} devices of the batch axis; use a data.multi_scale.batch_multiple that is a "
            f"multiple of {devices}."
        )


def train_and_evaluate(config: ConfigDict, workdir: str, *, stop_at_step: int | None = None) -> dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last metrics.

    `stop_at_step` stops early as a preemption would (a checkpoint is saved) and returns; tests use
    it. SIGTERM saves a checkpoint and raises `Preempted`. A workdir that is a file, not writable or
    locked by another trainer raises a `WorkdirError` (a ValueError) before anything is written.
    """
    validate_config(config)
    with open_workdir(workdir, jax.process_index(), jax.process_count()) as run_dir:
        return _train(config, run_dir, stop_at_step)


def _train(config: ConfigDict, run_dir: Workdir, stop_at_step: int | None) -> dict[str, float]:
    workdir = run_dir.path
    rules = rules_from_config(config.get("sharding_rules", None))
    mesh = create_mesh(config.get("mesh", None))
    batch_shard = batch_sharding(mesh, rules)
    is_lead = jax.process_index() == 0  # one process of a multi-host run writes logs and shows progress

    info = data_lib.dataset_info(config.data)
    task = get_task(config.get("task", DEFAULT_TASK)).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    ema = model_ema_from_config(config)  # None: no EMA, and the state is what it was without it
    layout = steps.abstract_train_state(task, tx, info.image_size, mesh, rules, ema)
    init_rng, step_rng = steps.seed_rngs(config.seed)
    check_sufficiently_sharded(
        layout.params, mesh, config.get("sharding_tolerance", DEFAULT_SHARDING_TOLERANCE)
    )  # before anything is allocated
    accum_steps = config.get("grad_accum_steps", 1)
    train_step = steps.make_train_step(task, tx, schedule, layout, batch_shard, rules, ema, accum_steps)
    eval_step = steps.make_eval_step(task, layout, batch_shard, rules)
    eval_images_step = steps.make_eval_images_step(task, layout, batch_shard, rules)

    train_iter = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    _check_multi_scale_batches(config, batch_shard)
    checkpointer = create_checkpointer(config, workdir)
    # The newest good checkpoint (verified, same run, finite), bad ones moved aside (checkpointing.py).
    try:
        resumed = checkpointer.restore_latest(layout, train_iter, config)
    except BaseException:
        checkpointer.close()
        raise
    if resumed is not None:
        start, state = resumed
    else:
        start = 0
        state = steps.create_train_state(task, tx, init_rng, info.image_size, layout, ema)

    def run_eval(state: TrainState) -> dict[str, float]:
        eval_batches = data_lib.create_eval_iterator(
            config.data, global_batch_size=config.get("eval_batch_size", config.batch_size)
        )
        metrics, images = steps.evaluate(task, eval_step, eval_images_step, state, eval_batches, batch_shard)
        if images and is_lead:  # e.g. originals beside reconstructions, from the first eval batch
            task.write_eval_images(images, workdir / "images", int(jax.device_get(state.step)))
        if is_lead:  # what the task found (DiffRate's schedule); nothing for most tasks
            task.write_results(state.params, workdir, int(jax.device_get(state.step)))
        if ema is not None and ema.eval:  # the same eval set, on the EMA parameters: `eval_ema/...`
            eval_batches = data_lib.create_eval_iterator(
                config.data, global_batch_size=config.get("eval_batch_size", config.batch_size)
            )
            ema_metrics, _ = steps.evaluate(task, eval_step, None, state, eval_batches, batch_shard, use_ema=True)
            metrics.update(ema_metrics)
        return metrics

    writer = MetricWriter(
        workdir, resume_step=start if start else None, tensorboard=config.get("tensorboard", True), enabled=is_lead
    )
    log_every = config.get("log_every", 50)
    eval_every = config.get("eval_every", 0) or config.total_steps
    total = config.total_steps if stop_at_step is None else min(stop_at_step, config.total_steps)
    history = []  # (step, device metrics) since the last host sync: no per-step device->host wait
    last = {}
    progress = tqdm(
        total=config.total_steps,
        initial=start,
        disable=not (is_lead and config.get("progress_bar", True)),
        dynamic_ncols=True,
        desc="train",
    )
    tick, images, tick_images = time.perf_counter(), 0, 0  # images: this run's, counted per step (multi-scale)
    step = start
    preempted = None
    try:
        with _stop_signal() as stop:
            while step < total:
                if accum_steps == 1:
                    batch = steps.put_batch(next(train_iter), batch_shard)
                    images += batch["image"].shape[0]  # the global batch: config.batch_size unless data.multi_scale
                else:  # grad_accum_steps micro-batches, each its own draw of a multi-scale stream
                    batch = [steps.put_batch(next(train_iter), batch_shard) for _ in range(accum_steps)]
                    images += sum(micro["image"].shape[0] for micro in batch)
                state, metrics = train_step(state, batch, step_rng)
                step += 1
                run_dir.started()
                checkpointer.poll()  # a background save that failed stops the run here, not at the next save
                history.append((step, metrics))
                progress.update(1)
                is_log = step % log_every == 0 or step == config.total_steps
                is_eval = step % eval_every == 0 or step == config.total_steps
                # Read the signal flag once: a SIGTERM arriving later in this step is handled at the
                # next one, never between deciding not to save and stopping. With several processes,
                # every process gets the same answer at the same step (see _stop_signal).
                stopping = stop.stopping(step)
                is_save = checkpointer.should_save(step) or step == total or stopping
                if is_log or is_eval or is_save:
                    history = jax.device_get(history)
                    bad = _first_nonfinite(history)
                    if bad is not None:
                        raise NonFiniteLossError(_nonfinite_message(bad, config, checkpointer.latest_step()))
                    if not stopping and stop.stop_agreed():  # several processes: once this step is done everywhere
                        stopping = is_save = True
                    if is_log or is_eval:
                        now = time.perf_counter()
                        record = {f"train/{k}": float(v) for k, v in history[-1][1].items()}
                        record["train/images_per_second"] = (images - tick_images) / (now - tick)
                        if is_eval:
                            record.update(run_eval(state))
                        # Throughput is wall time: keep it out of the metrics that must reproduce.
                        speed = record.pop("train/images_per_second")
                        writer.write(step, record)
                        last = record
                        shown = {
                            key.split("/")[-1]: f"{record[key]:.4f}" for key in task.PROGRESS_METRICS if key in record
                        }
                        progress.set_postfix(loss=f"{record['train/loss']:.4f}", img_s=f"{speed:.0f}", **shown)
                        tick, tick_images = time.perf_counter(), images
                    history = []
                    if is_save:
                        writer.flush()  # gs://: every metrics line up to the checkpoint is uploaded first
                        checkpointer.save(step, state, train_iter, config, info, force=True)
                    if stopping and step < config.total_steps:  # a signal at the last step: finished
                        preempted = Preempted(step, stop.received)
                        break
    finally:
        progress.close()
        checkpointer.close()
        writer.close()
    if preempted is not None:  # raised once the checkpoint is written and the files are closed
        log.info("Received signal %d: saved a checkpoint at step %d.", preempted.signum, preempted.step)
        raise preempted
    return last
