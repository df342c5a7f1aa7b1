"""Prints timm's ModelEmaV3.get_decay at chosen steps: the fixture in tests/train/test_ema.py.

Run with an environment that has timm and torch (not a mixtok dependency):

    python tools/make_timm_ema_fixtures.py
"""

import torch
from timm.utils.model_ema import ModelEmaV3

SETTINGS = {
    "plain": dict(decay=0.9998),
    "warmup": dict(decay=0.9998, use_warmup=True),
    "warmup_gamma_power_min": dict(decay=0.999, use_warmup=True, warmup_gamma=10.0, warmup_power=0.75, min_decay=0.3),
    "after_step": dict(decay=0.99, use_warmup=True, update_after_step=3),
}
STEPS = (0, 1, 2, 3, 4, 5, 10, 100, 1000, 31623, 1000000)

if __name__ == "__main__":
    import timm

    print(f"# timm {timm.__version__}")
    for name, kwargs in SETTINGS.items():
        ema = ModelEmaV3(torch.nn.Linear(1, 1), **kwargs)
        print(f"{name!r}: {[ema.get_decay(step) for step in STEPS]!r},")
