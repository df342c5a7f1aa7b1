"""The optimizer block of a config: AdamW or LAMB, a learning-rate schedule, clipping, no decay on 1-D weights.

The MetaFormer recipe (sail-sg/metaformer train.py, from timm's training script): AdamW,
weight decay 0.05 on weight matrices and kernels only (norm scales and biases, biases, layer and
res scales and StarReLU's scalars are exempt, like timm's `param_groups_weight_decay`, which puts
every parameter with one dimension or fewer in a group with weight decay 0), a warm-up then cosine
decay to `min_lr`, gradient clipping by global norm.

Fields of `config.optimizer` (defaults in brackets):

    name            "adamw" [default], "lamb" (optax.lamb) or "timm_lamb" (timm's Lamb, below)
    lr              the peak learning rate
    weight_decay    [0.05], on the weights with two or more dimensions only (`weight_decay_mask`)
    b1, b2, eps     [0.9, 0.999, 1e-8; 1e-6 for the Lambs, timm's default]
    grad_clip       [off] clip the global gradient norm before the optimizer (timm's --clip-grad)
    schedule        "warmup_cosine" [default] or "timm_cosine"

Optimizers:

- "lamb" is optax.lamb: it applies the trust ratio to every parameter, those without weight decay
  included, and does not clip. Kept as it was so that runs and checkpoints made with it still mean
  the same thing.
- "timm_lamb" is timm's Lamb (huggingface/pytorch-image-models timm/optim/lamb.py, `Lamb` with its
  defaults, as `--opt lamb` builds it in timm's train.py): the global gradient norm is clipped to
  `max_grad_norm` inside the optimizer (the gradients are divided by max(1, norm / max_grad_norm));
  Adam moments with `grad_averaging` (the first moment takes (1 - b1) of the gradient) and bias
  correction; the weight decay is added to the Adam direction (L2 on the update, not decoupled); and
  the layer-wise trust ratio ||w|| / ||update|| (1 where either norm is 0) scales the update only of
  the parameters whose weight decay is not 0, so biases and norm scales take plain Adam steps.
  Fields: `max_grad_norm` [1.0; None turns the clipping off], `trust_clip` [False: LAMBC, the trust
  ratio capped at 1], `always_adapt` [False: True applies the trust ratio to the no-decay
  parameters too]. timm's `caution`, `decoupled_decay` and `corrected_weight_decay` are not
  implemented. `grad_clip` still clips before it, as timm's --clip-grad does before `Lamb.step`.
  timm's Lamb before 1.0 (sail-sg/metaformer pins timm 0.6.11) does the same arithmetic.

Schedules (both are functions of the optimizer step, 0 for the first update):

- "warmup_cosine": linear warm-up from 0 over `warmup_steps` [0] steps, then cosine decay to
  `min_lr` [0.0] at `total_steps` (optax.warmup_cosine_decay_schedule).
- "timm_cosine": timm's CosineLRScheduler (timm/scheduler/cosine_lr.py, one cycle, no noise,
  k_decay 1) as timm/scheduler/scheduler_factory.py `create_scheduler_v2` builds it from epochs
  and drives it in timm's train.py. Fields, named after timm's arguments:

    steps_per_epoch   required: optimizer updates per epoch (timm's `updates_per_epoch`)
    schedule_on       "epoch" [default, timm's default]: the rate changes once per epoch
                      (`scheduler.step(epoch)`), constant within it; "step": once per update
                      (timm's --sched-on-updates, `scheduler.step_update(num_updates)`)
    warmup_epochs     [0] linear warm-up from `warmup_lr_init`; timm reaches `lr` only at its end
    warmup_lr_init    [0.0] the rate of the first warm-up epoch / update (timm's --warmup-lr:
                      1e-5 by default in timm's train.py, 1e-6 in sail-sg/metaformer's)
    min_lr            [0.0] the end of the cosine, and the rate of the cool-down
    cooldown_epochs   [0] epochs at `min_lr` after the cosine (timm's --cooldown-epochs)
    warmup_prefix     [False] True: the cosine starts after the warm-up instead of spanning it
    epochs            the cosine's length in epochs (timm's --epochs), cool-down excluded; by
                      default total_steps // steps_per_epoch - cooldown_epochs (- warmup_epochs
                      with warmup_prefix), so that total_steps covers the whole timm run

  Per epoch, step s uses the rate of epoch s // steps_per_epoch; timm's epoch t has, for t below
  the warm-up T_w (in epochs, or in updates = T_w * steps_per_epoch per update),
  warmup_lr_init + t (lr - warmup_lr_init) / T_w, then, with t' = t (t - T_w with warmup_prefix)
  and the cosine's length T (epochs, or updates), min_lr + (lr - min_lr) (1 + cos(pi t' / T)) / 2
  while t' < T, and min_lr after (the cool-down, and any step past timm's run). Steps past
  total_steps are never taken; a total_steps shorter than the schedule ends the run early.
  Scripts built on DeiT's main.py (`scheduler.step(epoch)` after each epoch, a loop over --epochs
  only) train epoch e at timm's rate for epoch e - 1 and never run the cool-down; that lag is not
  modelled here.

Both are checked against timm 1.0.31 itself, rate by rate and parameter by parameter, in
tests/train/test_timm_optim.py (fixtures written by tools/make_timm_optim_fixtures.py).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error

OPTIMIZERS = ("adamw", "lamb", "timm_lamb")
SCHEDULES = ("warmup_cosine", "timm_cosine")
SCHEDULE_ON = ("epoch", "step")
# Fields that only one schedule or optimizer reads; setting them for another is a config mistake.
TIMM_SCHEDULE_FIELDS = (
    "steps_per_epoch",
    "schedule_on",
    "warmup_epochs",
    "warmup_lr_init",
    "cooldown_epochs",
    "warmup_prefix",
    "epochs",
)
TIMM_LAMB_FIELDS = ("max_grad_norm", "trust_clip", "always_adapt")


def weight_decay_mask(params):
    """True for the weights that decay: those with two or more dimensions."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def _is_set(config: ConfigDict, key: str) -> bool:
    return config.get(key, None) not in (None, False, 0)


def _whole(config: ConfigDict, key: str, default: int | None, minimum: int) -> int:
    """config[key] as an int of at least `minimum`, or a one-line ValueError naming it."""
    value = config.get(key, default)
    if value is None:
        raise ValueError(f"optimizer.{key} is required by schedule 'timm_cosine' (a whole number >= {minimum}).")
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < minimum:
        raise ValueError(f"optimizer.{key}={value!r} must be a whole number >= {minimum}.")
    return int(value)


def _non_negative(config: ConfigDict, key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"optimizer.{key}={value!r} must be a number >= 0.")
    return float(value)


def timm_cosine_schedule(
    lr: float,
    *,
    epochs: int,
    steps_per_epoch: int,
    per_step: bool,
    warmup_epochs: int = 0,
    warmup_lr_init: float = 0.0,
    min_lr: float = 0.0,
    warmup_prefix: bool = False,
) -> optax.Schedule:
    """timm's one-cycle cosine schedule (module docstring) as an optax schedule of the update count."""
    unit = steps_per_epoch if per_step else 1  # timm counts t in updates or in epochs
    t_initial, warmup_t = epochs * unit, warmup_epochs * unit

    def schedule(count):
        count = jnp.asarray(count, jnp.int32)
        t = (count if per_step else count // steps_per_epoch).astype(jnp.float32)
        t_cosine = t - warmup_t if warmup_prefix else t
        cosine = min_lr + 0.5 * (lr - min_lr) * (1.0 + jnp.cos(jnp.pi * t_cosine / t_initial))
        rate = jnp.where(t_cosine < t_initial, cosine, min_lr)  # past one cycle: min_lr (cool-down)
        if warmup_t:
            rate = jnp.where(t < warmup_t, warmup_lr_init + t * ((lr - warmup_lr_init) / warmup_t), rate)
        return rate

    return schedule


def _timm_cosine_from_config(config: ConfigDict, total_steps: int) -> optax.Schedule:
    if _is_set(config, "warmup_steps"):
        raise ValueError(
            f"optimizer.warmup_steps={config.warmup_steps} is for schedule 'warmup_cosine'; "
            "schedule 'timm_cosine' takes optimizer.warmup_epochs."
        )
    schedule_on = config.get("schedule_on", "epoch")
    if schedule_on not in SCHEDULE_ON:
        raise unknown_name_error("optimizer.schedule_on", schedule_on, SCHEDULE_ON)
    steps_per_epoch = _whole(config, "steps_per_epoch", None, 1)
    warmup_epochs = _whole(config, "warmup_epochs", 0, 0)
    cooldown_epochs = _whole(config, "cooldown_epochs", 0, 0)
    warmup_prefix = config.get("warmup_prefix", False)
    if not isinstance(warmup_prefix, bool):
        raise ValueError(f"optimizer.warmup_prefix={warmup_prefix!r} must be True or False.")
    if config.get("epochs", None) is None:
        epochs = total_steps // steps_per_epoch - cooldown_epochs - (warmup_epochs if warmup_prefix else 0)
        if epochs < 1:
            raise ValueError(
                f"total_steps={total_steps} is {total_steps // steps_per_epoch} epochs of optimizer.steps_per_epoch="
                f"{steps_per_epoch}, which leaves no cosine after cooldown_epochs={cooldown_epochs}"
                + (f" and the warmup_prefix's warmup_epochs={warmup_epochs}" if warmup_prefix else "")
                + "; raise total_steps or set optimizer.epochs."
            )
    else:
        epochs = _whole(config, "epochs", None, 1)
    if warmup_epochs >= epochs and not warmup_prefix:
        raise ValueError(
            f"optimizer.warmup_epochs={warmup_epochs} must be smaller than the cosine's {epochs} epochs "
            "(or set optimizer.warmup_prefix=True)."
        )
    return timm_cosine_schedule(
        config.lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        per_step=schedule_on == "step",
        warmup_epochs=warmup_epochs,
        warmup_lr_init=_non_negative(config, "warmup_lr_init", 0.0),
        min_lr=_non_negative(config, "min_lr", 0.0),
        warmup_prefix=warmup_prefix,
    )


def learning_rate_schedule(config: ConfigDict, total_steps: int) -> optax.Schedule:
    """The schedule that `config.schedule` names (module docstring), over a run of `total_steps` updates."""
    name = config.get("schedule", "warmup_cosine")
    if name not in SCHEDULES:
        raise unknown_name_error("optimizer.schedule", name, SCHEDULES)
    if name == "timm_cosine":
        return _timm_cosine_from_config(config, total_steps)
    stray = [key for key in TIMM_SCHEDULE_FIELDS if _is_set(config, key)]
    if stray:
        raise ValueError(
            f"optimizer.{stray[0]}={config[stray[0]]!r} is for schedule 'timm_cosine'; "
            "set optimizer.schedule='timm_cosine' or remove it."
        )
    warmup = int(config.get("warmup_steps", 0))
    if warmup >= total_steps:
        raise ValueError(f"optimizer.warmup_steps={warmup} must be smaller than total_steps={total_steps}.")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else config.lr,
        peak_value=config.lr,
        warmup_steps=warmup,
        decay_steps=total_steps,
        end_value=config.get("min_lr", 0.0),
    )


class TimmLambState(NamedTuple):
    count: jax.Array  # updates done
    mu: optax.Updates  # first moment
    nu: optax.Updates  # second moment


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32))))


def timm_lamb(
    learning_rate: float | optax.Schedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    weight_decay: float = 0.01,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    max_grad_norm: float | None = 1.0,
    trust_clip: bool = False,
    always_adapt: bool = False,
    grad_averaging: bool = True,
    bias_correction: bool = True,
) -> optax.GradientTransformation:
    """timm's Lamb (module docstring) as an optax transformation; its updates are added to the parameters.

    `mask` (a tree of Python bools like the parameters, or a function of them) says which parameters
    decay, as timm's parameter groups with weight decay != 0 do; only those take the trust ratio,
    unless `always_adapt`. timm's defaults, except `weight_decay`, which the optimizer block sets.
    """
    beta3 = 1.0 - b1 if grad_averaging else 1.0

    def init(params):
        return TimmLambState(jnp.zeros([], jnp.int32), optax.tree.zeros_like(params), optax.tree.zeros_like(params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("timm_lamb needs the parameters: call update(grads, state, params).")
        if max_grad_norm is not None:
            clip = jnp.maximum(optax.tree.norm(grads) / max_grad_norm, 1.0)
            grads = jax.tree_util.tree_map(lambda g: g / clip.astype(g.dtype), grads)
        mu = jax.tree_util.tree_map(lambda m, g: b1 * m + beta3 * g, state.mu, grads)
        nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, grads)
        count = optax.safe_int32_increment(state.count)
        step = count.astype(jnp.float32)
        bc1, bc2 = (1.0 - b1**step, 1.0 - b2**step) if bias_correction else (1.0, 1.0)
        rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
        decays = mask(params) if callable(mask) else mask
        if decays is None:
            decays = jax.tree_util.tree_map(lambda _: True, params)

        def one(m, v, p, decay):
            u = (m / bc1) / (jnp.sqrt(v) / jnp.sqrt(bc2) + eps)
            wd = weight_decay if decay else 0.0
            if wd:
                u = u + wd * p
            if wd or always_adapt:
                w_norm, u_norm = _norm(p), _norm(u)
                ratio = jnp.where((w_norm > 0) & (u_norm > 0), w_norm / jnp.where(u_norm > 0, u_norm, 1.0), 1.0)
                u = u * (jnp.minimum(ratio, 1.0) if trust_clip else ratio)
            return (-rate * u).astype(p.dtype)

        updates = jax.tree_util.tree_map(one, mu, nu, params, decays)
        return updates, TimmLambState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def _optimizer(name: str, config: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    common = dict(
        b1=config.get("b1", 0.9),
        b2=config.get("b2", 0.999),
        eps=config.get("eps", 1e-8 if name == "adamw" else 1e-6),  # timm's AdamW and Lamb defaults
        weight_decay=config.get("weight_decay", 0.05),
        mask=weight_decay_mask,
    )
    if name == "timm_lamb":
        trust_clip, always_adapt = config.get("trust_clip", False), config.get("always_adapt", False)
        for key, value in (("trust_clip", trust_clip), ("always_adapt", always_adapt)):
            if not isinstance(value, bool):
                raise ValueError(f"optimizer.{key}={value!r} must be True or False.")
        max_grad_norm = config.get("max_grad_norm", 1.0)
        if max_grad_norm is not None and (isinstance(max_grad_norm, bool) or not max_grad_norm > 0):
            raise ValueError(f"optimizer.max_grad_norm={max_grad_norm!r} must be a positive number or None (no clip).")
        options = dict(max_grad_norm=max_grad_norm, trust_clip=trust_clip, always_adapt=always_adapt)
        return timm_lamb(schedule, **options, **common)
    stray = [key for key in TIMM_LAMB_FIELDS if key in config]
    if stray:
        raise ValueError(
            f"optimizer.{stray[0]}={config[stray[0]]!r} is for optimizer 'timm_lamb', not {name!r}"
            + ("; clip with optimizer.grad_clip." if stray[0] == "max_grad_norm" else ".")
        )
    return (optax.adamw if name == "adamw" else optax.lamb)(schedule, **common)


def create_optimizer(config: ConfigDict, total_steps: int):
    """Returns (optax transformation, learning-rate schedule) for `config` (the optimizer block)."""
    name = config.get("name", "adamw")
    if name not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    schedule = learning_rate_schedule(config, total_steps)
    parts = []
    if config.get("grad_clip", None):
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    parts.append(_optimizer(name, config, schedule))
    return optax.chain(*parts), schedule
