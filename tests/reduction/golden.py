"""The golden fixtures of the reduction rules (tools/make_reduction_fixtures.py): load one, run mixtok's side.

fixture = load("tome")                                    # the npz and its manifest
logits = mixtok_logits(fixture, "r2", TokenReduction.constant("tome", 2, depth=4))
np.testing.assert_allclose(logits, fixture.arrays["r2:logits"], atol=1e-5)
"""

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mixtok.interop import timm as timm_interop
from mixtok.models import create_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reduction"
# The tiny DeiT of tools/make_reduction_fixtures.py (its TINY), in mixtok's vocabulary.
MIXTOK_TINY = dict(image_size=32, patch_size=8, dims=(32,), depths=(4,), num_heads=2, mlp_ratios=2.0)
DEPTH = 4


@dataclasses.dataclass
class Fixture:
    arrays: dict
    manifest: dict


def load(rule: str) -> Fixture:
    with np.load(FIXTURES / f"{rule}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    manifest = json.loads((FIXTURES / f"{rule}_manifest.json").read_text())
    return Fixture(arrays, manifest)


def state_dict(fixture: Fixture, tag: str) -> dict:
    prefix = f"{tag}:param:"
    return {k[len(prefix) :]: v for k, v in fixture.arrays.items() if k.startswith(prefix)}


def mixtok_logits(fixture: Fixture, tag: str, token_reduction, *, distilled: bool = False, **overrides) -> np.ndarray:
    """Logits of mixtok's tiny DeiT with the fixture's weights (setting `tag`) under `token_reduction`."""
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    kwargs = {**MIXTOK_TINY, **overrides}
    variables = timm_interop.convert(name, state_dict(fixture, tag), num_classes=5, **kwargs)
    model = create_model(name, num_classes=5, token_reduction=token_reduction, **kwargs)
    return np.asarray(jax.jit(model.apply)(variables, jnp.asarray(fixture.arrays[f"{tag}:images"])))
