"""The trainer: one loop for every task, jit-compiled steps with explicit shardings.

    train_and_evaluate(config, workdir)

It builds the mesh, the data iterators and the task (`mixtok.train.tasks`), which builds the model
from `config.model` (`create_model(config.model.name, **config.model.kwargs)` for classification,
`create_tokenizer(...)` for tokenizers), creates the train state already sharded, resumes from
the latest checkpoint in `workdir` if there is one, and then trains to `config.total_steps`,
logging to `workdir/metrics.jsonl` and TensorBoard, evaluating every `eval_every` steps and
checkpointing every `checkpoint_every` steps, on SIGTERM, and at the end.

Runs are exactly reproducible: the step's random key is `fold_in(seed key, step)`, the data
iterator's position is checkpointed, and nothing else carries state, so a run that is
interrupted and resumed ends with the same parameters and metrics as one that never stopped.
"""

import logging
import signal
import time
from pathlib import Path
from typing import Any, Dict, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict
from tqdm import tqdm

from mixtok import data as data_lib
from mixtok.parallel import batch_sharding, create_mesh, logical_shardings, replicated, rules_from_config
from mixtok.train.checkpointing import Checkpointer, check_same_model
from mixtok.train.config import validate_config
from mixtok.train.metric_writer import MetricWriter
from mixtok.train.optimizer import create_optimizer
from mixtok.train.tasks import get_task

log = logging.getLogger(__name__)


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    other_variables: Any  # model collections that are not trained (e.g. `frozen`)


class NonFiniteLossError(FloatingPointError):
    pass


class _StopSignal:
    """Turns SIGTERM (preemption) into a flag the loop checks after each step."""

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


def _put_batch(batch: Dict[str, np.ndarray], sharding) -> Dict[str, jax.Array]:
    """Assembles the global batch from each process's local shard."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def _first_nonfinite(history) -> Optional[tuple]:
    for step, metrics in history:
        for key in ("loss", "grad_norm"):
            value = float(metrics[key])
            if not np.isfinite(value):
                return step, key, value
    return None


def train_and_evaluate(config: ConfigDict, workdir: str, *, stop_at_step: Optional[int] = None) -> Dict[str, float]:
    """Trains `config` in `workdir` (resuming if it holds checkpoints); returns the last metrics.

    `stop_at_step` stops early as a preemption would (a checkpoint is saved); tests use it.
    """
    validate_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rules = rules_from_config(config.get("sharding_rules", None))
    mesh = create_mesh(config.get("mesh", None))
    batch_shard = batch_sharding(mesh, rules)
    repl = replicated(mesh)

    info = data_lib.dataset_info(config.data)
    task = get_task(config.get("task", "classification")).from_config(config, info)
    tx, schedule = task.create_optimizer(config) if hasattr(task, "create_optimizer") else \
        create_optimizer(config.optimizer, config.total_steps)

    def init_state(rng):
        variables = task.init(rng, task.dummy_batch(info.image_size))
        variables = dict(variables)
        params = variables.pop("params")
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                          other_variables=variables)

    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    abstract_boxed = jax.eval_shape(init_state, init_rng)
    state_shardings = logical_shardings(abstract_boxed, mesh, rules)
    abstract_state = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.meta.unbox(abstract_boxed),
        state_shardings)

    def train_step(state: TrainState, batch, base_rng):
        rng = jax.random.fold_in(base_rng, state.step)
        grad_fn = jax.value_and_grad(task.train_loss, has_aux=True)
        (loss, (aux, updated_variables)), grads = grad_fn(state.params, state.other_variables, batch, rng,
                                                          state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step),
                   **aux}
        other_variables = {**state.other_variables, **updated_variables}  # e.g. BatchNorm running statistics
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                             other_variables=other_variables), metrics

    train_step = jax.jit(train_step, in_shardings=(state_shardings, batch_shard, repl),
                         out_shardings=(state_shardings, repl), donate_argnums=(0,))
    eval_step = jax.jit(task.eval_sums, in_shardings=(state_shardings.params, state_shardings.other_variables,
                                                      batch_shard), out_shardings=repl)

    eval_images_step = None
    if hasattr(task, "eval_images"):
        eval_images_step = jax.jit(task.eval_images, in_shardings=(state_shardings.params,
                                                                   state_shardings.other_variables, batch_shard),
                                   out_shardings=repl)

    train_iter = data_lib.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    checkpointer = Checkpointer(workdir / "checkpoints", keep=config.get("keep_checkpoints", 3),
                                save_every=config.get("checkpoint_every", 1000),
                                async_save=config.get("async_checkpointing", True))
    start = checkpointer.latest_step()
    if start is not None:
        check_same_model(checkpointer.restore_config(start), config, checkpointer.directory)
        state = checkpointer.restore(start, abstract_state, train_iter)
        log.info("Resumed from %s at step %d.", checkpointer.directory, start)
    else:
        start = 0
        state = jax.jit(lambda rng: nn.meta.unbox(init_state(rng)), out_shardings=state_shardings)(init_rng)

    def evaluate(state):
        eval_iter = data_lib.create_eval_iterator(config.data,
                                                  global_batch_size=config.get("eval_batch_size", config.batch_size))
        sums = None
        for batch in eval_iter:
            out = eval_step(state.params, state.other_variables, _put_batch(batch, batch_shard))
            sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
        metrics = task.summarize_eval(jax.device_get(sums))
        if eval_images_step is not None:  # e.g. originals beside reconstructions, from the first eval batch
            batch = _put_batch(next(iter(eval_iter)), batch_shard)
            images = jax.device_get(eval_images_step(state.params, state.other_variables, batch))
            if is_lead:
                task.write_eval_images(images, workdir / "images", int(jax.device_get(state.step)))
        return metrics

    is_lead = jax.process_index() == 0  # one process of a multi-host run writes logs and shows progress
    writer = MetricWriter(workdir, resume_step=start if start else None,
                          tensorboard=config.get("tensorboard", True), enabled=is_lead)
    log_every = config.get("log_every", 50)
    eval_every = config.get("eval_every", 0) or config.total_steps
    total = config.total_steps if stop_at_step is None else min(stop_at_step, config.total_steps)
    history = []  # (step, device metrics) since the last host sync: no per-step device->host wait
    last = {}
    progress = tqdm(total=config.total_steps, initial=start, disable=not (is_lead and config.get("progress_bar", True)),
                    dynamic_ncols=True, desc="train")
    tick, tick_step = time.perf_counter(), start
    step = start
    try:
        with _StopSignal() as stop:
            while step < total:
                batch = _put_batch(next(train_iter), batch_shard)
                state, metrics = train_step(state, batch, train_rng)
                step += 1
                history.append((step, metrics))
                progress.update(1)
                is_log = step % log_every == 0 or step == config.total_steps
                is_eval = step % eval_every == 0 or step == config.total_steps
                # Read the signal flag once: a SIGTERM arriving later in this step is handled at the
                # next one, never between deciding not to save and stopping.
                stopping = stop.received is not None
                is_save = checkpointer.should_save(step) or step == total or stopping
                if is_log or is_eval or is_save:
                    history = jax.device_get(history)
                    bad = _first_nonfinite(history)
                    if bad is not None:
                        raise NonFiniteLossError(
                            f"Training stopped: {bad[1]} is {bad[2]} at step {bad[0]}. The last checkpoint "
                            f"(step {checkpointer.latest_step()}) is untouched; lower the learning rate or "
                            f"enable gradient clipping (optimizer.grad_clip) and resume.")
                    if is_log or is_eval:
                        now = time.perf_counter()
                        record = {f"train/{k}": float(v) for k, v in history[-1][1].items()}
                        record["train/images_per_second"] = (step - tick_step) * config.batch_size / (now - tick)
                        if is_eval:
                            record.update(evaluate(state))
                        # Throughput is wall time: keep it out of the metrics that must reproduce.
                        speed = record.pop("train/images_per_second")
                        writer.write(step, record)
                        last = record
                        shown = {key.split("/")[-1]: f"{record[key]:.4f}" for key in task.PROGRESS_METRICS
                                 if key in record}
                        progress.set_postfix(loss=f"{record['train/loss']:.4f}", img_s=f"{speed:.0f}", **shown)
                        tick, tick_step = time.perf_counter(), step
                    history = []
                    if is_save:
                        checkpointer.save(step, state, train_iter, config, force=True)
                    if stopping:
                        log.warning("Received signal %d: saved a checkpoint at step %d; rerun the same command "
                                    "to resume.", stop.received, step)
                        break
    finally:
        progress.close()
        checkpointer.close()
        writer.close()
    return last
