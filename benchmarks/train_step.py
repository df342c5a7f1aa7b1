r"""One full training step (forward, backward, AdamW update) of named models, as mixtok's trainer runs it.

    python benchmarks/train_step.py                                   # every family's smallest variant
    python benchmarks/train_step.py --models caformer_s18 --batch 64 --dtype bfloat16
    python benchmarks/train_step.py --models poolformer_s12 --against timm --torch-compile --markdown
    python benchmarks/train_step.py --models poolformer_s12 --batch 2 --size 32 --tiny   # a smoke run

The step is the trainer's own (`mixtok.train.steps.make_train_step` with `ClassificationTask` and the
AdamW of `mixtok.train.optimizer`, the state made by `create_train_state`): cross-entropy with label
smoothing 0.1, stochastic depth / dropout as the variant's defaults, weight decay 0.05 on weights
of two or more dimensions, on one device, with the state donated from step to step. Data: random
images and labels (seed 0).

Prints one row per model: parameters; forward FLOPs per image and train-step FLOPs per image from
XLA's cost analysis of the compiled programs; the paper's GMACs per image where the variant's source
states them (PAPER_GMACS) and XLA's forward FLOPs / (2 x GMACs), which should be near 1 at the
stated resolution; the median step time over `--repeats` timed steps (after one compiling step and
`--warmup` more, `block_until_ready`), images/s, and MFU = train-step FLOPs / step time / the
device's peak. The peak: on an NVIDIA GPU, from the device kind (GPU_PEAK_TFLOPS; an unknown kind
gives no MFU); on a CPU, a float32 GEMM rate measured on the same machine just before (MFU is
then against that measured rate, which the table's title states).

`--against timm` also times timm's model of the same name (the registry's `timm_name`; '-' where
timm has none) in the same process, on the same images and labels: a torch AdamW step (timm's
`create_optimizer_v2`, which exempts biases and norm weights from weight decay as mixtok does)
with the same learning rate, weight decay and label smoothing, in eager mode and, with
`--torch-compile`, with `torch.compile(model)` ('-' where it fails). The torch steps are timed in
turns with mixtok's (jax, torch, jax, torch, ...), so load on a shared machine slows both alike;
torch keeps its default thread count, and runs in whichever memory format (contiguous or
channels_last, as timm recommends for convnets) was faster in one trial step, which the notes say.
On a CPU, or on a GPU without torch CUDA, timm runs in float32 whatever `--dtype` is (bf16 autocast
on CPU is not what PyTorch users train with); on CUDA it runs `--dtype` under `torch.autocast`.
The ratios are mixtok images/s over timm images/s (> 1: mixtok faster). On a GPU, JAX then does
not preallocate its memory (XLA_PYTHON_CLIENT_PREALLOCATE=false) so torch fits beside it, and torch
runs with cudnn.benchmark on, as timm's train.py does. On an oversubscribed CPU (more runnable jobs
than cores) torch's OpenMP threads wait on one another and its eager step can be ten times slower
than with one thread (seen on the shared 2-core development machine): compare on a quiet machine.

MFU on a GPU in float32 is against the fp32 non-tensor-core peak; XLA may run float32 matmuls on
tensor cores as TF32, so it can then exceed what that peak suggests.

`--tiny` shrinks each model to one block per stage (its widths, mixers and norms unchanged, and
timm's model alike) for smoke runs; its FLOPs are then not the paper's.

Imports: only jax, flax, optax, numpy and mixtok's models, parallel and train-step modules; torch
and timm only with `--against timm`. Importing `mixtok.train.steps` runs `mixtok/train/__init__.py`,
which imports the whole trainer (grain via mixtok.data, ml_collections, orbax, tqdm, tensorboardX);
where those are not installed (a bare GPU image), `trainer_pieces` loads the four modules the step
needs without that package init (see its docstring).

Record results, with the command, in benchmarks/RESULTS.md.
"""

import argparse
import contextlib
import dataclasses
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import sys
import time
import types
from pathlib import Path

if importlib.util.find_spec("mixtok") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from timing import interleaved_median_seconds  # noqa: E402

from mixtok import host_memory  # noqa: E402
from mixtok.models import count_params, create_model, list_models, model_spec  # noqa: E402
from mixtok.parallel import batch_sharding, create_mesh, rules_from_config  # noqa: E402
from mixtok.registry import unknown_name_error  # noqa: E402

# The smallest named variant of every family.
DEFAULT_MODELS = (
    "poolformer_s12",
    "poolformerv2_s12",
    "convformer_s18",
    "caformer_s18",
    "gfnet_ti",
    "affnet_et",
    "davit_tiny",
    "cas_vit_xs",
    "ffnet_1",
    "iformer_s",
    "lsnet_t",
    "transnext_micro",
)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
NUM_CLASSES = 1000
SEED = 0
LABEL_SMOOTHING = 0.1
# The MetaFormer recipe's AdamW (experiments/configs/imagenet/*.py), as `create_optimizer` reads it.
OPTIMIZER = dict(
    name="adamw", lr=1e-3, warmup_steps=100, min_lr=1e-5, weight_decay=0.05, b1=0.9, b2=0.999, eps=1e-8, grad_clip=0.0
)
TOTAL_STEPS = 10_000  # the schedule's length; it changes the learning rate, not the step's cost

# GMACs per image that each variant's source states, at the resolution it states (px). Papers and
# READMEs call them "FLOPs" but count multiply-adds (fvcore / thop), so XLA's FLOPs should be
# about twice them.
PAPER_GMACS = {
    # sail-sg/metaformer README ("MACs" column), 224 px; poolformer_s12: timm's model card
    # (huggingface.co/timm/poolformer_s12.sail_in1k, "GMACs: 1.8").
    "poolformer_s12": (1.8, 224),
    "poolformerv2_s12": (1.8, 224),
    "poolformerv2_s24": (3.4, 224),
    "poolformerv2_s36": (5.0, 224),
    "poolformerv2_m36": (8.8, 224),
    "poolformerv2_m48": (11.5, 224),
    "identityformer_s12": (1.8, 224),
    "randformer_s12": (1.9, 224),
    "convformer_s18": (3.9, 224),
    "convformer_s36": (7.6, 224),
    "convformer_m36": (12.8, 224),
    "convformer_b36": (22.6, 224),
    "caformer_s18": (4.1, 224),
    "caformer_s36": (8.0, 224),
    "caformer_m36": (13.2, 224),
    "caformer_b36": (23.2, 224),
    # raoyongming/GFNet README, "FLOPs" column, 224 px.
    "gfnet_ti": (1.3, 224),
    "gfnet_xs": (2.8, 224),
    "gfnet_s": (4.5, 224),
    "gfnet_b": (7.9, 224),
    "gfnet_h_ti": (2.0, 224),
    "gfnet_h_s": (4.5, 224),
    "gfnet_h_b": (8.4, 224),
    # The variants' docstrings in mixtok/models/*_variants.py (their READMEs / official docstrings).
    "affnet_et": (0.4, 256),
    "affnet_t": (0.8, 256),
    "affnet": (1.5, 256),
    "davit_tiny": (4.5, 224),
    "davit_small": (8.8, 224),
    "davit_base": (15.5, 224),
    "ffnet_1": (2.9, 256),
    "iformer_s": (4.849, 224),
    "iformer_b": (9.379, 224),
    "iformer_l": (14.048, 224),
    "lsnet_t": (0.3, 224),
    "lsnet_s": (0.5, 224),
    "lsnet_b": (1.3, 224),
    # DaiShiResearch/TransNeXt README, "#FLOPs" column, 224 px.
    "transnext_micro": (2.7, 224),
    "transnext_tiny": (5.7, 224),
    "transnext_small": (10.3, 224),
    "transnext_base": (18.4, 224),
}

# Dense peak TFLOP/s by compute dtype, from NVIDIA's datasheets ("NVIDIA H100 Tensor Core GPU"
# datasheet: BF16 Tensor Core 1,979 TFLOPS for SXM and 1,513 for PCIe, quoted with sparsity, so
# 989 and 756 dense; FP32 67 (SXM) and 51 (PCIe). The H200 (SXM) datasheet gives the H100 SXM's
# compute). Matched as substrings of jax's `device_kind` ("NVIDIA H100 80GB HBM3" is the SXM part),
# first match wins; None: a part whose peak is not in this table (no MFU).
GPU_PEAK_TFLOPS = (
    ("H100 NVL", None),
    ("H200 NVL", None),
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 51.0}),
    ("H100", {"bfloat16": 989.0, "float32": 67.0}),
    ("H200", {"bfloat16": 989.0, "float32": 67.0}),
)
GEMM_SIZE = 2048  # the CPU's measured peak: a jitted GEMM_SIZE^2 float32 matmul, best of GEMM_REPEATS
GEMM_REPEATS = 5

COLUMNS = (
    "model",
    "params",
    "GFLOP/img (XLA)",
    "train GFLOP/img (XLA)",
    "paper GMACs",
    "XLA/(2*GMACs)",
    "step ms",
    "img/s",
    "MFU %",
    "timm eager img/s",
    "ratio",
    "timm compile img/s",
    "ratio",
)
# Modules the trainer's package init imports that a bare GPU image may lack (trainer_pieces).
TRAINER_EXTRAS = ("grain", "ml_collections", "orbax", "tqdm", "tensorboardX", "array_record")


class UsageError(Exception):
    """A bad command line: reported as one `error:` line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit 2 (argparse prints the usage too)
        raise UsageError(message)


class _Fields(dict):
    """The optimizer block of a training config, read as `create_optimizer` reads a ConfigDict."""

    __getattr__ = dict.__getitem__


# --------------------------------------------------------------------------------- the trainer's step


def trainer_pieces() -> tuple[type, object, types.ModuleType, list[str]]:
    """(ClassificationTask, create_optimizer, mixtok.train.steps, the missing modules worked around).

    With the trainer's dependencies installed these are plain imports. Without them (ImportError
    of one of TRAINER_EXTRAS), `mixtok.train` and `mixtok.train.tasks` are entered as bare packages
    (their `__init__`s, which import the whole trainer, are not run) and only optimizer.py,
    tasks/base.py, tasks/classification.py and steps.py are imported from them. Those import
    `ml_collections.ConfigDict` and `mixtok.data.DatasetInfo` (which imports grain) for their
    annotations and for building a task from a config, which this benchmark does not do; where
    the real ones cannot be imported, stand-ins that cannot be used are put in their place.
    """
    try:
        from mixtok.train import steps
        from mixtok.train.optimizer import create_optimizer
        from mixtok.train.tasks.classification import ClassificationTask

        return ClassificationTask, create_optimizer, steps, []
    except ImportError as error:
        if (error.name or "").split(".")[0] not in TRAINER_EXTRAS:
            raise
    missing = []
    root = Path(importlib.util.find_spec("mixtok").origin).parent / "train"
    for name, folder in (("mixtok.train", root), ("mixtok.train.tasks", root / "tasks")):
        if name not in sys.modules:  # a package init that failed is not left in sys.modules
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    for module, attribute in (("ml_collections", "ConfigDict"), ("mixtok.data", "DatasetInfo")):
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(error.name or module)
            stand_in = types.ModuleType(module)
            setattr(stand_in, attribute, type(attribute, (), {"__init__": _unavailable(module, error.name)}))
            sys.modules[module] = stand_in
    base = importlib.import_module("mixtok.train.tasks.base")
    sys.modules["mixtok.train.tasks"].Task = base.Task  # what steps.py imports from the package
    classification = importlib.import_module("mixtok.train.tasks.classification")
    optimizer = importlib.import_module("mixtok.train.optimizer")
    steps = importlib.import_module("mixtok.train.steps")
    return classification.ClassificationTask, optimizer.create_optimizer, steps, sorted(set(missing))


def _unavailable(module, missing):
    def init(self, *args, **kwargs):
        raise ImportError(f"{module} could not be imported ({missing} is not installed); train_step.py does not use it")

    return init


def tiny_overrides(name: str) -> dict:
    """Model arguments that give `name` one block per stage (a stage of none keeps none).

    Per-block tuples (iFormer's attention heads per block) keep each stage's first block.
    """
    kwargs = model_spec(name).kwargs
    if "depths" not in kwargs:
        raise ValueError(f"--tiny needs a variant with a `depths` argument; {name} has {sorted(kwargs)}.")
    depths = tuple(kwargs["depths"])
    overrides = {"depths": tuple(min(d, 1) for d in depths)}
    total = sum(depths)
    starts = [sum(depths[:i]) for i in range(len(depths))]
    for key, value in kwargs.items():
        if key != "depths" and isinstance(value, tuple) and len(value) == total != len(depths):
            overrides[key] = tuple(value[s] for s, d in zip(starts, depths) if d)
    return overrides


def model_overrides(name: str, size: int, tiny: bool) -> dict:
    """`--tiny`'s depths, and `image_size=size` for the variants built for one size (position embeddings)."""
    overrides = tiny_overrides(name) if tiny else {}
    if "image_size" in {field.name for field in dataclasses.fields(model_spec(name).cls)}:
        overrides["image_size"] = size
    return overrides


def xla_flops(compiled) -> float:
    """FLOPs of a compiled program from XLA's cost analysis (a dict, or a list of one per device); nan if none."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = float((cost or {}).get("flops", math.nan))
    return flops if flops > 0 else math.nan


class MixtokStep:
    """The trainer's jitted train step of one model, compiled; `step()` runs one and blocks on it."""

    def __init__(self, pieces, name, images, labels, dtype, overrides):
        ClassificationTask, create_optimizer, steps, _ = pieces
        size = images.shape[1]
        model = create_model(name, num_classes=NUM_CLASSES, dtype=dtype, **overrides)
        task = ClassificationTask(model, NUM_CLASSES, LABEL_SMOOTHING)
        tx, schedule = create_optimizer(_Fields(OPTIMIZER), TOTAL_STEPS)
        mesh, rules = create_mesh(devices=jax.devices()[:1]), rules_from_config(None)
        layout = steps.abstract_train_state(task, tx, size, mesh, rules)
        init_rng, self.step_rng = steps.seed_rngs(SEED)
        self.state = steps.create_train_state(task, tx, init_rng, size, layout)
        sharding = batch_sharding(mesh, rules)
        self.batch = steps.put_batch({"image": images, "label": labels}, sharding)
        variables = {"params": self.state.params, **self.state.other_variables}
        self.params = count_params(variables)
        forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
        self.forward_flops = xla_flops(forward.lower(variables, self.batch["image"]).compile())
        train_step = steps.make_train_step(task, tx, schedule, layout, sharding)
        self.compiled = train_step.lower(self.state, self.batch, self.step_rng).compile()
        self.train_flops = xla_flops(self.compiled)

    def step(self):
        self.state, metrics = self.compiled(self.state, self.batch, self.step_rng)  # donates the old state
        jax.block_until_ready((self.state, metrics))
        return metrics


# --------------------------------------------------------------------------------- timm (PyTorch)


class TimmSteps:
    """timm's model of a variant: eager (and optionally torch.compile) AdamW steps on the same data."""

    def __init__(self, timm_name, images, labels, dtype_name, tiny, compile_too):
        import timm
        import torch
        from timm.optim import create_optimizer_v2

        self.torch = torch
        torch.manual_seed(SEED)
        on_gpu = jax.devices()[0].platform == "gpu"
        if on_gpu and not torch.cuda.is_available():
            raise RuntimeError("torch has no CUDA here, and a CPU baseline would not compare with the GPU")
        self.device = torch.device("cuda" if on_gpu else "cpu")
        torch.backends.cudnn.benchmark = True  # as timm's train.py sets it
        self.dtype = dtype_name if on_gpu else "float32"
        self.model = timm.create_model(timm_name, pretrained=False, num_classes=NUM_CLASSES)
        if tiny:
            _one_block_per_stage(self.model, timm_name)
        self.model.to(self.device).train()
        self.optimizer = create_optimizer_v2(
            self.model,
            opt="adamw",
            lr=OPTIMIZER["lr"],
            weight_decay=OPTIMIZER["weight_decay"],
            eps=OPTIMIZER["eps"],
            betas=(OPTIMIZER["b1"], OPTIMIZER["b2"]),
        )
        self.loss = torch.nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
        self.images = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(self.device)
        self.labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self.memory_format = self._pick_memory_format()
        self.compiled, self.compile_error = None, None
        if compile_too:
            try:
                self.compiled = torch.compile(self.model)
                self._step(self.compiled)  # compiles now, so a failure is caught here
            except Exception as error:  # any backend failure: report '-' and go on
                self.compiled, self.compile_error = None, _first_line(error)

    def _autocast(self):
        if self.dtype == "bfloat16":
            return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def _step(self, model):
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.loss(model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _pick_memory_format(self) -> str:
        """Puts model and images in the faster of contiguous and channels_last (one untimed, one timed step each)."""
        formats = {"contiguous": self.torch.contiguous_format, "channels_last": self.torch.channels_last}
        seconds = {}
        for name, memory_format in formats.items():
            self._set_memory_format(memory_format)
            self._step(self.model)
            start = time.perf_counter()
            self._step(self.model)
            seconds[name] = time.perf_counter() - start
        best = min(seconds, key=seconds.get)
        self._set_memory_format(formats[best])
        return best

    def _set_memory_format(self, memory_format):
        self.model.to(memory_format=memory_format)
        self.images = self.images.contiguous(memory_format=memory_format)

    def eager_step(self):
        self._step(self.model)

    def compiled_step(self):
        self._step(self.compiled)


def _one_block_per_stage(model, timm_name):
    """`--tiny` for a timm model: each stage's `blocks` (a Sequential) cut to its first block, as mixtok's."""
    stages = list(getattr(model, "stages", []))
    if not stages or not all(hasattr(stage, "blocks") for stage in stages):
        raise RuntimeError(f"--tiny cannot shrink timm's {timm_name}: it has no stages[i].blocks")
    for stage in stages:
        stage.blocks = stage.blocks[:1]


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


# --------------------------------------------------------------------------------- device peak


def measured_gemm_tflops(n: int = GEMM_SIZE, repeats: int = GEMM_REPEATS) -> float:
    """This machine's float32 GEMM rate in TFLOP/s: a jitted n x n matmul, the best of `repeats`."""
    keys = jax.random.split(jax.random.PRNGKey(SEED))
    a, b = (jax.random.normal(k, (n, n), jnp.float32) for k in keys)
    matmul = jax.jit(jnp.matmul).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def device_peak(dtype_name: str) -> tuple[float | None, str]:
    """(peak TFLOP/s for MFU or None, how it was found) for the first device at `dtype_name`."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        tflops = measured_gemm_tflops()
        return tflops, (
            f"measured float32 GEMM rate of this CPU, {tflops * 1e3:.1f} GFLOP/s "
            f"(jitted {GEMM_SIZE}x{GEMM_SIZE} matmul, best of {GEMM_REPEATS})"
        )
    for kind, peaks in GPU_PEAK_TFLOPS:
        if kind in device.device_kind:
            if peaks is None:
                break
            precision = "bf16 dense tensor-core" if dtype_name == "bfloat16" else "fp32 non-tensor-core"
            return peaks[dtype_name], f"{peaks[dtype_name]:.0f} TFLOP/s, {kind} {precision} (NVIDIA datasheet)"
    return None, f"unknown for device kind {device.device_kind!r}: no MFU (add it to GPU_PEAK_TFLOPS)"


# --------------------------------------------------------------------------------- the table


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _num(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def bench_model(name, args, pieces, images, labels, peak_tflops) -> tuple[dict, list[str]]:
    """One row of the table (as JSON-ready values) and its notes."""
    notes = []
    spec = model_spec(name)
    overrides = model_overrides(name, args.size, args.tiny)
    mixtok = MixtokStep(pieces, name, images, labels, DTYPES[args.dtype], overrides)
    row = dict(
        model=name,
        params=mixtok.params,
        fwd_gflop_per_image=mixtok.forward_flops / args.batch / 1e9,
        train_gflop_per_image=mixtok.train_flops / args.batch / 1e9,
        train_step_gflop=mixtok.train_flops / 1e9,
        paper_gmacs=None,
        paper_resolution=None,
        flops_over_2macs=None,
        step_ms=None,
        images_per_second=None,
        mfu_percent=None,
        timm_name=spec.timm_name,
        timm_memory_format=None,
        timm_dtype=None,
        timm_eager_images_per_second=None,
        ratio_eager=None,
        timm_compile_images_per_second=None,
        ratio_compile=None,
    )
    if name in PAPER_GMACS:
        gmacs, resolution = PAPER_GMACS[name]
        row.update(paper_gmacs=gmacs, paper_resolution=resolution)
        if resolution == args.size and not args.tiny:
            row["flops_over_2macs"] = row["fwd_gflop_per_image"] / (2 * gmacs)
    stepped = {"mixtok": mixtok.step}
    timm_steps = None
    if args.against == "timm" and spec.timm_name:
        try:
            timm_steps = TimmSteps(spec.timm_name, images, labels, args.dtype, args.tiny, args.torch_compile)
        except Exception as error:  # a timm model that cannot be built or run: '-' and a note
            notes.append(f"{name}: timm's {spec.timm_name} did not run ({_first_line(error)})")
        if timm_steps is not None:
            stepped["timm eager"] = timm_steps.eager_step
            row.update(timm_memory_format=timm_steps.memory_format, timm_dtype=timm_steps.dtype)
            if timm_steps.compiled is not None:
                stepped["timm compile"] = timm_steps.compiled_step
            elif args.torch_compile:
                notes.append(f"{name}: torch.compile failed ({timm_steps.compile_error})")
    seconds = interleaved_median_seconds(stepped, args.repeats, args.warmup)
    row["step_ms"] = seconds["mixtok"] * 1e3
    row["images_per_second"] = args.batch / seconds["mixtok"]
    if peak_tflops and math.isfinite(mixtok.train_flops):
        row["mfu_percent"] = 100 * mixtok.train_flops / seconds["mixtok"] / (peak_tflops * 1e12)
    for key, column in (("timm eager", "eager"), ("timm compile", "compile")):
        if key in seconds:
            row[f"timm_{column}_images_per_second"] = args.batch / seconds[key]
            row[f"ratio_{column}"] = row["images_per_second"] / row[f"timm_{column}_images_per_second"]
    return row, notes


def format_row(row: dict) -> list[str]:
    """The table's cells of a row."""
    paper = "-"
    if row["paper_gmacs"] is not None:
        paper = format(row["paper_gmacs"], "g")
        if row["flops_over_2macs"] is None:
            paper += f" @{row['paper_resolution']}"
    return [
        row["model"],
        f"{row['params'] / 1e6:.2f}M",
        _num(row["fwd_gflop_per_image"], ".3f"),
        _num(row["train_gflop_per_image"], ".3f"),
        paper,
        _num(row["flops_over_2macs"], ".2f"),
        _num(row["step_ms"], ".1f"),
        _num(row["images_per_second"], ".1f"),
        _num(row["mfu_percent"], ".1f"),
        _num(row["timm_eager_images_per_second"], ".1f"),
        _num(row["ratio_eager"], ".2f") + ("x" if row["ratio_eager"] is not None else ""),
        _num(row["timm_compile_images_per_second"], ".1f"),
        _num(row["ratio_compile"], ".2f") + ("x" if row["ratio_compile"] is not None else ""),
    ]


def render(title: str, header: str, rows: list[list[str]], notes: list[str], markdown: bool) -> str:
    """The title, header line, table and notes: a markdown table, or aligned columns for a terminal."""
    if markdown:
        lines = [f"**{title}**", "", header, "", "| " + " | ".join(COLUMNS) + " |"]
        lines.append("|" + "|".join("---" for _ in COLUMNS) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))
    widths = [max(len(c) for c in column) for column in zip(COLUMNS, *rows)]
    lines = [title, header, " | ".join(h.ljust(w) for h, w in zip(COLUMNS, widths))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines + [f"note: {n}" for n in notes])


# --------------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked: a bad value raises UsageError naming it and the valid ones."""
    parser = _Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registered names")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="image height and width in pixels")
    parser.add_argument("--dtype", default="float32", help="compute dtype: float32 or bfloat16")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps after the first (compiling) one")
    parser.add_argument("--against", default=None, help="'timm': also time timm's model (needs torch and timm)")
    parser.add_argument("--torch-compile", action="store_true", help="with --against timm: also torch.compile")
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the rows as JSON")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--tiny", action="store_true", help="one block per stage: a smoke run")
    args = parser.parse_args(argv)
    if args.dtype not in DTYPES:
        raise UsageError(f"unknown --dtype {args.dtype!r}; valid dtypes: {', '.join(DTYPES)}")
    if args.against not in (None, "timm"):
        raise UsageError(f"unknown --against {args.against!r}; the only baseline is 'timm'")
    if args.torch_compile and args.against != "timm":
        raise UsageError("--torch-compile times timm's model, so it needs --against timm")
    for flag, least in (("batch", 1), ("size", 1), ("repeats", 1), ("warmup", 0)):
        if getattr(args, flag) < least:
            raise UsageError(f"--{flag} must be at least {least}; got {getattr(args, flag)}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        raise UsageError("--models is empty; give comma-separated names from mixtok.models.list_models()")
    registered = list_models()
    for name in args.models:
        if name not in registered:
            raise UsageError(str(unknown_name_error("model", name, registered)))
        if args.tiny:
            try:
                tiny_overrides(name)
            except ValueError as error:
                raise UsageError(str(error)) from None
    if args.against == "timm":
        absent = [p for p in ("torch", "timm") if importlib.util.find_spec(p) is None]
        if absent:
            needs = "--against timm needs torch and timm"
            raise UsageError(f"{needs}; not installed: {', '.join(absent)} (pip install -e '.[timm]')")
    return args


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.against == "timm":
        # Torch and JAX share the GPU: JAX must not take 75% of its memory up front. Set before JAX's
        # backend starts (the first jax.devices()); it changes nothing on a CPU.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # Before JAX's backend starts: keeps XLA:CPU's per-step temporaries mapped (mixtok/host_memory.py).
    retained = host_memory.retain()
    pieces = trainer_pieces()
    device = jax.devices()[0]
    peak_tflops, peak_text = device_peak(args.dtype)
    rng = np.random.default_rng(SEED)
    images = rng.normal(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=(args.batch,)).astype(np.int32)

    rows, cells, notes = [], [], []
    for name in args.models:
        try:
            row, row_notes = bench_model(name, args, pieces, images, labels, peak_tflops)
        except Exception as error:  # one model failing leaves the others' rows
            notes.append(f"{name}: failed ({_first_line(error)})")
            continue
        rows.append(row)
        cells.append(format_row(row))
        notes += row_notes

    where = f"{device.platform} ({device.device_kind}" + (f", {_cpu_name()})" if device.platform == "cpu" else ")")
    mfu_basis = "the measured float32 GEMM rate of this CPU" if device.platform == "cpu" else "the device's peak"
    title = f"One training step (forward + backward + AdamW) per model, MFU against {mfu_basis}" + (
        " (tiny: one block per stage)" if args.tiny else ""
    )
    versions = f"jax {jax.__version__} | flax {_version('flax')} | torch {_version('torch')} | timm {_version('timm')}"
    header = (
        f"device: {where}, 1 of {jax.device_count()} | {versions} | "
        f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')} | batch {args.batch}, "
        f"{args.size} px, {args.dtype} | median of {args.repeats} steps after 1 + {args.warmup} warm-up | "
        f"peak: {peak_text} | host memory retained: {'yes' if retained else 'no'}"
    )
    if args.against == "timm":
        import torch

        formats = [f"{r['model']} {r['timm_memory_format']}" for r in rows if r["timm_memory_format"]]
        dtypes = sorted({r["timm_dtype"] for r in rows if r["timm_dtype"]})
        notes.insert(
            0,
            f"timm: steps timed in turns with mixtok's (jax, torch, jax, torch, ...), so shared-machine load "
            f"hits both alike; torch threads {torch.get_num_threads()} (default), dtype {'/'.join(dtypes) or '-'}, "
            f"memory format (the faster in a trial step): {', '.join(formats) or '-'}; "
            "ratio = mixtok img/s / timm img/s",
        )
    if pieces[3]:
        notes.append(
            f"not installed: {', '.join(pieces[3])}; the train step's modules were imported without "
            "mixtok.train's package init (trainer_pieces)"
        )
    if any(r["paper_gmacs"] is not None and r["flops_over_2macs"] is None for r in rows):
        notes.append("paper GMACs @N: stated at N px, not --size (or --tiny), so no XLA/(2*GMACs) ratio")
    print(render(title, header, cells, notes, args.markdown))
    if args.json:
        meta = dict(title=title, header=header, notes=notes, argv=sys.argv[1:] if argv is None else list(argv))
        meta.update(batch=args.batch, size=args.size, dtype=args.dtype, repeats=args.repeats, warmup=args.warmup)
        meta.update(device=device.platform, device_kind=device.device_kind, peak_tflops=peak_tflops)
        out = {"meta": meta, "rows": [{k: _json_value(v) for k, v in row.items()} for row in rows]}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if len(rows) < len(args.models) else 0


def _json_value(value):
    """A row's value as strict JSON takes it: numpy scalars as Python numbers, nan and inf as null."""
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


if __name__ == "__main__":
    sys.exit(main())
