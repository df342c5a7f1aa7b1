r"""How far bfloat16 compute moves MetaFormer logits from float32: mixtok's `dtype=bfloat16` against timm's autocast.

    $TIMM_VENV/bin/python benchmarks/bf16_drift.py --models caformer_s18,convformer_s18
    $TIMM_VENV/bin/python benchmarks/bf16_drift.py --time OLD_CHECKOUT   # bf16 step time, this code vs OLD_CHECKOUT

(`TIMM_VENV`: a Python environment with torch, timm and mixtok's dependencies; run from the repository root.)

Both libraries run the same weights on the same images. Weights: timm's own initialisation
(`timm.create_model(name, pretrained=False)`), perturbed so that nothing is trivial (seeded): every
1-D weight or scale (norm weights, ResScale, StarReLU's scale) times uniform(0.7, 1.3), every bias
plus normal(0, 0.05), every weight of 2 or more dims times (1 + 0.2 * normal); mixtok gets them through
`mixtok.interop.timm.convert`. Images: 32 seeded random-resized crops (torchvision's RandomResizedCrop
rule: scale (0.08, 1), ratio (3/4, 4/3), bilinear) at 224 px of the photos bundled with scikit-image,
normalised with ImageNet's mean and std.

For each model it prints the float32 logits' largest |value| (mixtok and timm, which agree to float32
precision, their max-abs difference shown), and for each library the bfloat16-vs-float32 drift:
max |logits_bf16 - logits_fp32|, that over the largest |fp32 logit| ("rel"), the top-1 agreement and
the RMS difference over all logits (steadier than the maximum, which one image decides).
mixtok's bfloat16 run is `create_model(name, dtype=jnp.bfloat16)` (float32 parameters, bfloat16
compute); timm's is its float32 model under `torch.autocast("cpu", dtype=torch.bfloat16)`. "ratio" is
mixtok's max-abs drift over timm's.

A second table (`--grad-images`, 8 by default, 0 to skip) compares training: the gradient of the
cross-entropy (labels: the fp32 top-1) on the first crops, bf16 against fp32, as the relative L2 error
||g_bf16 - g_fp32|| / ||g_fp32|| over three groups of parameters: ResScale / LayerScale ("scales"),
StarReLU's scalars ("star_relu") and all the others.

`--time OLD_CHECKOUT` times instead the jitted bf16 forward (fp32 parameters, bf16 compute) and the bf16
train step (gradient of the cross-entropy) of each model at `--batch` images, in two worker processes:
this checkout and OLD_CHECKOUT (another git worktree of mixtok, e.g. the commit before a change). The
runs alternate between the two (old, new, old, new, ...) so that the load of a shared machine hits both
alike, and the table gives the minimum and median of `--repeats` runs of each.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
    "retina",
    "camera",
    "coins",
    "moon",
    "grass",
    "gravel",
    "brick",
)


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """One crop by torchvision's RandomResizedCrop rule (scale (0.08, 1), ratio (3/4, 4/3)), resized bilinearly."""
    from PIL import Image

    height, width = image.shape[:2]
    area = height * width
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = round(np.sqrt(target * ratio)), round(np.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            break
    else:  # torchvision's fallback: the whole image's centre square
        h = w = min(height, width)
        top, left = (height - h) // 2, (width - w) // 2
    crop = Image.fromarray(image[top : top + h, left : left + w])
    return np.asarray(crop.resize((size, size), Image.BILINEAR), np.float32) / 255.0


def photo_batch(count: int = 32, size: int = 224, seed: int = 0) -> np.ndarray:
    """`count` normalised NHWC crops of scikit-image's bundled photos (grey ones stacked to RGB)."""
    from skimage import data

    photos = []
    for name in PHOTOS:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image  # stereo_motorcycle: (left, right, disparity)
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        photos.append(np.ascontiguousarray(image[..., :3]).astype(np.uint8))
    rng = np.random.default_rng(seed)
    crops = [random_resized_crop(photos[i % len(photos)], size, rng) for i in range(count)]
    return (np.stack(crops) - IMAGENET_MEAN) / IMAGENET_STD


def perturbed_timm_model(name: str, seed: int = 0):
    """timm's `name` with its own (pretrained=False) init, perturbed as the module docstring says; eval mode."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.named_parameters():
            if key.endswith("bias"):
                tensor.add_(0.05 * torch.randn(tensor.shape, generator=generator))
            elif tensor.ndim == 1:
                tensor.mul_(0.7 + 0.6 * torch.rand(tensor.shape, generator=generator))
            else:
                tensor.mul_(1.0 + 0.2 * torch.randn(tensor.shape, generator=generator))
    return model


def drift(reference: np.ndarray, other: np.ndarray) -> tuple[float, float, float, float]:
    """(max-abs difference, that over the largest |reference|, top-1 agreement, RMS difference) of two logit arrays."""
    max_abs = float(np.max(np.abs(other - reference)))
    agree = float(np.mean(np.argmax(other, -1) == np.argmax(reference, -1)))
    rms = float(np.sqrt(np.mean(np.square(other - reference))))
    return max_abs, max_abs / float(np.max(np.abs(reference))), agree, rms


def mixtok_logits(name: str, variables, images: np.ndarray, dtype) -> np.ndarray:
    import jax

    from mixtok.models import create_model

    model = create_model(name, dtype=dtype)
    return np.asarray(jax.jit(model.apply)(variables, images), np.float32)


def timm_logits(model, images: np.ndarray, autocast: bool) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return model(x).float().numpy()


def drift_table(names, count: int, seed: int) -> str:
    import jax.numpy as jnp

    from mixtok.interop.timm import convert

    images = photo_batch(count, seed=seed)
    rows = [
        "| model | max abs fp32 logit | mixtok vs timm fp32 | mixtok bf16: max abs | rel | top-1 agree | rms "
        "| timm autocast: max abs | rel | top-1 agree | rms | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        torch_model = perturbed_timm_model(name, seed)
        variables = convert(name, {k: v.numpy() for k, v in torch_model.state_dict().items()})
        timm32, timm16 = (timm_logits(torch_model, images, autocast) for autocast in (False, True))
        mix32, mix16 = (mixtok_logits(name, variables, images, dtype) for dtype in (jnp.float32, jnp.bfloat16))
        m_abs, m_rel, m_agree, m_rms = drift(mix32, mix16)
        t_abs, t_rel, t_agree, t_rms = drift(timm32, timm16)
        rows.append(
            f"| {name} | {np.max(np.abs(mix32)):.3f} | {np.max(np.abs(mix32 - timm32)):.1e} "
            f"| {m_abs:.4f} | {100 * m_rel:.2f}% | {round(m_agree * count)}/{count} | {m_rms:.4f} "
            f"| {t_abs:.4f} | {100 * t_rel:.2f}% | {round(t_agree * count)}/{count} | {t_rms:.4f} "
            f"| {m_abs / t_abs:.2f} |"
        )
    return "\n".join(rows)


def parameter_group(path: str) -> str:
    """The group a parameter's gradient is reported in: ResScale / LayerScale, StarReLU scalars, or the rest."""
    if "res_scale" in path or "layer_scale" in path:
        return "scales"
    if ".act" in path or "/act" in path:  # StarReLU's scale and bias (timm `act1.scale`, mixtok `act/scale`)
        return "star_relu"
    return "other"


def relative_errors(reference: dict, other: dict) -> dict:
    """{group: ||other - reference|| / ||reference||} over the gradients of each parameter_group."""
    sums = {}
    for key, want in reference.items():
        err = sums.setdefault(parameter_group(key), [0.0, 0.0])
        diff = np.asarray(other[key], np.float64) - np.asarray(want, np.float64)
        err[0] += float(np.sum(diff**2))
        err[1] += float(np.sum(np.asarray(want, np.float64) ** 2))
    return {group: (d / n) ** 0.5 for group, (d, n) in sums.items()}


def mixtok_grads(name: str, variables, images: np.ndarray, labels: np.ndarray, dtype) -> dict:
    import jax
    import optax

    from mixtok.models import create_model

    model = create_model(name, dtype=dtype)

    def loss(params):
        logits = model.apply({**variables, "params": params}, images)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    return {"/".join(str(k.key) for k in path): np.asarray(g) for path, g in leaves}


def timm_grads(model, images: np.ndarray, labels: np.ndarray, autocast: bool) -> dict:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = torch.nn.functional.cross_entropy(model(x).float(), torch.from_numpy(labels).long())
    loss.backward()
    return {key: p.grad.numpy().copy() for key, p in model.named_parameters()}


def grad_table(names, count: int, seed: int) -> str:
    """bf16-vs-fp32 relative gradient error per parameter group, mixtok and timm autocast, labels the fp32 top-1."""
    import jax.numpy as jnp

    from mixtok.interop.timm import convert

    images = photo_batch(count, seed=seed)
    groups = ("scales", "star_relu", "other")
    header = [f"{library} {group}" for library in ("mixtok", "timm") for group in groups]
    rows = ["| model | " + " | ".join(header) + " |", "|---" * (1 + len(header)) + "|"]
    for name in names:
        torch_model = perturbed_timm_model(name, seed)
        variables = convert(name, {k: v.numpy() for k, v in torch_model.state_dict().items()})
        labels = np.argmax(timm_logits(torch_model, images, False), -1).astype(np.int32)
        mix = relative_errors(*(mixtok_grads(name, variables, images, labels, d) for d in (jnp.float32, jnp.bfloat16)))
        tim = relative_errors(*(timm_grads(torch_model, images, labels, a) for a in (False, True)))
        cells = [f"{100 * err[g]:.2f}%" if g in err else "-" for err in (mix, tim) for g in groups]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --time: one worker process per checkout, stepping on command so that the two alternate.
WORKER = r"""
import sys, time
import jax, jax.numpy as jnp, numpy as np, optax
import flax.linen as nn
from mixtok.models import create_model
name, batch = sys.argv[1], int(sys.argv[2])
x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, 224, 224, 3)), jnp.float32)
labels = jnp.zeros((batch,), jnp.int32)
model = create_model(name, dtype=jnp.bfloat16)
variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), x[:1]))
forward = jax.jit(model.apply)
def loss(params):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": params}, x), labels).mean()
grad = jax.jit(jax.grad(loss))
steps = {"forward": lambda: forward(variables, x), "train": lambda: grad(variables["params"])}
for step in steps.values():
    jax.block_until_ready(step()); jax.block_until_ready(step())
print("ready", flush=True)
for line in sys.stdin:
    start = time.perf_counter()
    jax.block_until_ready(steps[line.strip()]())
    print(time.perf_counter() - start, flush=True)
"""


def time_table(names, old_checkout: str, batch: int, repeats: int) -> str:
    rows = [
        f"| model | step (batch {batch}) | old min | new min | new / old (min) | old median | new median |",
        "|---|---|---|---|---|---|---|",
    ]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in names:
        workers = {}
        for label, root in (("old", os.path.abspath(old_checkout)), ("new", here)):
            env = dict(os.environ, PYTHONPATH=root)
            workers[label] = subprocess.Popen(
                [sys.executable, "-c", WORKER, name, str(batch)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=root,
            )
            if workers[label].stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {label} worker ({root}) failed to start")
        for step in ("forward", "train"):
            times = {label: [] for label in workers}
            for _ in range(repeats):
                for label, worker in workers.items():
                    worker.stdin.write(step + "\n")
                    worker.stdin.flush()
                    times[label].append(float(worker.stdout.readline()))
            old, new = (np.array(times[label]) * 1e3 for label in ("old", "new"))
            rows.append(
                f"| {name} | {step} | {old.min():.0f} ms | {new.min():.0f} ms | {new.min() / old.min():.3f} "
                f"| {np.median(old):.0f} ms | {np.median(new):.0f} ms |"
            )
        for worker in workers.values():
            worker.stdin.close()
            worker.wait()
    return "\n".join(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="caformer_s18,convformer_s18", help="comma-separated mixtok/timm names")
    parser.add_argument("--images", type=int, default=32, help="number of photo crops (drift)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops and the weight perturbation")
    parser.add_argument("--grad-images", type=int, default=8, help="images of the gradient table (0: none)")
    parser.add_argument("--time", metavar="OLD_CHECKOUT", help="time the bf16 steps against this checkout instead")
    parser.add_argument("--batch", type=int, default=8, help="batch of the timed steps (--time)")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each step and checkout (--time)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    import jax

    header = (
        f"{datetime.date.today()}, {platform.processor() or platform.machine()} CPU x {os.cpu_count()}, "
        f"JAX {jax.__version__}"
    )
    if args.time:
        print(header)
        print(time_table(names, args.time, args.batch, args.repeats))
        return
    import timm
    import torch

    print(f"{header}, torch {torch.__version__}, timm {timm.__version__}")
    start = time.perf_counter()
    print(drift_table(names, args.images, args.seed))
    if args.grad_images:
        print(f"\nGradient of the cross-entropy at {args.grad_images} images: bf16-vs-fp32 relative L2 error per group")
        print(grad_table(names, args.grad_images, args.seed))
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
