"""The tokenizer zoo: named variants, created by one call (the tokenizer twin of mixtok.models).

    tokenizer = mixtok.tokenizers.create_tokenizer("titok_s128")
    variables = tokenizer.init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, 3)))
    out = tokenizer.apply(variables, images)          # TokenizerOutput

A variant is a module class plus its keyword arguments; overrides replace any of them.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from mixtok.registry import Registry, unknown_name_error


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """A named variant: `cls(**kwargs)`, plus facts for tests and docs."""

    cls: Callable[..., nn.Module]
    kwargs: Mapping[str, Any]
    paper: str = ""
    # sum(p.numel() for p in official_model.parameters()) of the official code built with this
    # variant's config (what exactly is counted is said where the variant is registered).
    official_params: int | None = None
    official_source: str = ""  # owner/repo @ commit: file (config)


TOKENIZERS: Registry[TokenizerSpec] = Registry("tokenizer")


register_tokenizer = TOKENIZERS.register
list_tokenizers = TOKENIZERS.names  # names of the registered variants, optionally filtered by a shell-style pattern
tokenizer_spec = TOKENIZERS.get


def create_tokenizer(name: str, **overrides) -> nn.Module:
    """Builds the variant `name`; `overrides` replace its arguments (unknown ones are an error)."""
    spec = TOKENIZERS.get(name)
    fields = {f.name for f in dataclasses.fields(spec.cls) if f.init and f.name not in ("parent", "name")}
    for key in overrides:
        if key not in fields:
            raise unknown_name_error(f"argument of {name} ({spec.cls.__name__})", key, fields)
    kwargs: dict[str, Any] = {**spec.kwargs, **overrides}
    return spec.cls(**kwargs)
