"""The mixer ablation's sweep covers the registry: every mixer is a point or is excluded with its reason."""

import jax
import jax.numpy as jnp

from mixtok.mixers import list_mixers
from mixtok.models import create_model
from mixtok.sweep import load_sweep

CONFIG = "experiments/configs/mixer_ablation.py"


def test_every_registered_mixer_is_a_point_or_excluded_with_the_error_that_rules_it_out():
    config, points = load_sweep(CONFIG)  # the sweep module's own checks: names, fields, flag values
    from mixtok.train.config_files import load_module

    module = load_module(CONFIG)
    names = [point.name for point in points]
    excluded = module.excluded_mixers()
    assert sorted(names + list(excluded)) == sorted(list_mixers()) and not set(names) & set(excluded)
    assert {"pooling", "attention", "sepconv", "global_filter", "identity"} <= set(names)
    for name, error in excluded.items():
        options = module.mixer_options(name)
        model = create_model(
            config.model.name, num_classes=10, **module.LAYOUT, token_mixers=(name,) * 4, mixer_kwargs=options
        )
        try:
            jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
        except ValueError as raised:
            assert str(raised).splitlines()[0] == error
        else:
            raise AssertionError(f"{name} builds, so it belongs in the sweep")
    for point in points:
        options = module.STAGE_OPTIONS.get(point.name, ({},) * 4)
        assert point.overrides == {"model.kwargs.token_mixers": (point.name,) * 4, "model.kwargs.mixer_kwargs": options}
    # Every grid mixer builds (the stage-sized ones with their papers' per-stage options) but WaveMix's, whose
    # DWT needs even grids: stage 4's is 1x1.
    assert set(excluded) == {"wavelet_mixer"} and set(module.STAGE_OPTIONS) - set(names) == {"wavelet_mixer"}
    assert "1x1" in excluded["wavelet_mixer"]
