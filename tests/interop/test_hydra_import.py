"""The official Hydra mixer's state dict -> mixtok.mixers.Hydra: golden outputs, the round trip, and the errors.

tests/fixtures/hydra holds two randomised official `Hydra` modules (goombalab/hydra @ 55bef745,
hydra/modules/hydra.py; the commit is in manifest.json) with their Triton SSD and RMSNorm replaced by pure-PyTorch
stand-ins (tools/make_hydra_fixtures.py says which), a seeded input [2, 13, D] and the official float64 output.
`convert_mixer` must turn the state dict into params with which mixtok's float32 mixer reproduces the output
within 1e-5 (the tool's --parity measured at most 1.4e-6 over 5 seeds). No torch needed.
"""

import functools
import json
import os

import flax.linen as nn
import jax
import numpy as np
import pytest

from mixtok.interop.hydra import convert_mixer, to_official
from mixtok.mixers.hydra import Hydra

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "hydra")
NAMES = {"d_model": "dim", "d_state": "d_state", "headdim": "headdim", "ngroups": "ngroups", "expand": "expand"}
NAMES |= {"d_conv": "d_conv", "bias": "bias"}


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


def fixture(name):
    entry = manifest()["fixtures"][name]
    with np.load(os.path.join(FIXTURES, entry["file"])) as data:
        arrays = {key: data[key] for key in data.files}
    state = {k[len("state_dict/") :]: v for k, v in arrays.items() if k.startswith("state_dict/")}
    kwargs = {NAMES[k]: v for k, v in entry["official_kwargs"].items()}
    return state, arrays["input"], arrays["output"], kwargs


@pytest.mark.parametrize("name", ["hydra_mixer", "hydra_mixer_bias"])
def test_converted_mixer_reproduces_the_official_output(name):
    assert manifest()["commit"].startswith("55bef745")
    state, u, want, kwargs = fixture(name)
    params = convert_mixer(state)
    mixer = Hydra(**kwargs, chunk_size=4)
    shapes = nn.meta.unbox(jax.eval_shape(mixer.init, jax.random.PRNGKey(0), u))["params"]
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(np.shape, params)  # every parameter filled
    got = jax.jit(mixer.apply)({"params": params}, u)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    # The way back gives the official state dict, and a prefix selects a module inside a larger state dict.
    back = to_official(params, prefix="layer.0.")
    assert {k: v.shape for k, v in back.items()} == {f"layer.0.{k}": v.shape for k, v in state.items()}
    for key, value in state.items():
        np.testing.assert_array_equal(back[f"layer.0.{key}"], value)
    nested = convert_mixer({**back, "layer.1.D": np.ones(2)}, prefix="layer.0.")
    assert jax.tree.map(np.shape, nested) == jax.tree.map(np.shape, params)


def test_a_state_dict_that_does_not_fit_lists_every_problem():
    state, *_ = fixture("hydra_mixer")
    broken = {k: v for k, v in state.items() if k != "A_log"} | {"init_states": np.zeros((4, 16, 8))}
    with pytest.raises(ValueError, match=r"2 problem\(s\)(.|\n)*init_states(.|\n)*A_log"):
        convert_mixer(broken)
    with pytest.raises(ValueError, match="unexpected"):
        to_official({**convert_mixer(state), "extra": np.zeros(1)})
