"""The trainer's pieces: the train state, the jitted train and eval steps, and one eval pass.

`train_and_evaluate` composes exactly these, so a notebook that calls them in the same order
gets bit-for-bit the parameters and metrics the trainer gets:

    from mixtok import data
    from mixtok.parallel import batch_sharding, create_mesh, rules_from_config
    from mixtok.train import (abstract_train_state, create_train_state, get_task, make_train_step,
                              put_batch, seed_rngs)

    info = data.dataset_info(config.data)
    task = get_task(config.task).from_config(config, info)
    tx, schedule = task.create_optimizer(config)
    mesh, rules = create_mesh(config.get("mesh")), rules_from_config(config.get("sharding_rules"))
    layout = abstract_train_state(task, tx, info.image_size, mesh, rules)
    init_rng, step_rng = seed_rngs(config.seed)
    state = create_train_state(task, tx, init_rng, info.image_size, layout)
    train_step = make_train_step(task, tx, schedule, layout, batch_sharding(mesh, rules), rules)
    batches = data.create_train_iterator(config.data, global_batch_size=config.batch_size, seed=config.seed)
    state, metrics = train_step(state, put_batch(next(batches), batch_sharding(mesh, rules)), step_rng)

With `config.model_ema`, pass `ema = model_ema_from_config(config)` (mixtok.train.ema) as the last
argument of `abstract_train_state`, `create_train_state` and `make_train_step`: the state is then an
`EmaTrainState` whose `ema_params` the train step updates (with `model_ema.buffers`, an
`EmaBuffersTrainState` that also averages `batch_stats`), and `evaluate(..., use_ema=True)` evaluates
them (`eval_ema/...` metrics; `ema_variables(state)` gives the variables it uses). Without it (None)
nothing differs from a run without EMA.

The state's layout (`abstract_train_state`) is a TrainState of `jax.ShapeDtypeStruct`s whose
`.sharding` says where each array lives; the steps are jitted with those shardings, and the
train step donates the state it is given (use the state it returns). Given `rules`, the steps trace
the model inside `mixtok.parallel.sharding_context(mesh, rules)`, so its activation constraints
(`mixtok.layers.partitioning.constrain`: block outputs, MLP hidden units, attention heads) act.
"""

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mixtok.parallel import logical_shardings, replicated, sharding_context
from mixtok.train.ema import ModelEma, running_stats, with_running_stats
from mixtok.train.tasks import Task


@flax.struct.dataclass
class TrainState:
    """Everything a training step reads and writes; what a checkpoint's `state` item holds."""

    step: jax.Array
    params: Any
    opt_state: Any
    other_variables: Any  # model collections that are not trained (e.g. `frozen`, `batch_stats`)


@flax.struct.dataclass
class EmaTrainState(TrainState):
    """The train state of a run with `config.model_ema`: also the parameters' moving average (mixtok.train.ema).

    A subclass rather than an optional field, so that a run without EMA keeps the state's tree, and
    so its checkpoints' structure, exactly as before (orbax restores by the tree's keys).
    """

    ema_params: Any  # float32, the parameters' logical axes and so their shardings


@flax.struct.dataclass
class EmaBuffersTrainState(EmaTrainState):
    """The train state of a run with `config.model_ema.buffers`: also the moving average of `batch_stats`.

    `ema_batch_stats` is `mixtok.train.ema.running_stats(other_variables)` averaged (float32, sharded as
    the statistics it averages); a subclass again, so that `buffers=False` keeps `EmaTrainState`'s tree.
    """

    ema_batch_stats: Any


def ema_variables(state: TrainState) -> tuple[Any, Any]:
    """(params, other_variables) of the EMA model: `ema_params`, and the raw model's other collections with
    the averaged `batch_stats` in place of the raw ones when the state keeps them (`model_ema.buffers`)."""
    if not isinstance(state, EmaTrainState):
        raise ValueError("The EMA model needs an EmaTrainState (a run with config.model_ema).")
    if isinstance(state, EmaBuffersTrainState):
        return state.ema_params, with_running_stats(state.other_variables, state.ema_batch_stats)
    return state.ema_params, state.other_variables


def seed_rngs(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_rng, step_rng) of a run: step t's key is `fold_in(step_rng, t)`, so a resumed run repeats it."""
    init_rng, step_rng = jax.random.split(jax.random.PRNGKey(seed))
    return init_rng, step_rng


def put_batch(batch: Mapping[str, np.ndarray], sharding) -> dict[str, jax.Array]:
    """Assembles the global batch from each process's local shard (what the data iterators yield)."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def _init_fn(
    task: Task, tx: optax.GradientTransformation, image_size: int, ema: ModelEma | None = None
) -> Callable[[jax.Array], TrainState]:
    """rng -> the step-0 TrainState, its parameters (and their EMA) still boxed with their logical axis names."""

    def init(rng):
        variables = dict(task.init(rng, task.dummy_batch(image_size)))
        params = variables.pop("params")
        step = jnp.zeros((), jnp.int32)
        fields = dict(step=step, params=params, opt_state=tx.init(params), other_variables=variables)
        if ema is None:
            return TrainState(**fields)
        if ema.buffers:
            return EmaBuffersTrainState(
                **fields, ema_params=ema.init(params), ema_batch_stats=ema.init(running_stats(variables))
            )
        return EmaTrainState(**fields, ema_params=ema.init(params))

    return init


def abstract_train_state(
    task: Task, tx: optax.GradientTransformation, image_size: int, mesh, rules, ema: ModelEma | None = None
) -> TrainState:
    """The train state's layout: a `jax.ShapeDtypeStruct` per array, its `.sharding` from the logical axes.

    Nothing is allocated; orbax restores a checkpoint into this layout, and the steps are jitted
    with its shardings. With `ema` (`model_ema_from_config(config)`) it is an `EmaTrainState`,
    whose `ema_params` are float32 with the parameters' logical axes and so their shardings.
    """
    boxed = jax.eval_shape(_init_fn(task, tx, image_size, ema), jax.random.PRNGKey(0))
    shardings = logical_shardings(boxed, mesh, rules)
    return jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.meta.unbox(boxed), shardings
    )


def shardings_of(layout: Any) -> Any:
    """The tree of `.sharding`s of a layout (or of a state's arrays)."""
    return jax.tree_util.tree_map(lambda x: x.sharding, layout)


def create_train_state(
    task: Task,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    image_size: int,
    layout: TrainState,
    ema: ModelEma | None = None,
) -> TrainState:
    """The step-0 train state, each array created already sharded as `layout` says (never gathered)."""
    init = _init_fn(task, tx, image_size, ema)
    return jax.jit(lambda r: nn.meta.unbox(init(r)), out_shardings=shardings_of(layout))(rng)


def _tracing_context(mesh, rules: Sequence | None):
    """The sharding context a step traces in: `rules` and the mesh (None: no activation constraints)."""
    return contextlib.nullcontext() if rules is None else sharding_context(mesh, rules)


def make_train_step(
    task: Task,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    layout: TrainState,
    batch_sharding,
    rules: Sequence | None = None,
    ema: ModelEma | None = None,
    accum_steps: int = 1,
) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """The jitted `(state, batch, step_rng) -> (state + 1 step, metrics)`; it donates `state`.

    Metrics: the loss, the global gradient norm, the learning rate of this step, and the task's own.
    `rules` (the run's sharding rules) turn on the model's activation constraints on the batch's mesh.
    With `ema` (the state is an `EmaTrainState`), `state.ema_params` is updated after the optimizer
    update with the new parameters and the step count after it (timm's
    `model_ema.update(model, step=num_updates)`; mixtok.train.ema), and with `ema.buffers` so is
    `state.ema_batch_stats`, with the `batch_stats` this step wrote and the same weight.

    With `accum_steps` k > 1 (`config.grad_accum_steps`, the official codes' `--update_freq`) the step
    takes a sequence of k micro-batches, `(state, [batch_1, ..., batch_k], step_rng)`, and makes one
    optimizer update with the mean of their gradients, each the gradient of its micro-batch's mean loss
    (ConvNeXt-style engine.py: `loss / update_freq` backpropagated per micro-batch, so micro-batches of
    different sizes weigh the same). Micro-batch i's key is `fold_in(fold_in(step_rng, step), i)`;
    BatchNorm statistics are updated micro-batch after micro-batch; the metrics are the micro-batches'
    means (the gradient norm is the mean gradient's). The micro-batches run as separate jitted calls,
    so their shapes may differ (a multi-scale stream draws a size for each).
    """

    def train_step(state: TrainState, batch, step_rng):
        with _tracing_context(batch_sharding.mesh, rules):
            return _train_step(state, batch, step_rng)

    def _train_step(state: TrainState, batch, step_rng):
        rng = jax.random.fold_in(step_rng, state.step)
        grad_fn = jax.value_and_grad(task.train_loss, has_aux=True)
        (loss, (aux, updated_variables)), grads = grad_fn(state.params, state.other_variables, batch, rng, state.step)
        other_variables = {**state.other_variables, **updated_variables}  # e.g. BatchNorm running statistics
        return _apply_gradients(state, grads, other_variables, {"loss": loss, **aux})

    def _apply_gradients(state: TrainState, grads, other_variables, losses):
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": losses["loss"], "grad_norm": optax.tree.norm(grads), "learning_rate": schedule(state.step)}
        metrics.update(losses)
        step = state.step + 1
        state = state.replace(step=step, params=params, opt_state=opt_state, other_variables=other_variables)
        if ema is not None:  # timm: after the optimizer step, with the update count that includes it
            state = state.replace(ema_params=ema.update(state.ema_params, params, step))
            if ema.buffers:  # timm's ModelEmaV3 default: buffers lerped with the parameters' weight
                stats = ema.update(state.ema_batch_stats, running_stats(other_variables), step)
                state = state.replace(ema_batch_stats=stats)
        return state, metrics

    shardings, repl = shardings_of(layout), replicated(batch_sharding.mesh)
    if accum_steps == 1:
        return jax.jit(
            train_step,
            in_shardings=(shardings, batch_sharding, repl),
            out_shardings=(shardings, repl),
            donate_argnums=(0,),
        )

    # Gradient accumulation: one jitted call per micro-batch (traced once per micro-batch shape, so a
    # multi-scale stream's micro-batches may each have their own size), then one optimizer update.
    def first_micro(state: TrainState, batch, step_rng):
        with _tracing_context(batch_sharding.mesh, rules):
            return _micro(state, None, batch, step_rng, 0)

    def next_micro(state: TrainState, carry, batch, step_rng, index):
        with _tracing_context(batch_sharding.mesh, rules):
            return _micro(state, carry, batch, step_rng, index)

    def _micro(state: TrainState, carry, batch, step_rng, index):
        rng = jax.random.fold_in(jax.random.fold_in(step_rng, state.step), index)
        other_variables = state.other_variables if carry is None else carry["other_variables"]
        grad_fn = jax.value_and_grad(task.train_loss, has_aux=True)
        (loss, (aux, updated_variables)), grads = grad_fn(state.params, other_variables, batch, rng, state.step)
        # Each micro-batch's statistics go on from the previous one's, as PyTorch's BatchNorm in train mode.
        other_variables = {**other_variables, **updated_variables}
        losses = {"loss": loss, **aux}
        if carry is not None:
            grads = jax.tree.map(jnp.add, carry["grads"], grads)
            losses = jax.tree.map(jnp.add, carry["losses"], losses)
        return {"grads": grads, "other_variables": other_variables, "losses": losses}

    def apply_accumulated(state: TrainState, carry):
        with _tracing_context(batch_sharding.mesh, rules):
            grads, losses = jax.tree.map(lambda x: x / accum_steps, (carry["grads"], carry["losses"]))
            return _apply_gradients(state, grads, carry["other_variables"], losses)

    carry_shardings = {"grads": shardings.params, "other_variables": shardings.other_variables, "losses": repl}
    first = jax.jit(first_micro, in_shardings=(shardings, batch_sharding, repl), out_shardings=carry_shardings)
    later = jax.jit(
        next_micro,
        in_shardings=(shardings, carry_shardings, batch_sharding, repl, repl),
        out_shardings=carry_shardings,
        donate_argnums=(1,),
    )
    apply = jax.jit(
        apply_accumulated,
        in_shardings=(shardings, carry_shardings),
        out_shardings=(shardings, repl),
        donate_argnums=(0,),  # the carry's buffers would find no output left to hold
    )

    def accumulating_train_step(state: TrainState, batches: Sequence[Mapping[str, jax.Array]], step_rng):
        if len(batches) != accum_steps:
            raise ValueError(f"This train step accumulates {accum_steps} micro-batches; got {len(batches)}.")
        carry = first(state, batches[0], step_rng)
        for index in range(1, accum_steps):
            carry = later(state, carry, batches[index], step_rng, jnp.uint32(index))
        return apply(state, carry)

    return accumulating_train_step


def _jit_on_state(fn, layout: TrainState, batch_sharding, rules: Sequence | None = None):
    """`fn(params, other_variables, batch)` jitted with the state's shardings; its output replicated."""
    shardings = shardings_of(layout)

    def traced(params, other_variables, batch):
        with _tracing_context(batch_sharding.mesh, rules):
            return fn(params, other_variables, batch)

    return jax.jit(
        traced,
        in_shardings=(shardings.params, shardings.other_variables, batch_sharding),
        out_shardings=replicated(batch_sharding.mesh),
    )


def make_eval_step(task: Task, layout: TrainState, batch_sharding, rules: Sequence | None = None):
    """The jitted `task.eval_sums(params, other_variables, batch)`: one eval batch's sums."""
    return _jit_on_state(task.eval_sums, layout, batch_sharding, rules)


def make_eval_images_step(task: Task, layout: TrainState, batch_sharding, rules: Sequence | None = None):
    """The jitted `task.eval_images(params, other_variables, batch)` ({} for a task that writes none)."""
    return _jit_on_state(task.eval_images, layout, batch_sharding, rules)


def evaluate(
    task: Task,
    eval_step,
    eval_images_step,
    state: TrainState,
    batches: Iterable[Mapping[str, Any]],
    batch_sharding,
    *,
    use_ema: bool = False,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One pass over `batches`: (the task's eval metrics, its eval images of the first batch, on the host).

    `use_ema` evaluates the EMA model (`ema_variables(state)`: `state.ema_params`, with the averaged
    `batch_stats` if the state keeps them, else the raw model's) and names the metrics `eval_ema/...`
    instead of `eval/...`. `eval_images_step=None` writes no images ({}).
    """
    if use_ema:
        if not isinstance(state, EmaTrainState):
            raise ValueError("use_ema=True needs an EmaTrainState (a run with config.model_ema).")
        params, other_variables = ema_variables(state)
    else:
        params, other_variables = state.params, state.other_variables
    sums, first = None, None
    for batch in batches:
        batch = put_batch(batch, batch_sharding)
        first = batch if first is None else first
        out = eval_step(params, other_variables, batch)
        sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
    if first is None:
        raise ValueError("The eval set yielded no batches; check config.data's eval split.")
    metrics = task.summarize_eval(jax.device_get(sums))
    if use_ema:
        metrics = {_ema_name(key): value for key, value in metrics.items()}
    images = {} if eval_images_step is None else jax.device_get(eval_images_step(params, other_variables, first))
    return metrics, images


def _ema_name(key: str) -> str:
    """`eval/accuracy` -> `eval_ema/accuracy` (a key without the `eval/` prefix gets `eval_ema/` in front)."""
    return "eval_ema/" + key.removeprefix("eval/")
