"""Writes the timm optimizer fixtures: timm's cosine rates step by step, timm's Lamb on a few steps, its clipping.

tests/train/test_timm_optim.py checks mixtok's `timm_cosine` schedule and `timm_lamb` optimizer
(mixtok/train/optimizer.py) against these numbers, so CI checks parity with timm without torch.
Needs torch and timm (the `timm` extra), not mixtok or JAX; run it from the repository root:

    python tools/make_timm_optim_fixtures.py --out tests/fixtures/timm_optim

`schedules.json`: for each setting, the arguments given to timm's `create_scheduler_v2`
(timm/scheduler/scheduler_factory.py, sched 'cosine'), the number of epochs it returns (cosine plus
cool-down), and the learning rate of every optimizer update of the whole run, read from the optimizer's
parameter group right before each update while the scheduler is driven as timm's train.py drives it
(`step_update(num_updates)` after every update, `step(epoch + 1)` after every epoch).

`lamb_<case>.npz` and the `lamb` entry of `manifest.json`: timm's Lamb (timm/optim/lamb.py) built by
`create_optimizer_v2(model, 'lamb', ...)` as timm's train.py builds it, so its parameter groups are
`param_groups_weight_decay`'s (weight decay 0 for every parameter with one dimension or fewer), on a tiny
model (a linear layer, a 3x3 convolution, a LayerNorm and a zero-initialised 2-D matrix), with a
per-update cosine schedule and fixed seeded gradients; one step's gradients have a global norm above
`max_grad_norm` so the built-in clipping acts. Arrays, by the parameter names of the model:

    init/<name>           the parameters before the first step
    grad/<k>/<name>       the gradients given at step k
    param/<k>/<name>      the parameters after step k

`deit_schedules.json`: timm's scheduler from the same `create_scheduler_v2` arguments (per epoch, no
cool-down), driven as facebookresearch/deit main.py drives it: no `step_update`, and `step(epoch)` after
training epoch `epoch` of a loop over the epochs; the learning rate of every update, read as above.

`clip_<mode>.npz` and the `clip` entry of `manifest.json`: timm's `dispatch_clip_grad`
(timm/utils/clip_grad.py; 'agc' is timm/utils/agc.py `adaptive_clip_grad`) on seeded tensors in
PyTorch's layouts (a Linear weight and bias, a 3x3 convolution, a depthwise 3x3 and a depthwise 1x1
convolution, a norm weight and bias, a zero-initialised matrix, a 2-D parameter in the "same" layout like
LSNet's attention biases), some units' gradients scaled far above and some far below their clipping
norm. Arrays: `param/<name>`, `grad/<name>` (before) and `clipped/<name>` (after); the manifest gives
each tensor's mixtok layout (mixtok.interop.official's names), the clipping value, and, for 'agc', how
many units were clipped.

The manifest records the timm / torch versions, each case's optimizer arguments, the parameter groups,
the learning rate of each step, each step's global gradient norm, and each file's SHA-256.
"""

import argparse
import hashlib
import json
import os
import platform

import numpy as np

SEED = 20261207
STEPS = 6
# The clipped step: gradients scaled to this global norm (the others to 0.5, below timm's max_grad_norm 1.0).
CLIPPED_STEP, CLIPPED_NORM, UNCLIPPED_NORM = 2, 7.0, 0.5
LAMB_LR, LAMB_WEIGHT_DECAY = 1e-2, 0.05
LAMB_CASES = {
    "default": dict(),  # timm's defaults: max_grad_norm 1.0, trust_clip False, always_adapt False
    "trust_clip_always_adapt_no_clip": dict(trust_clip=True, always_adapt=True, max_grad_norm=None),
}
# Scheduler settings: 10 epochs + 2 of cool-down, 3 updates per epoch, 2 warm-up epochs from 1e-6.
BASE_SCHEDULE = dict(
    sched="cosine",
    num_epochs=10,
    cooldown_epochs=2,
    warmup_epochs=2,
    warmup_lr=1e-6,
    min_lr=1e-5,
    updates_per_epoch=3,
)
SCHEDULES = {
    "per_epoch": dict(BASE_SCHEDULE, step_on_epochs=True),
    "per_update": dict(BASE_SCHEDULE, step_on_epochs=False),
    "per_epoch_warmup_prefix": dict(BASE_SCHEDULE, step_on_epochs=True, warmup_prefix=True),
    "per_update_warmup_prefix": dict(BASE_SCHEDULE, step_on_epochs=False, warmup_prefix=True),
    "per_update_no_warmup_no_cooldown": dict(
        BASE_SCHEDULE, step_on_epochs=False, warmup_epochs=0, cooldown_epochs=0, min_lr=0.0, updates_per_epoch=4
    ),
}
SCHEDULE_LR = 1e-3
# DeiT-style runs (facebookresearch/deit main.py): timm's scheduler stepped after each epoch, no cool-down.
DEIT_SCHEDULES = {
    "per_epoch_warmup": dict(BASE_SCHEDULE, step_on_epochs=True, cooldown_epochs=0),
    "per_epoch_no_warmup": dict(BASE_SCHEDULE, step_on_epochs=True, cooldown_epochs=0, warmup_epochs=0),
}
# Clipping: name -> (PyTorch shape, mixtok layout). Parameters ~N(0, 1); each unit's gradient is scaled
# by a factor from CLIP_SCALES (relative to the unit's parameter norm), so AGC leaves some units alone
# and clips others.
CLIP_TENSORS = {
    "fc.weight": ((4, 6), "linear"),
    "fc.bias": ((4,), "same"),
    "conv.weight": ((5, 3, 3, 3), "conv"),
    "dwconv.weight": ((6, 1, 3, 3), "conv"),  # depthwise 3x3 (in/groups = 1)
    "dwconv1x1.weight": ((6, 1, 1, 1), "conv"),  # depthwise 1x1: LSNet's RepVGGDW conv1
    "norm.weight": ((6,), "same"),
    "norm.bias": ((6,), "same"),
    "zero.weight": ((3, 4), "linear"),  # ||w|| = 0: the clipping norm is clip_factor * eps
    "attention_biases": ((3, 7), "same"),  # [heads, offsets], kept in the official layout
}
CLIP_SCALES = (1e-4, 3e-3, 0.5, 5.0)
CLIP_VALUES = {"agc": 0.02, "norm": 1.0, "value": 0.05}


def schedule_rates(torch, create_scheduler_v2, settings: dict) -> tuple[list[float], int]:
    """Every update's learning rate over timm's whole run, and the epochs create_scheduler_v2 returns."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=SCHEDULE_LR)
    scheduler, num_epochs = create_scheduler_v2(optimizer, **settings)
    rates, num_updates = [], 0
    for epoch in range(num_epochs):
        for _ in range(settings["updates_per_epoch"]):
            rates.append(optimizer.param_groups[0]["lr"])
            num_updates += 1
            scheduler.step_update(num_updates=num_updates)
        scheduler.step(epoch + 1)
    return rates, num_epochs


def deit_schedule_rates(torch, create_scheduler_v2, settings: dict) -> tuple[list[float], int]:
    """Every update's learning rate with timm's scheduler stepped as DeiT's main.py steps it."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=SCHEDULE_LR)
    scheduler, num_epochs = create_scheduler_v2(optimizer, **settings)
    assert num_epochs == settings["num_epochs"]  # no cool-down: DeiT's loop runs --epochs only
    rates = []
    for epoch in range(settings["num_epochs"]):
        for _ in range(settings["updates_per_epoch"]):  # train_one_epoch: no step_update
            rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step(epoch)  # after the epoch, as main.py does
    return rates, num_epochs


def clip_case(torch, dispatch_clip_grad, mode: str) -> tuple[dict, dict]:
    """timm's clipping of seeded gradients in `mode`: the arrays, and the manifest entry."""
    rng = np.random.default_rng(SEED + 1)
    arrays, params = {}, []
    for i, (name, (shape, _)) in enumerate(CLIP_TENSORS.items()):
        p = np.zeros(shape, np.float32) if name.startswith("zero") else rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        units, g_units = timm_units(p), timm_units(g)
        for u in range(units.shape[0]):  # each unit's gradient norm: a chosen multiple of its parameter norm
            target = CLIP_SCALES[(i + u) % len(CLIP_SCALES)] * max(float(np.linalg.norm(units[u])), 1e-3)
            g_units[u] *= target / float(np.linalg.norm(g_units[u]))
        g = g_units.reshape(shape)
        tensor = torch.nn.Parameter(torch.from_numpy(p.copy()))
        tensor.grad = torch.from_numpy(g.copy())
        params.append(tensor)
        arrays[f"param/{name}"], arrays[f"grad/{name}"] = p, g
    dispatch_clip_grad(params, CLIP_VALUES[mode], mode=mode)
    for name, tensor in zip(CLIP_TENSORS, params):
        arrays[f"clipped/{name}"] = tensor.grad.numpy().copy()
    changed = {
        n: int(np.sum(np.any(timm_units(arrays[f"clipped/{n}"]) != timm_units(arrays[f"grad/{n}"]), axis=1)))
        for n in CLIP_TENSORS
    }
    entry = dict(
        value=CLIP_VALUES[mode],
        layouts={name: layout for name, (_, layout) in CLIP_TENSORS.items()},
        units={name: int(timm_units(arrays[f"grad/{name}"]).shape[0]) for name in CLIP_TENSORS},
        units_changed=changed,  # timm's units (rows along the first axis; 1-D: one) whose gradient changed
    )
    return arrays, entry


def timm_units(x: np.ndarray) -> np.ndarray:
    """A view of `x` with one row per unit of timm's unitwise_norm: the first axis, or one row for 1-D."""
    return x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(1, -1)


def tiny_model(torch):
    """A model whose parameters cover timm's two groups: matrices and kernels decay, 1-D weights do not."""
    nn = torch.nn

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 4)  # weight [4, 5] decays, bias [4] does not
            self.conv = nn.Conv2d(2, 3, 3)  # weight [3, 2, 3, 3] decays, bias [3] does not
            self.norm = nn.LayerNorm(4)  # weight and bias [4]: no decay
            # A 2-D weight at 0: its trust ratio is 1 at the first step (timm's ||w|| = 0 case).
            self.zero = nn.Parameter(torch.zeros(3, 4))

    return Tiny()


def gradients(rng: np.random.Generator, shapes: dict[str, tuple], step: int) -> dict[str, np.ndarray]:
    grads = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    if step == 4:
        grads["conv.bias"][:] = 0.0  # a zero gradient: Adam's update of a no-decay parameter stays finite
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    target = CLIPPED_NORM if step == CLIPPED_STEP else UNCLIPPED_NORM
    return {name: (g * (target / norm)).astype(np.float32) for name, g in grads.items()}


def run_lamb(torch, timm, options: dict, foreach: bool) -> tuple[dict, list[dict], list[float]]:
    torch.manual_seed(SEED)
    model = tiny_model(torch)
    optimizer = timm.optim.create_optimizer_v2(
        model, "lamb", lr=LAMB_LR, weight_decay=LAMB_WEIGHT_DECAY, foreach=foreach, **options
    )
    scheduler, _ = timm.scheduler.create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=3, warmup_epochs=1, warmup_lr=1e-3, min_lr=1e-4,
        step_on_epochs=False, updates_per_epoch=2,
    )  # fmt: skip
    params = dict(model.named_parameters())
    arrays = {f"init/{n}": p.detach().numpy().copy() for n, p in params.items()}
    shapes = {n: tuple(p.shape) for n, p in params.items()}
    rng = np.random.default_rng(SEED)
    steps, groups = [], []
    for group in optimizer.param_groups:
        names = [n for n, p in params.items() if any(p is q for q in group["params"])]
        groups.append(dict(weight_decay=group["weight_decay"], params=sorted(names)))
    for k in range(STEPS):
        grads = gradients(rng, shapes, k)
        for name, p in params.items():
            p.grad = torch.from_numpy(grads[name].copy())
            arrays[f"grad/{k}/{name}"] = grads[name]
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step_update(num_updates=k + 1)
        for name, p in params.items():
            arrays[f"param/{k}/{name}"] = p.detach().numpy().copy()
        norm = float(np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values())))
        steps.append(dict(lr=lr, grad_norm=norm))
    return arrays, steps, groups


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/timm_optim")
    args = parser.parse_args()
    import timm
    import timm.optim
    import timm.scheduler
    import torch

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    schedules = {}
    for name, settings in SCHEDULES.items():
        rates, num_epochs = schedule_rates(torch, timm.scheduler.create_scheduler_v2, settings)
        schedules[name] = dict(timm_args=settings, lr=SCHEDULE_LR, num_epochs=num_epochs, rates=rates)
    with open(os.path.join(args.out, "schedules.json"), "w") as f:
        json.dump(schedules, f, indent=1)
    deit = {}
    for name, settings in DEIT_SCHEDULES.items():
        rates, num_epochs = deit_schedule_rates(torch, timm.scheduler.create_scheduler_v2, settings)
        deit[name] = dict(timm_args=settings, lr=SCHEDULE_LR, num_epochs=num_epochs, rates=rates)
    with open(os.path.join(args.out, "deit_schedules.json"), "w") as f:
        json.dump(deit, f, indent=1)

    manifest = dict(
        timm=timm.__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        seed=SEED,
        lamb={},
        clip={},
        files={},
    )
    from timm.utils.clip_grad import dispatch_clip_grad

    for mode in CLIP_VALUES:
        arrays, entry = clip_case(torch, dispatch_clip_grad, mode)
        np.savez(os.path.join(args.out, f"clip_{mode}.npz"), **arrays)
        manifest["clip"][mode] = entry
    for case, options in LAMB_CASES.items():
        arrays, steps, groups = run_lamb(torch, timm, options, foreach=False)  # timm's choice on CPU
        # timm's multi-tensor path folds the bias corrections differently; both must agree to float32 rounding.
        other, _, _ = run_lamb(torch, timm, options, foreach=True)
        spread = max(float(np.max(np.abs(arrays[k] - other[k]))) for k in arrays)
        assert spread < 1e-6, f"timm's Lamb single- and multi-tensor paths differ by {spread}"
        assert any(s["grad_norm"] > 1.0 for s in steps) and any(s["grad_norm"] < 1.0 for s in steps)
        np.savez(os.path.join(args.out, f"lamb_{case}.npz"), **arrays)
        manifest["lamb"][case] = dict(
            optimizer_args=dict(opt="lamb", lr=LAMB_LR, weight_decay=LAMB_WEIGHT_DECAY, **options),
            scheduler_args=dict(
                sched="cosine",
                num_epochs=3,
                warmup_epochs=1,
                warmup_lr=1e-3,
                min_lr=1e-4,
                step_on_epochs=False,
                updates_per_epoch=2,
            ),  # fmt: skip
            param_groups=groups,
            steps=steps,
            foreach_spread=spread,
        )
    for name in sorted(os.listdir(args.out)):
        if name != "manifest.json":
            manifest["files"][name] = sha256(os.path.join(args.out, name))
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}, indent=1)[:3000])


if __name__ == "__main__":
    main()
