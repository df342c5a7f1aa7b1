"""Converts the state dict of the official PoNet LRA classifier (lxchtan/PoNet) to mixtok variables and back.

    variables = convert("ponet_lra_listops", model.state_dict())       # {'params': ...}
    logits = create_model("ponet_lra_listops", num_classes=10).apply(variables, token_ids)

or, from the shell, for a file saved by the official run_tasks.py (`{"model_state_dict": ...}`):

    python -m mixtok.interop.ponet ponet_lra_listops listops.model ponet_lra_listops.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` line on stderr, as every importer's
command line, official.run_cli.) The official model is examples/LRA/code/model_wrapper.py `ModelForSC` of
lxchtan/PoNet @ cc9a29a3 (attn_type "ponet", tied_weights False as every LRA config); the repository publishes
no LRA checkpoint, so this converts what its run_tasks.py saves. Keys:

    model.embeddings.word_embeddings.weight         word_embeddings                       (same)
    model.embeddings.position_embeddings.weight     position_embeddings                   (same)
    model.transformer_{i}.norm1 / norm2 .weight|bias  transformer_{i}/norm1|norm2/scale|bias
    model.transformer_{i}.mha.{W_q,W_k,W_v,W_local,W_segment,ff}.weight|bias
                                                    transformer_{i}/mha/<same>/kernel|bias  (Linear transposed)
    model.transformer_{i}.mlpblock.0 / .3 .*        transformer_{i}/mlpblock/fc1 / fc2/*
    model.norm.*                                    norm/*
    seq_classifer.mlpblock.0 / .2 .*                seq_classifer_mlpblock_0 / _2/*

The class count is read from seq_classifer.mlpblock.2.weight (`num_classes=` overrides); vocab_size and
max_seq_len from the embeddings; other create_model arguments (depths, dims, num_heads, segment_num, pooling,
which no weight shows) pass through `**overrides`. tests/interop/test_ponet_import.py checks converted tiny
official models against their logits (tests/fixtures/ponet, written by tools/make_ponet_fixtures.py).
"""

import functools
import re
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop.official import (
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
)
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, list_models
from mixtok.registry import unknown_name_error

__all__ = ["convert", "load_variables", "main", "official_shapes", "resolve_name", "save_variables", "to_official"]

WRAPPER_KEYS = ("model_state_dict",)  # examples/LRA/code/run_tasks.py: torch.save({"model_state_dict": ...})
CLI_DESCRIPTION = (
    "Converts an official PoNet LRA classifier (lxchtan/PoNet examples/LRA, run_tasks.py's .model file) to mixtok "
    "variables (flax msgpack). Exit codes: 0 written, 2 bad input or arguments."
)
CLI_NAME_HELP = "ponet_lra_listops, ponet_lra_text, ponet_lra_image or ponet_lra_pathfinder"
CLI_CHECKPOINT_HELP = "the file run_tasks.py saves ({'model_state_dict': ...}) or a bare state dict"
_LEAF_NAMES = {"kernel": "weight", "scale": "weight"}
_CLASSIFIER = "seq_classifer.mlpblock.2.weight"


def resolve_name(name: str) -> str:
    """The mixtok name of a PoNet LRA classifier, or an error listing the valid ones."""
    names = list_models("ponet_lra_*")
    if name not in names:
        raise unknown_name_error("PoNet LRA classifier", name, names)
    return name


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    del collection
    *module, leaf_name = path
    if not module:  # the two embedding tables
        return f"model.embeddings.{leaf_name}.weight", "same"
    if match := re.fullmatch(r"seq_classifer_mlpblock_(\d+)", module[0]):
        parts = ["seq_classifer", "mlpblock", match[1]]
    else:
        parts = ["model"] + [{"fc1": "0", "fc2": "3"}.get(p, p) for p in module]
    return ".".join(parts + [_LEAF_NAMES.get(leaf_name, leaf_name)]), "linear" if leaf_name == "kernel" else "same"


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    tokens = jax.ShapeDtypeStruct((1, 4), jnp.int32)  # no parameter depends on the length
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), tokens))
    return build_table({"params": shapes["params"]}, _official_key)


def _settings(arrays: Mapping[str, np.ndarray], num_classes: int | None, overrides: dict) -> dict:
    """create_model arguments the weights show (class count, vocabulary, positions), unless given."""
    settings = dict(overrides)
    if num_classes is None and _CLASSIFIER in arrays:
        num_classes = int(arrays[_CLASSIFIER].shape[0])
    for key, field in (("word_embeddings", "vocab_size"), ("position_embeddings", "max_seq_len")):
        weight = arrays.get(f"model.embeddings.{key}.weight")
        if weight is not None and field not in settings:
            settings[field] = int(weight.shape[0])
    return {"num_classes": 0 if num_classes is None else num_classes, **settings}


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict:
    """mixtok variables {'params': ...} (float32 numpy) from the official ModelForSC state dict.

    Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    settings = _settings(arrays, num_classes, overrides)
    classes = settings.pop("num_classes")
    table = _table(model_name, classes, freeze(settings))
    described = ", ".join(f"{k}={v}" for k, v in {"num_classes": classes, **settings}.items())
    return variables_from_state_dict(
        table, arrays, f"The PoNet state dict does not fit mixtok's {model_name} ({described})"
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy, official layouts) from mixtok variables; the inverse of `convert`."""
    model_name = resolve_name(name)
    params = nn.meta.unbox(variables["params"])
    settings = {
        "vocab_size": int(params["word_embeddings"].shape[0]),
        "max_seq_len": int(params["position_embeddings"].shape[0]),
        **overrides,
    }
    classes = int(params["seq_classifer_mlpblock_2"]["kernel"].shape[-1]) if "seq_classifer_mlpblock_2" in params else 0
    table = _table(model_name, classes, freeze(settings))
    return state_dict_from_variables(table, {"params": params}, f"The variables do not fit mixtok's {model_name}")


def official_shapes(name: str, *, num_classes: int, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name` (no weights are made)."""
    return {e.key: e.official_shape for e in _table(resolve_name(name), num_classes, freeze(overrides))}


main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
