r"""Token reduction: throughput, FLOPs and tokens per block of every rule, and agreement on a trained model.

    python benchmarks/token_reduction.py                                  # DeiT-S and ViT-B, every rule
    python benchmarks/token_reduction.py --models deit_small_patch16_224 --schedules "tome:r=13" "tome:r=16"
    python benchmarks/token_reduction.py --workdir /tmp/mixtok_deit       # a trained run: + accuracy, agreement

For each model and each schedule (`mixtok.reduction.evaluate.default_schedules` of every registered rule
unless `--rules` / `--schedules` narrow it) it prints the tokens after the first and the last block, their
mean over blocks, the forward GFLOPs per image (XLA's cost analysis), images/s of the jitted forward pass
(median of `--repeats` timed batches after compilation and a warm-up, every schedule of a model timed in
turns, so a load that comes and goes slows them alike) and the speed-up over the unreduced model measured in
the same run. With `--workdir` (a trained ViT / DeiT run, e.g. the token-reduction quickstart) the model is
that run's and its eval split is the input: accuracy, top-1 agreement with the unreduced model and mean
KL(unreduced || reduced) are added. Without it the named models run with their random initial weights on the
17 photographs bundled with scikit-image and scikit-learn (`mixtok.data.sources.SAMPLE_PHOTOS`) resized;
agreement on random weights says nothing about a trained model, so those columns are left empty.

ToMe's own figures (facebookresearch/ToMe README, off-the-shelf timm models on a V100, ImageNet-1k val):
DeiT-S/16 r = 13, 930 -> 1550 img/s (1.67x); ViT-B/16 r = 13, 309 -> 511 img/s (1.65x). The table marks the
rows with that setting so the ratios can be read side by side (a 2-core CPU is not a V100: the ratio, not the
throughput, is comparable).
"""

import argparse
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
from timing import interleaved_median_seconds

from mixtok import host_memory
from mixtok.models import create_model, list_models
from mixtok.reduction import TokenReduction, list_rules
from mixtok.reduction.evaluate import compile_forward, default_schedules, describe, evaluate_schedules

DEFAULT_MODELS = ("deit_small_patch16_224", "vit_base_patch16_224")
PAPER_SPEEDUP = {  # (model, schedule label): (ToMe README's img/s before -> after, V100)
    ("deit_small_patch16_224", "tome r=13"): (930, 1550),
    ("vit_base_patch16_224", "tome r=13"): (309, 511),
}
COLUMNS = (
    "model",
    "schedule",
    "tokens first/last",
    "mean tokens",
    "GFLOP/img",
    "img/s",
    "speed-up",
    "accuracy",
    "agreement",
    "KL",
    "paper speed-up",
)


def sample_images(batch: int, size: int) -> jax.Array:
    """The bundled sample photographs, resized to size x size, normalised as ImageNet, repeated to `batch`."""
    from mixtok.data.sources import SAMPLE_PHOTOS, _sample_photo

    names = SAMPLE_PHOTOS["train"] + SAMPLE_PHOTOS["test"]
    photos = [np.asarray(_sample_photo(n), np.float32) / 255.0 for n in names]
    resized = [np.asarray(jax.image.resize(jnp.asarray(p[..., :3]), (size, size, 3), "bilinear")) for p in photos]
    stack = np.stack([resized[i % len(resized)] for i in range(batch)])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return jnp.asarray((stack - mean) / std, jnp.float32)


def schedules_for(model, args) -> list[TokenReduction]:
    depth, protected = model.depths[0], model.num_prefix_tokens
    tokens = model.grid[0] * model.grid[1] + protected
    if args.schedules:
        return [TokenReduction.parse(text, depth) for text in args.schedules]
    rules = args.rules.split(",") if args.rules else list_rules()
    return [s for rule in rules for s in default_schedules(rule, depth, tokens, protected)]


def measure(name, model, variables, images, schedules, repeats, trained_batches=None) -> list[dict]:
    """One row per schedule (the unreduced model first) for `model` with `variables` on `images`."""
    all_schedules = [None, *schedules]
    steps, models = {}, {}
    gflops = {}
    for schedule in all_schedules:
        reduced = model.clone(token_reduction=schedule)
        label = describe(schedule)
        apply, gflops[label] = compile_forward(reduced, variables, images)  # one compile: the function and its FLOPs
        models[label] = reduced
        steps[label] = lambda apply=apply: jax.block_until_ready(apply(variables, images))
    seconds = interleaved_median_seconds(steps, repeats)
    quality = {}
    if trained_batches is not None:
        for record in evaluate_schedules(model, variables, trained_batches, all_schedules):
            quality[record["schedule"]] = record
    base = seconds["none"]
    rows = []
    for label, reduced in models.items():
        counts = reduced.token_counts()
        paper = PAPER_SPEEDUP.get((name, label))
        q = quality.get(label, {})
        rows.append(
            dict(
                model=name,
                schedule=label,
                first=counts[0],
                last=counts[-1],
                mean_tokens=float(np.mean(counts)),
                gflops=gflops[label],
                images_per_second=images.shape[0] / seconds[label],
                speedup=base / seconds[label],
                accuracy=q.get("accuracy"),
                agreement=q.get("agreement"),
                kl=q.get("kl"),
                paper_speedup=None if paper is None else paper[1] / paper[0],
            )
        )
    return rows


def _num(value, fmt):
    return "-" if value is None else format(value, fmt)


def cells(row) -> list[str]:
    return [
        row["model"],
        row["schedule"],
        f"{row['first']}/{row['last']}",
        f"{row['mean_tokens']:.1f}",
        _num(row["gflops"], ".3f"),
        f"{row['images_per_second']:.1f}",
        f"{row['speedup']:.2f}x",
        _num(row["accuracy"], ".4f"),
        _num(row["agreement"], ".4f"),
        _num(row["kl"], ".4f"),
        "-" if row["paper_speedup"] is None else f"{row['paper_speedup']:.2f}x",
    ]


def render(rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(c) for c in column) for column in zip(COLUMNS, *rows, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    return "\n".join(lines + [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated ViT / DeiT names")
    parser.add_argument("--workdir", default=None, help="a trained ViT / DeiT run instead of --models")
    parser.add_argument("--rules", default=None, help=f"comma-separated, of {', '.join(list_rules())}")
    parser.add_argument("--schedules", nargs="*", default=None, help='one-line schedules, e.g. "tome:r=13"')
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    retained = host_memory.retain()
    try:
        rows = []
        if args.workdir:
            from mixtok.models.vit import VisionTransformer
            from mixtok.reduction.evaluate import _eval_batches
            from mixtok.train import load_run

            run = load_run(args.workdir)
            if not isinstance(run.model, VisionTransformer):
                raise ValueError(f"the run in {args.workdir} trained {type(run.model).__name__}, not a ViT / DeiT.")
            model = run.model.clone(token_reduction=None)
            batches = _eval_batches(run.config.data, 256)
            images = batches[0][0][: args.batch]
            rows += measure(run.config.model.name, model, run.variables, images, schedules_for(model, args),
                            args.repeats, batches)  # fmt: skip
        else:
            names = args.models.split(",")
            bad = [n for n in names if n not in list_models("vit_*") + list_models("deit_*")]
            if bad:
                raise ValueError(f"{bad[0]!r} is not a ViT / DeiT; valid: {', '.join(list_models('*patch16*'))}.")
            print_header(args, retained)
            for name in names:  # one table per model, printed as soon as it is measured
                model = create_model(name)
                images = sample_images(args.batch, model.image_size)
                variables = jax.jit(model.init)(jax.random.PRNGKey(0), images[:1])
                model_rows = measure(name, model, variables, images, schedules_for(model, args), args.repeats)
                print(render([cells(r) for r in model_rows], args.markdown), flush=True)
            return 0
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_header(args, retained)
    print(render([cells(r) for r in rows], args.markdown))
    return 0


def print_header(args, retained: bool) -> None:
    device = jax.devices()[0]
    print(
        f"token reduction, forward only, batch {args.batch}, float32, {device.platform} ({device.device_kind}, "
        f"{platform.processor() or platform.machine()}), JAX {jax.__version__}; host memory retained: {retained}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
