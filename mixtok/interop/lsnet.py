"""Converts the official LSNet checkpoints (jameslahm/lsnet) to mixtok variables and back.

    state_dict = load_state_dict("lsnet_t.pth")          # {'model': ...} is unwrapped; ema=True: 'model_ema'
    variables = convert("lsnet_t", state_dict)           # {'params': ..., 'batch_stats': ...}
    logits = create_model("lsnet_t").apply(variables, images_nhwc)   # eval: running statistics

or once, from the shell (then `load_variables(OUTPUT)`; exit code 2 and one `error:` report on bad input):

    python -m mixtok.interop.lsnet lsnet_t lsnet_t.pth lsnet_t.msgpack

The checkpoints are state dicts of model/lsnet.py's `LSNet` as main.py saves them: {'model', 'optimizer',
'lr_scheduler', 'epoch', 'model_ema', 'scaler', 'args'}; `main.py --resume` (the README's evaluation
command) loads checkpoint['model'], else checkpoint['state_dict'], else the file as a bare state dict, and
so do `load_state_dict` and the command line. `load_state_dict(path, ema=True)` takes checkpoint['model_ema']
(timm's ModelEma weights, the same keys) instead. Names: `lsnet_t`, `lsnet_s`, `lsnet_b` (main.py's --model).

Keys (s: stage 1-4, i: index in the official nn.Sequential `blocks{s}`; a later stage's first two entries are
its downsampling Conv2d_BNs, so its blocks start at 2):

    patch_embed.{0,2,4}.c.weight [O, I, 3, 3]   patch_embed_{0,2,4}/conv/kernel [3, 3, I, O]   (OIHW -> HWIO)
    patch_embed.0.bn.weight / .bias              patch_embed_0/bn/scale, /bias
    ....bn.running_mean / .running_var           batch_stats/.../bn/mean, /var
    ....bn.num_batches_tracked                   dropped (`to_official` writes 0; PyTorch reads it only when
                                                 training with momentum=None, and LSNet keeps 0.1)
    blocks{s}.{0,1}.c / .bn                      blocks{s}_{0,1}/conv, /bn         (downsampling, s > 1)
    blocks{s}.{i}.mixer.conv / .conv1 (.c, .bn)  blocks{s}_{i}/mixer/conv, /conv1  (RepVGGDW, even blocks)
    blocks{s}.{i}.se.fc1 / .fc2                  blocks{s}_{i}/se/fc1, /fc2
    blocks{s}.{i}.mixer.lkp.cv1..cv3 (.c, .bn)   blocks{s}_{i}/mixer/lkp/cv1..cv3   (LSConv, odd blocks, s < 4)
    blocks{s}.{i}.mixer.lkp.cv4, .lkp.norm       blocks{s}_{i}/mixer/lkp/cv4, /lkp/norm (GroupNorm)
    blocks{s}.{i}.mixer.bn                       blocks{s}_{i}/mixer/bn
    blocks4.{i}.mixer.m.qkv / .dw (.c, .bn)      blocks4_{i}/mixer/qkv, /dw         (Attention, odd blocks)
    blocks4.{i}.mixer.m.proj.1 (.c, .bn)         blocks4_{i}/mixer/proj
    blocks4.{i}.mixer.m.attention_biases         blocks4_{i}/mixer/attention_biases, the same array
    blocks4.{i}.mixer.m.attention_bias_idxs      not stored (mixtok computes it); checked when present,
                                                 written by `to_official`
    blocks{s}.{i}.ffn.m.pw1 / .pw2 (.c, .bn)     blocks{s}_{i}/pw1, /pw2
    head.bn.*, head.l.weight [classes, C]        head_bn/*, head_l/kernel [C, classes]

Resolution. The stage-4 attention's bias table fits one R x R map. `convert` reads R from
attention_biases [heads, R * R]: the model keeps its 224 px when R is 224 px's (4) and is otherwise built with
`image_size=64 * R` (a checkpoint fine-tuned at 384 px, R = 6, gets 384); pass `image_size=` to choose
another size with the same R. The class count is read from head.l.weight (`num_classes=` overrides); other
create_model arguments (dims, depths, ...) pass through `**overrides` for non-standard checkpoints.

Distilled checkpoints (lsnet_t_distill.pth ...; `head_dist.*` beside `head.*`): mixtok's LSNet has one head,
so `convert(..., distillation_head="average")` folds the two into one that gives the official eval output
(their mean), and "drop" keeps `head` alone; without either, convert names the keys and these options (the
command line converts plain checkpoints only).

Not ported: a headless model (official `num_classes=0` has no `head.*`; mixtok's LSNet always has its
BN-Linear head).

The official SKA (model/ska.py) is a Triton kernel written for CUDA, with no PyTorch fallback. On a CPU the
golden fixture (tests/fixtures/lsnet) runs that kernel itself under Triton's interpreter (TRITON_INTERPRET=1),
so the fixture comes from the unmodified official code. The full-size parity runs use tools/make_lsnet_fixtures.py's
`TorchSKA` instead (the interpreter is too slow for full-size maps): `F.unfold` of x times the per-pixel kernels,
channel c using kernel group c mod C/8 as the kernel's `w_off` indexes them, equal to the interpreted kernel
within 1e-6 on random inputs. SKA has no parameters, so the state dicts are the official ones either way.

Checked against the official code (jameslahm/lsnet @ cbe737c9, model/lsnet.py; torch 2.14 CPU, timm 1.0.31;
`python tools/make_lsnet_fixtures.py --official-repo LSNET --parity`): `LSNet(img_size=S, num_classes=1000,
...)` with lsnet_t's and lsnet_b's arguments, every parameter random (convs N(0, 1 / fan_in), biases N(0, 0.1),
norm weights U(0.5, 1.5), attention biases N(0, 1)) and every BatchNorm's running statistics those of its input
on 8 calibration images, layer by layer, then moved (means by N(0, 0.5^2) standard deviations, variances times
U(0.5, 1.5)), so that no map blows up and no parameter or statistic is negligible; saved as main.py saves a
checkpoint ({'model', 'model_ema', 'epoch', 'args'} .pth, the EMA copy with a doubled head weight), converted by
the command line, and run in eval mode on 2 other N(0, 1) images, seeds 0, 1, 2. Largest |mixtok - official|
logit difference over the seeds (relative: to the largest |logit| of that run):

    variant   image   largest |diff|   relative   (per seed 0 / 1 / 2)
    lsnet_t   224     7.1e-4           4.2e-5     1.9e-4 / 3.7e-4 / 7.1e-4; largest |logit| 9.2 / 21.9 / 16.8
    lsnet_t   384     3.4e-4           3.4e-5     3.4e-4 / 2.2e-4 / 1.6e-4; largest |logit| 9.9 / 12.2 / 7.7
    lsnet_b   224     3.6e-3           1.7e-4     3.6e-3 / 1.5e-3 / 8.9e-4; largest |logit| 20.4 / 13.7 / 7.9
    lsnet_b   384     4.0e-3           1.9e-4     4.0e-3 / 3.5e-3 / 4.1e-4; largest |logit| 20.8 / 21.4 / 9.4

(384 px: the official model built with img_size=384, a 6 x 6 stage-4 map; the command line read R = 6 from the
bias tables and built mixtok's model for 384 px.)

These are float32 rounding, which the random networks amplify (up to 2e-4 of the logits' scale): at 224 px,
seed 0, the official model itself in float32 is 2.1e-4 (lsnet_t) and 2.1e-3 (lsnet_b) from its float64 run,
mixtok in float32 2.6e-4 and 2.9e-3. Both in float64 (the official model `.double()`, mixtok with
jax_enable_x64 and dtype float64), lsnet_t's stage 1-3 maps agree within 1e-13 and its logits within 3.5e-6,
the rest being the stage-4 softmax, which mixtok.layers.attention computes in float32 whatever the dtype.
`load_state_dict(ema=True)` gave the EMA copy's logits (2 x logits - bias) within 3.8e-6. `to_official` of the
converted variables equals the official state dict (num_batches_tracked aside) and loads with strict=True.

The tiny golden fixture (96 px, every block kind, built with distillation=True, the official Triton SKA
interpreted) agrees within 7.4e-6 (logits up to 5.1), and its distilled eval output through
distillation_head="average" within 5.7e-6 (tests/interop/test_lsnet_import.py allows 1e-5 of each map's
scale); there, transposing the bias table's (dy, dx) offsets moves the logits by 1.1, and BatchNorm without its
running statistics by 8.
"""

import functools
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop import weight_files
from mixtok.interop.official import (
    BATCH_COUNTER,
    TORCH_LEAF_NAMES,
    build_table,
    command_line,
    freeze,
    state_dict_from_variables,
    variables_from_state_dict,
)
from mixtok.interop.weight_files import load_variables, save_variables, to_numpy, unwrap_state_dict
from mixtok.models import create_model, lsnet_variants, model_spec
from mixtok.models.lsnet import PATCH_SIZE, attention_bias_index
from mixtok.registry import unknown_name_error

__all__ = [
    "convert",
    "fold_distillation_head",
    "load_state_dict",
    "load_variables",
    "main",
    "official_shapes",
    "resolve_name",
    "save_variables",
    "to_official",
]

# main.py --resume loads checkpoint['model'], else checkpoint['state_dict'], else the bare state dict.
WRAPPER_KEYS = ("model", "state_dict")
EMA_KEY = "model_ema"
BATCH_NORM_EPSILON = 1e-5  # torch.nn.BatchNorm1d's default, which BN_Linear keeps
BIAS_INDEX = "attention_bias_idxs"
STAGE4_STRIDE = 64  # the stem's 8, then three stride-2 downsamplings
CLI_DESCRIPTION = (
    "Converts an official LSNet checkpoint (jameslahm/lsnet, .pth as main.py saves it; its 'model' weights) to "
    "mixtok variables (flax msgpack; read them back with mixtok.interop.lsnet.load_variables)."
)
CLI_NAME_HELP = "lsnet_t, lsnet_s, lsnet_b (main.py's --model)"


def resolve_name(name: str) -> str:
    """The mixtok name for `lsnet_t` / `lsnet_s` / `lsnet_b` (also written `lsnet-t`, ...)."""
    mixtok_name = name.replace("-", "_")
    if mixtok_name in lsnet_variants.SIZES:
        return mixtok_name
    raise unknown_name_error("LSNet variant", name, lsnet_variants.SIZES)


def load_state_dict(path, *, ema: bool = False) -> dict[str, np.ndarray]:
    """{key: numpy array} of an official checkpoint file: its 'model' (or 'state_dict') weights as main.py
    --resume loads them, or with `ema=True` its 'model_ema' weights (a ValueError when it has none)."""
    if not ema:
        return weight_files.load_state_dict(path, wrapper_keys=WRAPPER_KEYS)
    checkpoint = _torch_load(path)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get(EMA_KEY), Mapping):
        keys = sorted(checkpoint) if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise ValueError(
            f"{path} has no {EMA_KEY!r} state dict (main.py writes one unless run with --no-model-ema); it holds "
            f"{keys if len(str(keys)) < 200 else 'a bare state dict'}. Load it with ema=False for its weights."
        )
    return {k: to_numpy(v, k) for k, v in unwrap_state_dict(checkpoint[EMA_KEY], ()).items()}  # no 'module.'


def _torch_load(path) -> Any:
    """The whole object in a torch checkpoint file (as weight_files.load_state_dict reads it, before unwrapping)."""
    weight_files._check_file(str(path))
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"Reading the EMA weights of {path} needs PyTorch: pip install torch.") from e
    with weight_files._torch_safe_globals(torch):
        return torch.load(path, map_location="cpu", weights_only=True)


def _official_key(params: Mapping[str, Any], collection: str, path: tuple[str, ...], leaf: Any) -> tuple[str, str]:
    *module, leaf_name = path
    parts, node, parent = [], params, None
    for depth, part in enumerate(module):
        parent, node = node, node[part]
        if depth == 0:
            top = re.fullmatch(r"(patch_embed|blocks\d)_(\d+)", part)
            parts += [top[1], top[2]] if top else {"head_bn": ["head", "bn"], "head_l": ["head", "l"]}[part]
        elif part == "mixer" and "qkv" in node:  # Residual(Attention): the attention is its `m`
            parts += ["mixer", "m"]
        elif part in ("pw1", "pw2"):  # Residual(FFN)
            parts += ["ffn", "m", part]
        elif part == "proj":  # Sequential(ReLU, Conv2d_BN)
            parts += ["proj", "1"]
        elif part == "conv" and set(parent) == {"conv", "bn"}:  # a Conv2d_BN's convolution is its `c`
            parts.append("c")
        else:
            parts.append(part)
    layout = ("conv" if len(leaf.shape) == 4 else "linear") if leaf_name == "kernel" else "same"
    return ".".join(parts + [TORCH_LEAF_NAMES.get(leaf_name, leaf_name)]), layout


@functools.lru_cache(maxsize=32)
def _table(name: str, num_classes: int, overrides: tuple[tuple[str, Any], ...]):
    model = create_model(name, num_classes=num_classes, **dict(overrides))
    # Shapes only depend on image_size through the bias table, which the model sizes from image_size.
    size = model.image_size
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    )
    return build_table(
        {"params": shapes["params"], "batch_stats": shapes["batch_stats"]},
        functools.partial(_official_key, shapes["params"]),
    )


def stage4_resolution(image_size: int) -> int:
    """R, the side of the stage-4 map of an `image_size` image (the official `(r - 1) // 2 + 1` three times)."""
    resolution = image_size // PATCH_SIZE
    for _ in range(3):
        resolution = (resolution - 1) // 2 + 1
    return resolution


def _default_image_size(name: str, overrides: Mapping[str, Any]) -> int:
    spec = model_spec(name)
    return overrides.get("image_size", spec.kwargs.get("image_size", spec.cls.image_size))


def _image_size_of(name: str, arrays: Mapping[str, np.ndarray], overrides: Mapping[str, Any]) -> int:
    """The image size whose stage-4 map fits the checkpoint's attention bias tables (the default when it does)."""
    default = _default_image_size(name, overrides)
    tables = [v for k, v in arrays.items() if k.endswith(".attention_biases") and v.ndim == 2]
    resolution = math.isqrt(tables[0].shape[1]) if tables else 0
    if resolution == 0 or resolution * resolution != tables[0].shape[1] or resolution == stage4_resolution(default):
        return default  # no table, or not a square one: the shape check will say so
    return STAGE4_STRIDE * resolution


def _bias_index_keys(table) -> dict[str, str]:
    """{official attention_bias_idxs key: its attention_biases key}."""
    suffix = ".attention_biases"
    return {e.key[: -len(suffix)] + "." + BIAS_INDEX: e.key for e in table if e.key.endswith(suffix)}


def _check_bias_indices(arrays: Mapping[str, np.ndarray], table, what: str) -> None:
    """The stored attention_bias_idxs buffers must be the ones mixtok computes for the bias tables' R."""
    problems = []
    for index_key, biases_key in _bias_index_keys(table).items():
        if index_key not in arrays:
            continue
        resolution = math.isqrt(arrays[biases_key].shape[1])
        expected = attention_bias_index(resolution)
        got = arrays[index_key]
        if got.shape != expected.shape:
            problems.append(
                f"{index_key}: expected {expected.shape} (a {resolution}x{resolution} map), got {got.shape}"
            )
        elif not np.array_equal(got, expected):
            problems.append(f"{index_key}: not the official offset order |dy| * R + |dx| for R = {resolution}")
    if problems:
        raise ValueError(f"{what}: {len(problems)} problem(s).\n  " + "\n  ".join(problems))


def _hint(arrays: Mapping[str, Any]) -> str:
    if any(k.startswith("head_dist.") for k in arrays):
        return (
            " head_dist.* is the distillation head of a *_distill checkpoint, which mixtok's LSNet does not have: "
            "pass distillation_head='average' (the official eval output, folded into one head) or 'drop'."
        )
    if arrays and not any(k.startswith("head.") for k in arrays):
        return " The state dict has no head.* (an official num_classes=0 model); mixtok's LSNet always has its head."
    return ""


def fold_distillation_head(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state dict of a *_distill checkpoint with its two heads folded into one `head`, for evaluation.

    The official model evaluates (head(x) + head_dist(x)) / 2, both BN_Linear (BatchNorm1d, eps 1e-5, then
    Linear). In eval both BatchNorms are per-channel affine maps a * x + c, so the mean of the heads is one
    Linear, 0.5 * (W1 diag(a1) + W2 diag(a2)) x + 0.5 * (W1 c1 + b1 + W2 c2 + b2), after a BatchNorm that
    passes x through (weight 1, bias 0, mean 0, variance 1 - eps). Exact in eval (float32 rounding aside);
    training the result trains that folded form, and `to_official` gives a plain (non-distilled) state dict.
    """
    arrays = dict(arrays)
    linear = []
    for head in ("head", "head_dist"):
        weight = arrays.pop(f"{head}.bn.weight").astype(np.float64)
        scale = weight / np.sqrt(arrays.pop(f"{head}.bn.running_var").astype(np.float64) + BATCH_NORM_EPSILON)
        shift = arrays.pop(f"{head}.bn.bias") - arrays.pop(f"{head}.bn.running_mean") * scale
        arrays.pop(f"{head}.bn.{BATCH_COUNTER}", None)
        kernel, bias = arrays.pop(f"{head}.l.weight").astype(np.float64), arrays.pop(f"{head}.l.bias")
        linear.append((kernel * scale[None, :], kernel @ shift + bias))
    channels = linear[0][0].shape[1]
    arrays["head.bn.weight"] = np.ones(channels, np.float32)
    arrays["head.bn.bias"] = np.zeros(channels, np.float32)
    arrays["head.bn.running_mean"] = np.zeros(channels, np.float32)
    arrays["head.bn.running_var"] = np.full(channels, 1 - BATCH_NORM_EPSILON, np.float32)
    arrays["head.l.weight"] = (0.5 * (linear[0][0] + linear[1][0])).astype(np.float32)
    arrays["head.l.bias"] = (0.5 * (linear[0][1] + linear[1][1])).astype(np.float32)
    return arrays


def convert(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    distillation_head: str | None = None,
    **overrides,
) -> dict[str, Any]:
    """mixtok variables {'params': ..., 'batch_stats': ...} (float32 numpy) from an official LSNet state dict.

    `name`: `lsnet_t`, `lsnet_s` or `lsnet_b`. `state_dict`: the model's state dict or a checkpoint that wraps
    it ({'model': ...}, {'state_dict': ...}; 'module.' prefixes are dropped), values numpy arrays or torch
    tensors. A *_distill checkpoint (with `head_dist.*`) needs `distillation_head`: "average" folds the two
    heads into one that computes the official eval output (`fold_distillation_head`; eval only), "drop" keeps
    the `head` alone. `num_classes=None` reads the class count from head.l.weight; `image_size` defaults to the one the
    attention bias tables imply (see the module docstring); `overrides` go to `create_model`. Raises one
    ValueError listing every unexpected key, missing key and wrong shape.
    """
    model_name = resolve_name(name)
    arrays = {k: to_numpy(v, k) for k, v in unwrap_state_dict(state_dict, WRAPPER_KEYS).items()}
    if distillation_head not in (None, "average", "drop"):
        raise ValueError(f"distillation_head={distillation_head!r}; valid: None, 'average', 'drop'.")
    if distillation_head is not None and any(k.startswith("head_dist.") for k in arrays):
        if distillation_head == "average":
            arrays = fold_distillation_head(arrays)
        else:
            arrays = {k: v for k, v in arrays.items() if not k.startswith("head_dist.")}
    if num_classes is None:
        weight = arrays.get("head.l.weight")
        num_classes = 0 if weight is None else int(weight.shape[0])
    overrides["image_size"] = _image_size_of(model_name, arrays, overrides)
    table = _table(model_name, num_classes, freeze(overrides))
    uncounted = {e.key[: -len("running_mean")] + BATCH_COUNTER for e in table if e.key.endswith(".running_mean")}
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    what = f"The LSNet state dict does not fit mixtok's {model_name} ({settings})"
    variables = variables_from_state_dict(
        table, arrays, what, ignored=uncounted | set(_bias_index_keys(table)), hint=_hint(arrays)
    )
    _check_bias_indices(arrays, table, what)
    return variables


def to_official(name: str, variables: Mapping[str, Any], **overrides) -> dict[str, np.ndarray]:
    """The official state dict (numpy arrays, official layouts) from mixtok variables; the inverse of `convert`.

    Holds every key of the official `LSNet(...).state_dict()` (num_batches_tracked as 0, attention_bias_idxs as
    the official module computes it), so that `model.load_state_dict({k: torch.from_numpy(v) ...}, strict=True)`
    loads it. `image_size` defaults to the one the bias tables imply, as in `convert`.
    """
    model_name = resolve_name(name)
    if "params" not in variables:
        raise ValueError(
            f"to_official takes variables {{'params': ..., 'batch_stats': ...}}; got a mapping with "
            f"keys {sorted(variables)}."
        )
    variables = {c: nn.meta.unbox(variables[c]) for c in ("params", "batch_stats") if c in variables}
    kernel = variables["params"].get("head_l", {}).get("kernel")
    num_classes = 0 if kernel is None else int(kernel.shape[-1])
    tables = {
        f"{top}.attention_biases": np.asarray(module["mixer"]["attention_biases"])
        for top, module in variables["params"].items()
        if isinstance(module, Mapping) and "attention_biases" in module.get("mixer", {})
    }
    overrides["image_size"] = _image_size_of(model_name, tables, overrides)
    table = _table(model_name, num_classes, freeze(overrides))
    settings = ", ".join(f"{k}={v}" for k, v in {"num_classes": num_classes, **overrides}.items())
    arrays = state_dict_from_variables(table, variables, f"The variables do not fit mixtok's {model_name} ({settings})")
    return _with_buffers(arrays, table, np.array(0, np.int64), lambda r: attention_bias_index(r).astype(np.int64))


def official_shapes(name: str, *, num_classes: int = 1000, **overrides) -> dict[str, tuple[int, ...]]:
    """{official key: shape} of the official state dict of `name`, as `to_official` writes it (no weights are made)."""
    table = _table(resolve_name(name), num_classes, freeze(overrides))
    return _with_buffers({e.key: e.official_shape for e in table}, table, (), lambda r: (r * r, r * r))


def _with_buffers(by_key: dict[str, Any], table, uncounted: Any, bias_index) -> dict[str, Any]:
    """`by_key` with the buffers mixtok does not store, where the official state_dict() has them: BatchNorm's
    num_batches_tracked after each running_var, each attention's attention_bias_idxs after its biases."""
    indices = {biases: index for index, biases in _bias_index_keys(table).items()}
    shapes = {e.key: e.shape for e in table}
    result = {}
    for key, value in by_key.items():
        result[key] = value
        if key.endswith(".running_var"):
            result[key[: -len("running_var")] + BATCH_COUNTER] = uncounted
        elif key in indices:
            result[indices[key]] = bias_index(math.isqrt(shapes[key][1]))
    return result


def cli_summary(variables: dict[str, Any]) -> str:
    classes = variables["params"]["head_l"]["kernel"].shape[-1]
    statistics = sum(leaf.size for leaf in jax.tree.leaves(variables["batch_stats"]))
    return f" ({classes} classes) and {statistics:,} BatchNorm statistics"


# python -m mixtok.interop.lsnet --help. Exit codes (official.run_cli): 0 written; 2 a user error, with one
# `error:` report on stderr (an unknown name, a missing checkpoint, an existing output, a state dict that does not
# fit: every key and shape) or bad arguments; 1 only for an unexpected fault (a traceback).
CLI_EMA = True  # --ema: the EMA weights the training script saved (load_state_dict(path, ema=True))
main = command_line(__name__)


if __name__ == "__main__":
    sys.exit(main())
