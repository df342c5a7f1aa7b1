r"""Accuracy against tokens kept: a trained ViT / DeiT evaluated under every token-reduction rule.

    python -m mixtok.train --config experiments/configs/quickstart_token_reduction.py --workdir /tmp/deit_digits
    python -m mixtok.reduction.evaluate --workdir /tmp/deit_digits                     # every rule, its settings
    python -m mixtok.reduction.evaluate --workdir /tmp/deit_digits --schedules "tome:r=4" "tome:r=8"
    python -m mixtok.reduction.evaluate --config experiments/configs/imagenet/deit_small_patch16_224.py:data_root=D \
        --weights deit_small.msgpack --out /tmp/deit_small_reduction           # pretrained timm weights, ImageNet val

Loads the run's latest checkpoint (`mixtok.train.load_run`), evaluates its eval split once without a
reduction and once per schedule, and writes `token_reduction.json` (one record per schedule: accuracy,
top-1 agreement with the unreduced model, mean KL(unreduced || reduced) of the predicted distributions,
tokens after each block, their mean over blocks, and forward GFLOPs per image from XLA's cost analysis) and
`token_reduction.png` (accuracy against the mean number of tokens per block, one line per rule) into the
workdir, or under `--out PREFIX` (PREFIX.json, PREFIX.png). An existing output is never overwritten: the
command stops with exit code 2 naming it (pass another --out). Bad input (no such workdir, a run that is
not a ViT / DeiT, an unknown rule, a schedule that does not parse) is one line and exit code 2.

The schedules of each rule, unless `--schedules` gives them: `default_schedules` (a rule's own `settings`
where it has them; else, for rules that remove r tokens per layer, r = 4%, 6.6%, 8%, 12% and 16% of the
unprotected tokens (r = 8, 13, 16, 24, 31 on DeiT-S's 196 patches, ToMe's r = 13 and 16 among them); for keep-
rate rules, keep rates 0.9, 0.7 and 0.5 at the blocks a quarter, half and three quarters of the way through
(EViT's layers 3, 6, 9 of 12))."""

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mixtok.reduction.base import TokenReduction, get_rule, list_rules

REMOVE_FRACTIONS = (0.04, 0.066, 0.08, 0.12, 0.16)
KEEP_RATES = (0.9, 0.7, 0.5)
EXIT_USAGE = 2


def default_schedules(rule: str, depth: int, num_tokens: int, num_protected: int) -> list[TokenReduction]:
    """A few strengths of `rule` for a model of `depth` blocks and `num_tokens` tokens (see the module doc)."""
    spec = get_rule(rule)
    if spec.settings is not None:
        return list(spec.settings(depth, num_tokens, num_protected))
    if spec.amount_kind == "remove":
        patches = num_tokens - num_protected
        rs = sorted({max(1, round(f * patches)) for f in REMOVE_FRACTIONS})
        return [TokenReduction.constant(rule, r, depth) for r in rs]
    if spec.amount_kind == "keep_rate":
        layers = sorted({depth // 4, depth // 2, (3 * depth) // 4})
        return [TokenReduction.keep_at(rule, rate, layers, depth) for rate in KEEP_RATES]
    raise ValueError(f"rule {rule!r} has amounts of kind {spec.amount_kind!r} and no settings of its own.")


def describe(schedule: TokenReduction | None) -> str:
    """A short label: 'none', 'tome r=8', 'evit keep=0.7 @3/6/9', or the amounts."""
    if schedule is None:
        return "none"
    amounts = [a for a in schedule.amounts if a != schedule.spec.no_reduction]
    layers = [i for i, a in enumerate(schedule.amounts) if a != schedule.spec.no_reduction]
    options = "".join(f" {k}={v}" for k, v in schedule.options)
    if amounts and len(set(amounts)) == 1:
        key = "r" if schedule.spec.amount_kind == "remove" else "keep"
        where = "" if len(layers) == len(schedule.amounts) else " @" + "/".join(map(str, layers))
        return f"{schedule.rule} {key}={amounts[0]}{where}{options}"

    def one(amount):
        return "+".join(map(str, amount)) if isinstance(amount, tuple | list) else str(amount)

    return f"{schedule.rule} amounts={'/'.join(map(one, schedule.amounts))}{options}"


def compile_forward(model, variables, images):
    """The model's jitted forward pass compiled for `images`' shape, and its GFLOPs per image (XLA's cost
    analysis; None where XLA gives none)."""
    compiled = jax.jit(model.apply).lower(variables, images).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return compiled, None if flops is None else float(flops) / images.shape[0] / 1e9


def forward_gflops(model, variables, images) -> float | None:
    """Forward GFLOPs per image from XLA's cost analysis of the jitted model (None if XLA gives none)."""
    return compile_forward(model, variables, images)[1]


def evaluate_schedules(model, variables, batches: Sequence[tuple], schedules: Iterable[TokenReduction | None]):
    """One record per schedule (None: the unreduced model), on `batches` of (images, labels, mask), all of one
    shape (the eval iterator pads the last batch and masks the padding)."""
    reference = None
    records = []
    labels = np.concatenate([np.asarray(labels) for _, labels, _ in batches])
    mask = np.concatenate([np.asarray(mask) for _, _, mask in batches]) > 0
    labels = labels[mask]
    for schedule in schedules:
        reduced = model.clone(token_reduction=schedule)
        forward, gflops = compile_forward(reduced, variables, batches[0][0])
        logits = np.concatenate([np.asarray(forward(variables, images)) for images, _, _ in batches])[mask]
        if reference is None:
            reference = logits
        log_p = jax.nn.log_softmax(jnp.asarray(reference, jnp.float32))
        log_q = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32))
        kl = float(jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)))
        counts = reduced.token_counts()
        records.append(
            dict(
                schedule=describe(schedule),
                rule=None if schedule is None else schedule.rule,
                amounts=None if schedule is None else list(schedule.amounts),
                accuracy=float(np.mean(logits.argmax(-1) == labels)),
                agreement=float(np.mean(logits.argmax(-1) == reference.argmax(-1))),
                kl=max(kl, 0.0),
                tokens=list(counts),
                mean_tokens=float(np.mean(counts)),
                gflops=gflops,
                examples=int(mask.sum()),
            )
        )
    return records


def plot(records: Sequence[dict], path: str, title: str) -> None:
    """Accuracy against mean tokens per block, one line per rule, the unreduced model as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    base = next((r for r in records if r["rule"] is None), None)
    for rule in sorted({r["rule"] for r in records if r["rule"] is not None}):
        points = sorted((r["mean_tokens"], r["accuracy"]) for r in records if r["rule"] == rule)
        if base is not None:
            points.append((base["mean_tokens"], base["accuracy"]))
        ax.plot(*zip(*points, strict=True), marker="o", label=rule)
    if base is not None:
        ax.plot([base["mean_tokens"]], [base["accuracy"]], marker="*", markersize=14, color="black", label="none")
    ax.set_xlabel("mean tokens per block")
    ax.set_ylabel("eval accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _eval_batches(data_config, batch_size: int) -> list[tuple]:
    from mixtok.data import create_eval_iterator

    batches = create_eval_iterator(data_config, global_batch_size=batch_size)
    return [(jnp.asarray(b["image"]), b["label"], b["mask"]) for b in batches]


def load_pretrained(config_ref: str, weights: str):
    """(model, variables, data config, label) of a config's model with converted weights (`--config --weights`)."""
    from mixtok.interop.weight_files import load_variables
    from mixtok.models import create_model
    from mixtok.train.config import compute_dtype
    from mixtok.train.config_files import load_config

    config = load_config(config_ref)
    variables = load_variables(weights)
    head = variables.get("params", {}).get("head", {}).get("kernel")
    if head is None:
        raise ValueError(f"{weights} holds no params/head/kernel: pass the variables of a ViT / DeiT classifier.")
    kwargs = config.model.get("kwargs", {})
    kwargs = kwargs.to_dict() if hasattr(kwargs, "to_dict") else dict(kwargs)
    model = create_model(config.model.name, num_classes=int(head.shape[-1]), dtype=compute_dtype(config), **kwargs)
    return model, variables, config.data, f"{config.model.name} ({weights})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="the --workdir of a trained ViT / DeiT run")
    parser.add_argument("--config", default=None, help="instead of --workdir: a config (its model and eval data)")
    parser.add_argument("--weights", default=None, help="with --config: the model's variables (.msgpack)")
    parser.add_argument("--rules", default=None, help=f"comma-separated, of {', '.join(list_rules())} (default all)")
    parser.add_argument("--schedules", nargs="*", default=None, help='one-line schedules, e.g. "tome:r=8"')
    parser.add_argument("--step", type=int, default=None, help="the checkpoint (default: the latest)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=None, help="output prefix (default WORKDIR/token_reduction)")
    args = parser.parse_args(argv)
    if (args.workdir is None) == (args.config is None) or (args.config is None) != (args.weights is None):
        print("error: give --workdir, or --config with --weights.", file=sys.stderr)
        return EXIT_USAGE
    if args.config and args.out is None:
        print("error: with --config, name the outputs with --out PREFIX.", file=sys.stderr)
        return EXIT_USAGE

    from mixtok.models.vit import VisionTransformer
    from mixtok.train import load_run

    prefix = args.out or os.path.join(args.workdir, "token_reduction")
    existing = [p for p in (prefix + ".json", prefix + ".png") if os.path.exists(p)]
    if existing:
        print(f"error: {existing[0]} exists; pass another --out (nothing is overwritten).", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.workdir:
            run = load_run(args.workdir, args.step)
            model, variables, data_config = run.model, run.variables, run.config.data
            title = f"{os.path.basename(os.path.abspath(args.workdir))}, step {run.step}"
        else:
            model, variables, data_config, title = load_pretrained(args.config, args.weights)
        if not isinstance(model, VisionTransformer):
            raise ValueError(
                f"the model is {type(model).__name__}; token reduction applies to ViT / DeiT (mixtok.models.vit)."
            )
        model = model.clone(token_reduction=None)
        depth, protected = model.depths[0], model.num_prefix_tokens
        tokens = model.grid[0] * model.grid[1] + protected
        if args.schedules:
            schedules = [TokenReduction.parse(text, depth) for text in args.schedules]
        else:
            rules = args.rules.split(",") if args.rules else list_rules()
            schedules = [s for rule in rules for s in default_schedules(rule, depth, tokens, protected)]
        batches = _eval_batches(data_config, args.batch_size)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    records = evaluate_schedules(model, variables, batches, [None, *schedules])
    for r in records:
        gflops = "-" if r["gflops"] is None else f"{r['gflops']:.4f}"
        print(
            f"{r['schedule']:<32} accuracy {r['accuracy']:.4f}  agreement {r['agreement']:.4f}  kl {r['kl']:.4f}  "
            f"mean tokens {r['mean_tokens']:.1f}  GFLOP/img {gflops}"
        )
    directory = os.path.dirname(prefix)
    if directory:
        os.makedirs(directory, exist_ok=True)
    summary = dict(source=title, model=type(model).__name__, records=records)
    with open(prefix + ".json", "x") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    plot(records, prefix + ".png", title)
    print(f"wrote {prefix}.json and {prefix}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
