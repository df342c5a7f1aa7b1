"""timm's model EMAs at chosen steps: the fixtures of tests/train/test_ema.py.

Prints `ModelEmaV3.get_decay` at STEPS for each of SETTINGS (pasted into the test). Writes
tests/fixtures/timm_ema/batchnorm.json: a BatchNorm1d(3) trained a few steps by SGD (its weight and
bias parameters, its running mean and variance buffers), with the model's floating-point state at
step 0 and after each step, and the state of `ModelEmaV3` (its default `exclude_buffers=False`:
buffers averaged) and of the older `ModelEma` (decay from the first update, buffers averaged: the
formula of cvnets' EMA) after their update at that step. Run from the repository root with an
environment that has timm and torch (not a mixtok dependency):

    python tools/make_timm_ema_fixtures.py
"""

import json
import os

import torch
from timm.utils.model_ema import ModelEma, ModelEmaV3

SETTINGS = {
    "plain": dict(decay=0.9998),
    "warmup": dict(decay=0.9998, use_warmup=True),
    "warmup_gamma_power_min": dict(decay=0.999, use_warmup=True, warmup_gamma=10.0, warmup_power=0.75, min_decay=0.3),
    "after_step": dict(decay=0.99, use_warmup=True, update_after_step=3),
}
STEPS = (0, 1, 2, 3, 4, 5, 10, 100, 1000, 31623, 1000000)
BUFFER_DECAY, BUFFER_STEPS = 0.9, 4  # BatchNorm1d(3): an EMA decay and a number of training steps


def _state(module: torch.nn.Module) -> dict:
    return {k: v.tolist() for k, v in module.state_dict().items() if v.is_floating_point()}


def batchnorm_run() -> dict:
    """The model's and the two EMAs' float state at step 0 (the initial model) and after each step."""
    torch.manual_seed(0)
    model = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        model.weight.uniform_(0.5, 1.5)
        model.bias.uniform_(-0.5, 0.5)
    v3 = ModelEmaV3(model, decay=BUFFER_DECAY)  # exclude_buffers=False: the default
    v1 = ModelEma(model, decay=BUFFER_DECAY)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    record = {"model": [_state(model)], "ModelEmaV3": [_state(v3.module)], "ModelEma": [_state(v1.ema)]}
    for step in range(1, BUFFER_STEPS + 1):
        x = torch.randn(8, 3) * 2.0 + 1.0
        loss = (model(x) * torch.arange(1.0, 4.0)).square().mean()
        sgd.zero_grad()
        loss.backward()
        sgd.step()
        v3.update(model, step=step)  # timm train.py: after the optimizer step, num_updates counting it
        v1.update(model)
        record["model"].append(_state(model))
        record["ModelEmaV3"].append(_state(v3.module))
        record["ModelEma"].append(_state(v1.ema))
    return record


if __name__ == "__main__":
    import timm

    print(f"# timm {timm.__version__}")
    for name, kwargs in SETTINGS.items():
        ema = ModelEmaV3(torch.nn.Linear(1, 1), **kwargs)
        print(f"{name!r}: {[ema.get_decay(step) for step in STEPS]!r},")
    fixture = dict(timm=timm.__version__, torch=torch.__version__, decay=BUFFER_DECAY, **batchnorm_run())
    os.makedirs(os.path.join("tests", "fixtures", "timm_ema"), exist_ok=True)
    path = os.path.join("tests", "fixtures", "timm_ema", "batchnorm.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"# wrote {path}")
