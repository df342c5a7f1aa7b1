"""Helpers shared by the tests: random variables on a module's own shapes, and reading the importers' golden fixtures.

Parity and layer tests want every weight away from its init constant (ones, zeros), so that a
mixed-up name or transpose cannot hide behind a symmetric value. Drawing in numpy on the shapes of
`jax.eval_shape(module.init, ...)` also avoids compiling a whole model's init, which costs a 2-core
CPU more than the rest of a test.
"""

import json
from collections.abc import Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Leaves that must stay positive: norm scales, BatchNorm running variances.
POSITIVE_LEAVES = ("scale", "var")


def variable_shapes(module: nn.Module, *inputs: Any, **kwargs) -> Any:
    """The (unboxed) variable tree `module.init` would build for `inputs`, as ShapeDtypeStructs."""
    return nn.meta.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs, **kwargs))


def random_like(
    shapes: Any,
    *,
    seed: int = 0,
    std: float = 0.2,
    positive: Iterable[str] = POSITIVE_LEAVES,
    positive_suffixes: Iterable[str] = (),
) -> Any:
    """Draws every leaf of `shapes`: N(0, std^2), or U(0.5, 1.5) for the leaves named in `positive`
    (or ending with one of `positive_suffixes`). Leaves are drawn in tree order from one generator."""
    rng = np.random.default_rng(seed)
    positive, suffixes = tuple(positive), tuple(positive_suffixes)

    def draw(path, leaf):
        name = getattr(path[-1], "key", None)
        if isinstance(name, str) and (name in positive or (suffixes and name.endswith(suffixes))):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), leaf.dtype)
        return jnp.asarray(std * rng.normal(size=leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def random_variables(
    module: nn.Module,
    *inputs: Any,
    seed: int = 0,
    std: float = 0.2,
    positive: Iterable[str] = POSITIVE_LEAVES,
    positive_suffixes: Iterable[str] = (),
) -> Any:
    """Variables of `module` for `inputs` with every leaf drawn at random (see `random_like`)."""
    return random_like(
        variable_shapes(module, *inputs), seed=seed, std=std, positive=positive, positive_suffixes=positive_suffixes
    )


def read_manifest(fixtures: str) -> dict:
    """The `manifest.json` of a fixture folder (written by the tools/make_<family>_fixtures.py scripts)."""
    with open(f"{fixtures}/manifest.json") as f:
        return json.load(f)


def read_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an .npz fixture, read into memory."""
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def assert_close_to_scale(actual, expected, what: str, tolerance: float) -> None:
    """Same shape, and equal within `tolerance` relative plus `tolerance` times the official output's largest value."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, official {expected.shape}"
    np.testing.assert_allclose(
        actual, expected, rtol=tolerance, atol=tolerance * float(np.abs(expected).max()), err_msg=what
    )
