"""The zoo: named model variants, created by one call.

    model = mixtok.models.create_model("caformer_s18", num_classes=1000, drop_path_rate=0.15)
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    logits = model.apply(variables, images)

A variant is a module class plus its keyword arguments (a row of data, as in timm's registry);
overrides replace any of those arguments.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax
import flax.linen as nn
import jax

from mixtok.registry import Registry, unknown_name_error


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A named variant: `cls(**kwargs)`, plus facts for tests and docs."""

    cls: Callable[..., nn.Module]
    kwargs: Mapping[str, Any]
    paper: str = ""
    official_params: int | None = None  # at 224 px with 1000 classes, from timm or the official code
    timm_name: str | None = None  # the same model in timm, if timm has it


MODELS: Registry[ModelSpec] = Registry("model")


register_model = MODELS.register
list_models = MODELS.names  # names of the registered variants, optionally filtered: list_models("caformer_*")
model_spec = MODELS.get


def create_model(name: str, num_classes: int = 1000, **overrides) -> nn.Module:
    """Builds the variant `name` with `num_classes` outputs; `overrides` replace its arguments."""
    spec = MODELS.get(name)
    fields = {f.name for f in dataclasses.fields(spec.cls) if f.init and f.name not in ("parent", "name")}
    for key in overrides:
        if key not in fields:
            raise unknown_name_error(f"argument of {name} ({spec.cls.__name__})", key, fields)
    kwargs: dict[str, Any] = {**spec.kwargs, "num_classes": num_classes, **overrides}
    return spec.cls(**kwargs)


# Collections that hold model weights: `frozen` holds fixed weights that count as parameters in
# the official code (RandFormer's random matrix) but are never trained.
WEIGHT_COLLECTIONS = ("params", "frozen")


def count_params(variables: Mapping[str, Any]) -> int:
    """Number of weights, counted as `sum(p.numel() for p in model.parameters())` counts them."""
    total = 0
    for collection in WEIGHT_COLLECTIONS:
        leaves = jax.tree_util.tree_leaves(flax.linen.meta.unbox(variables.get(collection, {})))
        total += sum(int(x.size) for x in leaves)
    return total
