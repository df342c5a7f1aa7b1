"""Converts the official WaveMix ImageNet weights (pranavphoenix/WaveMix) to mixtok variables and back.

    state_dict = load_state_dict("wavemix_192_16_75.06.pth")
    variables = convert("wavemix_192_16", state_dict)        # {'params': ..., 'batch_stats': ...}
    logits = create_model("wavemix_192_16").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`):

    python -m mixtok.interop.wavemix wavemix_192_16 wavemix_192_16_75.06.pth wavemix_192_16.msgpack

(exit code 0 when written; 2 for bad input or arguments, with one `error:` message on stderr: an unknown name
lists the close matches, a state dict that does not fit lists every unexpected, missing and misshaped key; as
every importer's command line, official.run_cli.)

Released weights (pranavphoenix/WaveMix @ ba3d1b42 Saved_weights/ImageNet/*.py, files on huggingface.co/cloudwalker/
wavemix): each script builds wavemix/classification.py's `WaveMix` and calls
`model.load_state_dict(torch.hub.load_state_dict_from_url(url))`, so each file is a bare state dict of that model:

    mixtok name             script (Saved_weights/ImageNet/)     weight file
    wavemix_192_16          wavemix_28M_75.06.py                 wavemix_192_16_75.06.pth
    wavemix_192_16_level1   wavemix_12M_71.18.py                 wavemixlite_71.18.pth
    wavemix_256_16          wavemix_73.py                        ImageNet73.03.pth
    wavemix_256_16_level4   wavemix_level4_imagenet_70.42.py     imagenet4level_70.42.pth

Names are mixtok's, the script names (`wavemix_28M_75.06`), or Image_Classification/timm.py's `wavemix` and
`wavemix_lite` (its default_cfgs point at the first two files). (The files were not downloaded here.)

mixtok's WaveMix names its modules after the official ones:

    conv.{0,1,2}.weight / .bias             conv_{0,1,2}/kernel, /bias           (conv OIHW -> HWIO)
    conv.4.weight / .bias                   conv_4/scale, /bias                  (the stem's BatchNorm, 'pachify')
    conv.4.running_mean / _var              batch_stats conv_4/mean, /var
    layers.i.reduction.*                    layers_i/reduction/*
    layers.i.feedforward{j}.0.*             layers_i/feedforward{j}/expand/*     (j empty at level 1)
    layers.i.feedforward{j}.3.*             layers_i/feedforward{j}/project/*
    layers.i.feedforward{j}.4.weight        layers_i/feedforward{j}/upsample/kernel   (ConvTranspose2d [in, out,
                                            k, k] -> [k, k, out, in]: the same permutation as a Conv2d weight)
    layers.i.feedforward{j}.5.*             layers_i/feedforward{j}/norm/*       (BatchNorm; batch_stats too)
    pool.2.weight / .bias                   head/kernel, /bias                   (Linear [out, in] -> [in, out])
    *.num_batches_tracked                   dropped (`to_official` writes 0)

Image_Classification/timm.py's copy of the model names the classifier `head` (head.2.*); `convert` accepts that
naming too. The class count is read from pool.2.weight (`num_classes=` overrides; no classifier: 0). No parameter
depends on the resolution. Other create_model arguments (depths, dims, levels, stem, ...) pass through
`**overrides`.

Checked against the official code (pranavphoenix/WaveMix @ ba3d1b42 wavemix/__init__.py and classification.py,
unmodified, with its in-file DWT; its unused `from numpy.lib.function_base import hamming`, which numpy 2 removed,
stubbed; PyTorch 2.14 CPU, PyWavelets 1.9) with

    PYTHONPATH=. python tools/make_wavemix_fixtures.py --official-repo WaveMix --parity --seeds 3

The official models are built as the Saved_weights scripts build them; every parameter and BatchNorm buffer is
random (weights N(0, 1 / fan_in), biases N(0, 0.1^2), BatchNorm weights U(0.5, 1.5); running statistics calibrated
on a random batch, then each variance scaled by U(0.5, 1.5) and each mean moved by N(0, 0.2^2) standard
deviations: the tool's `randomise_`). Eval logits on a random batch of 2 are compared with mixtok's (float32, CPU,
jit) after `convert(name, model.state_dict())`, for seeds 0, 1, 2:

    variant                 size    largest max-abs logit error    relative to the largest logit
    wavemix_192_16          224 px  1.2e-6                         4.0e-7
    wavemix_192_16_level1   224 px  1.3e-6                         4.2e-7
    wavemix_256_16          224 px  1.5e-6                         4.4e-7
    wavemix_256_16_level4   256 px  1.7e-6                         5.4e-7

(2026-12-07; 256 px for the level-4 model, whose official forward fails at 224.) mixtok's model needed no change;
the converted variables have exactly the official parameter counts (27,857,608 / 12,494,536 / 49,416,808 /
62,764,776, read from the same builds).

`official_shapes` equals the official state dict's keys and shapes for all four variants, and `to_official` of
converted variables equals the official state dict (num_batches_tracked written as 0) and loads with strict=True.
tests/interop/test_wavemix_import.py checks tiny official models (golden fixtures in tests/fixtures/wavemix)
without torch.
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
    BATCH_COUNTER,
    TORCH_LEAF_NAMES,
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
    with_batch_counters,
)
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model
from mixtok.models.wavemix_variants import SIZES
from mixtok.registry import unknown_name_error

__all__ = [
    "convert",
    "load_state_dict",
    "load_variables",
    "main",
    "official_shapes",
    "resolve_name",
    "save_variables",
    "to_official",
]

# Saved_weights/ImageNet script names and Image_Classification/timm.py's registered names -> mixtok names.
OFFICIAL_NAMES = {
    **{spec[0]: name for name, spec in SIZES.items()},
    "wavemix": "wavemix_192_16",
    "wavemix_lite": "wavemix_192_16_level1",
}
CLI_DESCRIPTION = (
    "Converts an official WaveMix ImageNet state dict (pranavphoenix/WaveMix, .pth) to mixtok variables (flax "
    "msgpack; read them back with mixtok.interop.wavemix.load_variables). Exit codes: 0 written, 2 bad input or "
    "arguments."
)
CLI_NAME_HELP = (
    "wavemix_192_16, wavemix_192_16_level1, wavemix_256_16, wavemix_256_16_level4 (or the Saved_weights script "
    "name, e.g. wavemix_28M_75.06, or timm.py's wavemix / wavemix_lite)"
)
# The official nn.Sequential index of each feed-forward layer (wavemix/__init__.py Level*Waveblock).
FEED_FORWARD_INDEX = {"expand": "0", "project": "3", "upsample": "4", "norm": "5"}
CLASSIFIER = "pool.2"  # wavemix/classification.py: pool = Sequential(AdaptiveAvgPool2d, Rearrange, Linear)
TIMM_CLASSIFIER = "head.2"  # Image_Classification/timm.py names the same Sequential `head`


def resolve_name(name: str) -> str:
    """The mixtok name for a mixtok name, a Saved_weights script name or timm.py's `wavemix` / `wavemix_lite`."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in SIZES:
        return mixtok_name
    if mixtok_name in OFFICIAL_NAMES:
        return OFFICIAL_NAMES[mixtok_name]
    raise unknown_name_error("WaveMix variant", name, list(SIZES) + list(OFFICIAL_NAMES))


def _official_parts(part: str) -> list[str]:
    """The official key's parts for one mixtok module name: `layers_3` -> layers.3, `conv_4` -> conv.4."""
    if match := re.fullmatch(r"(layers|conv)_(\d+)", part):
        return [match[1], match[2]]
    if part == "head":
        return CLASSIFIER.split(".")
    return [FEED_FORWARD_INDEX.get(part, part)]


def _official_key(collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts = [p for part in module for p in _official_parts(part)]
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    side = model.stem_reduction * 2**model.levels  # the smallest input: no parameter depends on the resolution
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32))
    )
    return build_table({"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}, _official_key)


def _settings(num_classes: int, overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())


def convert(name: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None, **overrides) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official WaveMix state dict.

    `name`: a mixtok name, a Saved_weights script name or timm.py's. `state_dict`: the model's state dict (a
    wrapping {'state_dict': ...} or {'model': ...} and 'module.' prefixes are removed; timm.py's head.2.* is read as
    pool.2.*), values numpy arrays or torch tensors. `num_classes=None` reads the class count from pool.2.weight;
    `overrides` go to `create_model`. Raises one ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict).items()}
    if not any(k.startswith(CLASSIFIER + ".") for k in arrays):
        timm_prefix = TIMM_CLASSIFIER + "."
        arrays = {
            CLASSIFIER + k[len(TIMM_CLASSIFIER) :] if k.startswith(timm_prefix) else k: v for k, v in arrays.items()
        }
    if num_classes is None:
        weight = arrays.get(CLASSIFIER + ".weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    table = _table(model_name, num_classes, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    return variables_from_state_dict(
        table,
        arrays,
        f"The WaveMix state dict does not fit mixtok's {model_name} ({_settings(num_classes, overrides)})",
        ignored=uncounted,
    )


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `WaveMix(...).state_dict()`, num_batches_tracked as 0, so that
    `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)` loads it.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(
            f"to_official takes variables {{'params': ..., 'batch_stats': ...}}; got a mapping with "
            f"keys {sorted(variables)}."
        )
    variables = {c: nn.meta.unbox(variables[c]) for c in ("params", "batch_stats") if c in variables}
    kernel = variables["params"].get("head", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    table = _table(model_name, num_classes, freeze(overrides))
    what = f"The variables do not fit mixtok's {model_name} ({_settings(num_classes, overrides)})"
    return with_batch_counters(state_dict_from_variables(table, variables, what), np.array(0, np.int64))


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, freeze(overrides))
    return with_batch_counters({e.key: e.official_shape for e in table}, ())


def cli_summary(variables: dict[str, Any]) -> str:
    params = variables["params"]
    classes = params["head"]["kernel"].shape[-1] if "head" in params else 0
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes) and {statistics:,} BatchNorm statistics"


main = command_line(__name__)  # the importers' shared command line (official.run_cli)


if __name__ == "__main__":
    sys.exit(main())
