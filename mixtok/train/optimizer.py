"""The optimizer block of a config: AdamW or LAMB, a learning-rate schedule, clipping, no decay on 1-D weights.

The MetaFormer recipe (sail-sg/metaformer train.py, from timm's training script): AdamW,
weight decay 0.05 on weight matrices and kernels only (norm scales and biases, biases, layer and
res scales and StarReLU's scalars are exempt, like timm's `param_groups_weight_decay`, which puts
every parameter with one dimension or fewer in a group with weight decay 0), a warm-up then cosine
decay to `min_lr`, gradient clipping by global norm.

Fields of `config.optimizer` (defaults in brackets):

    name            "adamw" [default], "lamb" (optax.lamb) or "timm_lamb" (timm's Lamb, below)
    lr              the peak learning rate
    weight_decay    [0.05]
    weight_decay_on "matrices" [default]: only the weights with two or more dimensions decay
                    (`weight_decay_mask`, timm's param_groups_weight_decay); "all": every parameter,
                    norm scales and biases too (apple/ml-cvnets' `no_decay_bn_filter_bias: false`)
    no_weight_decay_keywords
                    [()] names: a parameter whose dotted path (e.g. "block1_0.attn.cpb_fc1.kernel")
                    contains one of them does not decay either (DaiShiResearch/TransNeXt
                    classification/optimizer.py `set_weight_decay` with the model's
                    `no_weight_decay_keywords`: query_embedding, relative_pos_bias_local, cpb,
                    temperature)
    b1, b2, eps     [0.9, 0.999, 1e-8; 1e-6 for the Lambs, timm's default]
    grad_clip       [off; 0 or None is off] the clipping value of `clip_mode` (timm's --clip-grad)
    clip_mode       "norm" [default], "agc" or "value" (timm's --clip-mode, below)
    schedule        "warmup_cosine" [default], "timm_cosine" or "cvnets_cosine"

Clipping, before the optimizer, as timm's `dispatch_clip_grad` (timm/utils/clip_grad.py) does it
before `optimizer.step()`:

- "norm": the global gradient norm is clipped to `grad_clip` (torch's clip_grad_norm_,
  optax.clip_by_global_norm);
- "value": each gradient element is clipped to [-grad_clip, grad_clip] (torch's clip_grad_value_,
  optax.clip);
- "agc": adaptive gradient clipping (Brock et al. 2021, timm/utils/agc.py `adaptive_clip_grad`),
  `grad_clip` the clip factor, eps 1e-3: per unit, a gradient whose norm is at least
  grad_clip * max(||w||, 1e-3) is scaled to that norm (`adaptive_grad_clip`). timm's unit is one
  slice along the first axis of PyTorch's weight (all the other axes summed), the whole tensor for a
  1-D or 0-D one. On mixtok's layouts (those of mixtok.interop.official) the same units are:

      flax Dense kernel [in, out]            Linear weight [out, in]           sum over all axes
      flax Conv kernel [kh, kw, in/g, out]   Conv2d weight [out, in/g, kh, kw]   but the last (out)
      1-D / 0-D (biases, norm scales)        the same                          the whole tensor
      any other parameter of 2+ dimensions   the same array ("same" layout:    sum over all axes
      (LSNet's attention_biases [heads, N])  filters, attention biases)        but the first

  optax.adaptive_grad_clip is not used: it infers the units from the rank alone, so it takes a
  depthwise 1x1 kernel [1, 1, 1, C] (LSNet's RepVGGDW `conv1`) as one vector where timm has C units,
  and LSNet's [heads, N] attention biases by columns where timm takes rows.

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

Schedules (all are functions of the optimizer step, 0 for the first update):

- "warmup_cosine": linear warm-up from `warmup_lr_init` [0.0] over `warmup_steps` [0] steps, then
  cosine decay to `min_lr` [0.0] at `total_steps` (optax.warmup_cosine_decay_schedule).
- "cvnets_cosine": apple/ml-cvnets' CosineScheduler (optim/scheduler/cosine.py, with
  optim/scheduler/base_scheduler.py) as its epoch-based configs run it (`is_iteration_based: false`,
  `adjust_period_for_epochs` off, e.g. config/classification/imagenet/mobilevit.yaml): update s (its
  `curr_iter`) below `warmup_steps` takes warmup_lr_init + s (lr - warmup_lr_init) / warmup_steps;
  after it, the rate of epoch e = s // steps_per_epoch is min_lr + (lr - min_lr) (1 + cos(pi e /
  epochs)) / 2, a cosine whose epochs count from the first one, warm-up included (cvnets' `period`
  is `max_epochs`); max(rate, 0). Fields: `steps_per_epoch` (required), `epochs` (cvnets'
  max_epochs; by default total_steps // steps_per_epoch; later steps stay at min_lr),
  `warmup_steps` (cvnets' warmup_iterations) [0], `warmup_lr_init` (warmup_init_lr) [0.0], `min_lr`
  [0.0]. cvnets rounds each rate to 8 decimals (update_lr's round_places); mixtok does not.
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
    epoch_lag         [0] 1: DeiT's main.py's one-epoch lag (below); schedule_on="epoch" only

  Per epoch, step s uses the rate of epoch s // steps_per_epoch; timm's epoch t has, for t below
  the warm-up T_w (in epochs, or in updates = T_w * steps_per_epoch per update),
  warmup_lr_init + t (lr - warmup_lr_init) / T_w, then, with t' = t (t - T_w with warmup_prefix)
  and the cosine's length T (epochs, or updates), min_lr + (lr - min_lr) (1 + cos(pi t' / T)) / 2
  while t' < T, and min_lr after (the cool-down, and any step past timm's run). Steps past
  total_steps are never taken; a total_steps shorter than the schedule ends the run early.

  Scripts built on DeiT's main.py (facebookresearch/deit main.py; GFNet's, TransNeXt's and LSNet's
  copy its loop) build the scheduler, which sets the rate of epoch 0 (timm's
  CosineLRScheduler sets `warmup_lr_init` at construction, timm/scheduler/cosine_lr.py; without a
  warm-up the Scheduler base keeps the base rate, which is the cosine's at 0), and call
  `lr_scheduler.step(epoch)` only after training epoch `epoch`, in a loop over --epochs alone (no
  cool-down, and no `step_update`). So epoch e trains at timm's rate of epoch max(e - 1, 0), where
  timm's train.py (`step(epoch + 1)` after each epoch) trains it at the rate of epoch e.
  `epoch_lag=1` gives that: step s uses the rate of epoch max(s // steps_per_epoch - 1, 0).

timm_cosine and the clipping are checked against timm 1.0.31 itself, rate by rate and parameter by
parameter, in tests/train/test_timm_optim.py (fixtures written by tools/make_timm_optim_fixtures.py,
timm's scheduler also driven as DeiT's main.py drives it); cvnets_cosine against a transcription of
cvnets' formulas in tests/train/test_optimizer.py.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error

OPTIMIZERS = ("adamw", "lamb", "timm_lamb")
SCHEDULES = ("warmup_cosine", "timm_cosine", "cvnets_cosine")
SCHEDULE_ON = ("epoch", "step")
CLIP_MODES = ("norm", "agc", "value")
WEIGHT_DECAY_ON = ("matrices", "all")
AGC_EPS = 1e-3  # timm's adaptive_clip_grad default, which dispatch_clip_grad keeps
# Fields that only one schedule or optimizer reads; setting them for another is a config mistake.
TIMM_SCHEDULE_FIELDS = (
    "steps_per_epoch",
    "schedule_on",
    "warmup_epochs",
    "cooldown_epochs",
    "warmup_prefix",
    "epochs",
    "epoch_lag",
)
TIMM_LAMB_FIELDS = ("max_grad_norm", "trust_clip", "always_adapt")


def weight_decay_mask(params):
    """True for the weights that decay: those with two or more dimensions."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def _unit_axes(path, x) -> tuple[int, ...]:
    """The axes that timm's unit-wise norm sums over, for a mixtok parameter (module docstring, "Clipping")."""
    if x.ndim <= 1:
        return tuple(range(x.ndim))
    names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
    if names and names[-1] == "kernel":  # flax Dense / Conv: the output features are the last axis
        return tuple(range(x.ndim - 1))
    return tuple(range(1, x.ndim))  # kept in the official (PyTorch) layout: units along the first axis


def adaptive_grad_clip(clip_factor: float, eps: float = AGC_EPS) -> optax.GradientTransformation:
    """timm's adaptive gradient clipping (`--clip-mode agc`) on mixtok's parameter layouts (module docstring).

    Each unit's gradient g (its norm |g|) becomes g * m / max(|g|, 1e-6) where |g| >= m =
    clip_factor * max(|w|, eps), |w| the unit's parameter norm; other units are left alone.
    """

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("adaptive_grad_clip needs the parameters: call update(grads, state, params).")

        def one(path, g, p):
            axes = _unit_axes(path, p)
            p_norm = jnp.sqrt(jnp.sum(jnp.square(p.astype(jnp.float32)), axis=axes, keepdims=True))
            g_norm = jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32)), axis=axes, keepdims=True))
            max_norm = clip_factor * jnp.maximum(p_norm, eps)
            clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6)).astype(g.dtype)
            return jnp.where(g_norm < max_norm, g, clipped)

        return jax.tree_util.tree_map_with_path(one, grads, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def gradient_clipping(config: ConfigDict) -> optax.GradientTransformation | None:
    """The clipping that `grad_clip` and `clip_mode` ask for (module docstring), or None when it is off."""
    mode = config.get("clip_mode", "norm")
    if mode not in CLIP_MODES:
        raise unknown_name_error("optimizer.clip_mode", mode, CLIP_MODES)
    value = config.get("grad_clip", None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0):
        raise ValueError(f"optimizer.grad_clip={value!r} must be a number >= 0 (0 or None: no clipping).")
    if not value:
        if mode != "norm":
            raise ValueError(
                f"optimizer.clip_mode={mode!r} needs optimizer.grad_clip > 0 (its "
                + ("clip factor, timm's --clip-grad" if mode == "agc" else "bound")
                + f"), got grad_clip={value!r}."
            )
        return None
    if mode == "agc":
        return adaptive_grad_clip(value)
    return optax.clip(value) if mode == "value" else optax.clip_by_global_norm(value)


def _is_set(config: ConfigDict, key: str) -> bool:
    return config.get(key, None) not in (None, False, 0)


def _whole(config: ConfigDict, key: str, default: int | None, minimum: int) -> int:
    """config[key] as an int of at least `minimum`, or a one-line ValueError naming it."""
    value = config.get(key, default)
    if value is None:
        raise ValueError(
            f"optimizer.{key} is required by schedule {config.get('schedule')!r} (a whole number >= {minimum})."
        )
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
    epoch_lag: int = 0,
) -> optax.Schedule:
    """timm's one-cycle cosine schedule (module docstring) as an optax schedule of the update count.

    `epoch_lag` 1 (per epoch only): epoch e takes timm's rate of epoch max(e - 1, 0), as DeiT's main.py
    drives the scheduler.
    """
    if epoch_lag and per_step:
        raise ValueError("epoch_lag is for a schedule stepped per epoch (per_step=False).")
    unit = steps_per_epoch if per_step else 1  # timm counts t in updates or in epochs
    t_initial, warmup_t = epochs * unit, warmup_epochs * unit

    def schedule(count):
        count = jnp.asarray(count, jnp.int32)
        t = (count if per_step else jnp.maximum(count // steps_per_epoch - epoch_lag, 0)).astype(jnp.float32)
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
    epoch_lag = config.get("epoch_lag", 0)
    if isinstance(epoch_lag, bool) or epoch_lag not in (0, 1):
        raise ValueError(
            f"optimizer.epoch_lag={epoch_lag!r} must be 0 (timm's train.py) or 1 (DeiT's main.py, which steps "
            "the scheduler after each epoch)."
        )
    if epoch_lag and schedule_on != "epoch":
        raise ValueError(
            f"optimizer.epoch_lag={epoch_lag!r} is for schedule_on='epoch' (DeiT's main.py steps timm's scheduler "
            f"once per epoch), not schedule_on={schedule_on!r}; remove it or set schedule_on='epoch'."
        )
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
        epoch_lag=int(epoch_lag),
    )


def cvnets_cosine_schedule(
    lr: float, *, epochs: int, steps_per_epoch: int, warmup_steps: int, warmup_lr_init: float, min_lr: float
) -> optax.Schedule:
    """ml-cvnets' epoch-based CosineScheduler (module docstring) as an optax schedule of the update count."""

    def schedule(count):
        count = jnp.asarray(count, jnp.int32)
        epoch = jnp.minimum(count // steps_per_epoch, epochs).astype(jnp.float32)
        rate = min_lr + 0.5 * (lr - min_lr) * (1.0 + jnp.cos(jnp.pi * epoch / epochs))
        if warmup_steps:
            warm = warmup_lr_init + count.astype(jnp.float32) * ((lr - warmup_lr_init) / warmup_steps)
            rate = jnp.where(count < warmup_steps, warm, rate)
        return jnp.maximum(rate, 0.0)

    return schedule


def _cvnets_cosine_from_config(config: ConfigDict, total_steps: int) -> optax.Schedule:
    steps_per_epoch = _whole(config, "steps_per_epoch", None, 1)
    if config.get("epochs", None) is None:
        epochs = total_steps // steps_per_epoch
        if epochs < 1:
            raise ValueError(
                f"total_steps={total_steps} is less than one epoch of optimizer.steps_per_epoch={steps_per_epoch}; "
                "raise total_steps or set optimizer.epochs."
            )
    else:
        epochs = _whole(config, "epochs", None, 1)
    warmup = _whole(config, "warmup_steps", 0, 0)
    return cvnets_cosine_schedule(
        config.lr,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=warmup,
        warmup_lr_init=_non_negative(config, "warmup_lr_init", 0.0),
        min_lr=_non_negative(config, "min_lr", 0.0),
    )


def learning_rate_schedule(config: ConfigDict, total_steps: int) -> optax.Schedule:
    """The schedule that `config.schedule` names (module docstring), over a run of `total_steps` updates."""
    name = config.get("schedule", "warmup_cosine")
    if name not in SCHEDULES:
        raise unknown_name_error("optimizer.schedule", name, SCHEDULES)
    if name == "timm_cosine":
        return _timm_cosine_from_config(config, total_steps)
    read = ("steps_per_epoch", "epochs") if name == "cvnets_cosine" else ()
    stray = [key for key in TIMM_SCHEDULE_FIELDS if key not in read and _is_set(config, key)]
    if stray:
        raise ValueError(
            f"optimizer.{stray[0]}={config[stray[0]]!r} is for schedule 'timm_cosine', not {name!r}; "
            "set optimizer.schedule='timm_cosine' or remove it."
        )
    if name == "cvnets_cosine":
        return _cvnets_cosine_from_config(config, total_steps)
    warmup = int(config.get("warmup_steps", 0))
    if warmup >= total_steps:
        raise ValueError(f"optimizer.warmup_steps={warmup} must be smaller than total_steps={total_steps}.")
    warmup_lr_init = _non_negative(config, "warmup_lr_init", 0.0)
    if warmup_lr_init and not warmup:
        raise ValueError(
            f"optimizer.warmup_lr_init={warmup_lr_init!r} is the start of a warm-up; set optimizer.warmup_steps > 0 "
            "or remove it."
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=warmup_lr_init if warmup else config.lr,
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


def _decays_all(params):
    return jax.tree_util.tree_map(lambda _: True, params)


def _path_name(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _without_keywords(mask_fn: Callable, keywords: tuple[str, ...]) -> Callable:
    """`mask_fn`, with False for every parameter whose dotted path contains one of `keywords`."""

    def mask(params):
        named = jax.tree_util.tree_map_with_path(lambda path, _: _path_name(path), params)
        return jax.tree_util.tree_map(
            lambda decays, name: bool(decays) and not any(k in name for k in keywords), mask_fn(params), named
        )

    return mask


def _no_decay_keywords(config: ConfigDict) -> tuple[str, ...]:
    keywords = config.get("no_weight_decay_keywords", ())
    if isinstance(keywords, str) or not all(isinstance(k, str) and k for k in keywords):
        raise ValueError(
            f"optimizer.no_weight_decay_keywords={keywords!r} must be a tuple of non-empty names, "
            "e.g. ('query_embedding', 'cpb')."
        )
    return tuple(keywords)


def _optimizer(name: str, config: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    decay_on = config.get("weight_decay_on", "matrices")
    if decay_on not in WEIGHT_DECAY_ON:
        raise unknown_name_error("optimizer.weight_decay_on", decay_on, WEIGHT_DECAY_ON)
    mask = weight_decay_mask if decay_on == "matrices" else _decays_all
    keywords = _no_decay_keywords(config)
    if keywords:
        mask = _without_keywords(mask, keywords)
    common = dict(
        b1=config.get("b1", 0.9),
        b2=config.get("b2", 0.999),
        eps=config.get("eps", 1e-8 if name == "adamw" else 1e-6),  # timm's AdamW and Lamb defaults
        weight_decay=config.get("weight_decay", 0.05),
        mask=mask,
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
    clip = gradient_clipping(config)
    optimizer = _optimizer(name, config, schedule)
    return (optax.chain(clip, optimizer) if clip else optax.chain(optimizer)), schedule
