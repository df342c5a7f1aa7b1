"""layers.Dense: nn.Dense's parameters and numerics, its dot seeing a rank > 2 input as a matrix on CPU."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mixtok.layers.linear import Dense, dense


class _Two(nn.Module):
    cls: type

    @nn.compact
    def __call__(self, x):
        x = self.cls(8)(x)
        return self.cls(3, name="out")(x)


@pytest.mark.parametrize("shape", [(5, 6), (2, 5, 6), (2, 3, 4, 6)])
@pytest.mark.parametrize("dot_general", [None, lax.dot_general], ids=["flattening", "flax"])
def test_dense_equals_flax_dense(shape, dot_general):
    x = jax.random.normal(jax.random.key(0), shape)
    ours = _Two(Dense if dot_general is None else (lambda *a, **k: Dense(*a, dot_general=dot_general, **k)))
    flax_dense = _Two(nn.Dense)
    variables = flax_dense.init(jax.random.key(1), x)
    # the same parameter tree (auto-names Dense_0 included), so checkpoints and converters are unchanged
    assert jax.tree.structure(ours.init(jax.random.key(1), x)) == jax.tree.structure(variables)

    def loss(module, v, x):
        return jnp.sum(jnp.sin(module.apply(v, x)))

    np.testing.assert_allclose(ours.apply(variables, x), flax_dense.apply(variables, x), rtol=1e-6, atol=1e-6)
    got = jax.grad(lambda v, x: loss(ours, v, x), argnums=(0, 1))(variables, x)
    want = jax.grad(lambda v, x: loss(flax_dense, v, x), argnums=(0, 1))(variables, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_flattened_on_cpu_and_the_module_output_keeps_its_axes():
    """On CPU the rank-4 input reaches the dot as a matrix; the output, and what capture_intermediates
    records, keep the input's leading axes (one record per call)."""
    layer = dense(4)
    x = jnp.ones((2, 3, 5, 6))
    variables = layer.init(jax.random.key(0), x)
    text = jax.jit(layer.apply).lower(variables, x).as_text()
    dots = [line for line in text.splitlines() if "dot_general" in line]
    assert dots and all("tensor<30x6xf32>" in line for line in dots), dots
    y, state = layer.apply(variables, x, capture_intermediates=True)
    assert y.shape == (2, 3, 5, 4)
    assert [a.shape for a in state["intermediates"]["__call__"]] == [(2, 3, 5, 4)]
    text = jax.jit(Dense(4, dot_general=lax.dot_general).apply).lower(variables, x).as_text()
    assert any("tensor<2x3x5x6xf32>" in line for line in text.splitlines() if "dot_general" in line)
