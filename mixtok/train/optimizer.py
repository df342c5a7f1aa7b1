"""AdamW or LAMB with linear warm-up and cosine decay, gradient clipping, no decay on 1-D weights.

The MetaFormer recipe (sail-sg/metaformer train.py, from timm's training script): AdamW,
weight decay 0.05 on weight matrices and kernels only (norm scales and biases, biases, layer and
res scales and StarReLU's scalars are exempt, like timm's `no_weight_decay` for 1-D params),
linear warm-up then cosine decay to `min_lr`, gradient clipping by global norm. CAFormer's
official recipe uses LAMB (`--opt lamb`, timm's Lamb) instead: `optimizer.name = "lamb"` gives
optax's LAMB with the same mask. timm's Lamb clips the global gradient norm to 1 inside the
optimizer; here that is `optimizer.grad_clip = 1.0`.
"""

import jax
import optax
from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error

OPTIMIZERS = {"adamw": optax.adamw, "lamb": optax.lamb}


def weight_decay_mask(params):
    """True for the weights that decay: those with two or more dimensions."""
    return jax.tree_util.tree_map(lambda p: p.ndim > 1, params)


def learning_rate_schedule(config: ConfigDict, total_steps: int) -> optax.Schedule:
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


def create_optimizer(config: ConfigDict, total_steps: int):
    """Returns (optax transformation, learning-rate schedule) for `config` (the optimizer block)."""
    name = config.get("name", "adamw")
    if name not in OPTIMIZERS:
        raise unknown_name_error("optimizer", name, OPTIMIZERS)
    schedule = learning_rate_schedule(config, total_steps)
    parts = []
    if config.get("grad_clip", None):
        parts.append(optax.clip_by_global_norm(config.grad_clip))
    default_eps = 1e-6 if name == "lamb" else 1e-8  # timm's Lamb and AdamW defaults
    parts.append(
        OPTIMIZERS[name](
            schedule,
            b1=config.get("b1", 0.9),
            b2=config.get("b2", 0.999),
            eps=config.get("eps", default_eps),
            weight_decay=config.get("weight_decay", 0.05),
            mask=weight_decay_mask,
        )
    )
    return optax.chain(*parts), schedule
