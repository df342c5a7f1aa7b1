"""linear_attention: every impl against float64 numpy forms, its gradients against jax.grad of the reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mixtok.kernels.linear_attention import (
    LinearAttentionBlocks,
    linear_attention,
    linear_attention_reference,
    resolve_impl,
)
from tests.kernels.backend import INTERPRETED_PALLAS, ON_GPU, PALLAS, fp32_tolerance

# On CPU "pallas" runs in Pallas's interpreter, block by block as written; on a GPU these cases skip
# (tests/kernels/backend.py): test_linear_attention_mosaic_gpu.py compiles the GPU kernels.
IMPLS = ["reference", "xla", PALLAS]
LENGTHS = [1, 7, 49, 65, 130]


def _inputs(batch, heads, length, d, dv, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(batch, heads, length, width)), dtype) for width in (d, d, dv))


def _op(impl, **kwargs):
    return functools.partial(linear_attention, impl=impl, interpret=impl == "pallas", **kwargs)


# One compilation per shape; eager mode would run the Pallas interpreter op by op.
_jitted = jax.jit(linear_attention, static_argnames=("causal", "feature_map", "impl", "interpret", "blocks"))


def _attend(q, k, v, impl, **kwargs):
    return _jitted(q, k, v, impl=impl, interpret=impl == "pallas", **kwargs)


def _numpy_features(x, feature_map):
    x = np.asarray(x, np.float64)
    if feature_map == "elu1":
        return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))
    return np.maximum(x, 0) if feature_map == "relu" else x


def _numpy_noncausal(q, k, v, feature_map, eps=1e-6):
    """The explicit formula: phi(Q) (phi(K)^T V) / (phi(Q) . sum_j phi(K_j) + eps)."""
    qf, kf, v = _numpy_features(q, feature_map), _numpy_features(k, feature_map), np.asarray(v, np.float64)
    num = np.einsum("bhld,bhde->bhle", qf, np.einsum("bhld,bhle->bhde", kf, v))
    if feature_map == "identity":
        return num
    return num / (np.einsum("bhld,bhd->bhl", qf, kf.sum(2)) + eps)[..., None]


def _numpy_causal(q, k, v, feature_map, eps=1e-6):
    """The explicit masked L x L form: A = tril(phi(Q) phi(K)^T), O = A V / (A 1 + eps)."""
    qf, kf, v = _numpy_features(q, feature_map), _numpy_features(k, feature_map), np.asarray(v, np.float64)
    scores = np.tril(np.einsum("bhid,bhjd->bhij", qf, kf))
    out = scores @ v
    return out if feature_map == "identity" else out / (scores.sum(-1, keepdims=True) + eps)


def _assert_close(actual, expected, rtol):
    """Error relative to the largest entry of `expected` (a scale-aware absolute tolerance).

    On a GPU an fp32 `rtol` has a floor (tests/kernels/backend.py, "Tolerances")."""
    actual = np.asarray(jnp.asarray(actual, jnp.float32))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=fp32_tolerance(rtol) * np.abs(expected).max())


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
def test_matches_the_explicit_numpy_form_at_odd_lengths_with_d_not_dv(impl, causal):
    numpy_form = _numpy_causal if causal else _numpy_noncausal
    for length in LENGTHS:
        q, k, v = _inputs(2, 3, length, 8, 5, seed=length)
        out = _attend(q, k, v, impl, causal=causal)
        assert out.shape == (2, 3, length, 5) and out.dtype == jnp.float32
        _assert_close(out, numpy_form(q, k, v, "elu1"), 1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_several_tiles_and_chunks_carry_the_state(impl):
    blocks = LinearAttentionBlocks(length=16, chunk=16)  # 130 rows: 9 tiles / chunks, the last partly padded
    q, k, v = _inputs(2, 2, 130, 8, 4, seed=5)
    for causal, numpy_form in [(False, _numpy_noncausal), (True, _numpy_causal)]:
        _assert_close(_attend(q, k, v, impl, causal=causal, blocks=blocks), numpy_form(q, k, v, "elu1"), 1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
def test_bfloat16_inputs_return_bfloat16_within_two_percent(impl, causal):
    q, k, v = _inputs(2, 2, 130, 16, 8, seed=7, dtype=jnp.bfloat16)
    out = _attend(q, k, v, impl, causal=causal)
    assert out.dtype == jnp.bfloat16
    expected = (_numpy_causal if causal else _numpy_noncausal)(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), "elu1"
    )
    _assert_close(out, expected, 2e-2)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("feature_map", ["elu1", "relu", "identity"])
def test_every_feature_map_matches_numpy_and_its_gradients_match_jax_grad_of_the_reference(impl, causal, feature_map):
    q, k, v = _inputs(2, 2, 49, 8, 4, seed=11)
    expected = (_numpy_causal if causal else _numpy_noncausal)(q, k, v, feature_map)
    _assert_close(_attend(q, k, v, impl, causal=causal, feature_map=feature_map), expected, 1e-5)
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2, 49, 4)), jnp.float32)

    def loss(fn):
        return jax.jit(jax.grad(lambda *args: jnp.sum(fn(*args) * cotangent), argnums=(0, 1, 2)))

    expected = loss(functools.partial(linear_attention_reference, causal=causal, feature_map=feature_map))(q, k, v)
    actual = loss(_op(impl, causal=causal, feature_map=feature_map))(q, k, v)
    for got, want in zip(actual, expected):
        _assert_close(got, np.asarray(want, np.float64), 2e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("causal", [False, True])
def test_gradients_pass_numerical_checks(impl, causal):
    with jax.enable_x64(False):
        q, k, v = _inputs(1, 2, 5, 3, 2, seed=13)
        check_grads(jax.jit(_op(impl, causal=causal)), (q, k, v), order=1, modes=("rev",), atol=5e-2, rtol=5e-2)


def test_bfloat16_gradients_are_bfloat16_and_close():
    # Every impl but "reference", whose gradient is JAX's of the float32-accumulated definition
    # ("pallas" interpreted on CPU only: tests/kernels/backend.py).
    q, k, v = _inputs(1, 2, 65, 16, 8, seed=17)
    grads = {}
    for impl in ("xla", *INTERPRETED_PALLAS):
        fn = _op(impl, causal=True)
        lowp = [x.astype(jnp.bfloat16) for x in (q, k, v)]
        grads[impl] = jax.jit(jax.grad(lambda *a, fn=fn: jnp.sum(fn(*a).astype(jnp.float32)), (0, 1, 2)))(*lowp)
    exact = jax.jit(jax.grad(lambda *a: jnp.sum(linear_attention_reference(*a, causal=True)), (0, 1, 2)))(q, k, v)
    for impl in grads:
        for got, want in zip(grads[impl], exact):
            assert got.dtype == jnp.bfloat16
            _assert_close(got, np.asarray(want, np.float64), 5e-2)


def test_auto_picks_xla_off_tpu_and_pallas_needs_interpret_there():
    assert resolve_impl("auto") == "xla"
    if ON_GPU:  # there impl="pallas" compiles the Mosaic GPU kernel; "there" is the CPU
        return
    q, k, v = _inputs(1, 1, 7, 4, 4)
    with pytest.raises(ValueError, match="interpret=True"):
        linear_attention(q, k, v, impl="pallas")


@pytest.mark.parametrize(
    "shapes,kwargs,message",
    [
        (((1, 2, 7, 4), (1, 2, 7, 4), (1, 2, 7)), {}, "v as"),
        (((1, 2, 7, 4), (1, 2, 7, 5), (1, 2, 7, 4)), {}, "same shape"),
        (((1, 2, 7, 4), (1, 2, 7, 4), (1, 2, 6, 4)), {}, "v must be"),
        (((1, 2, 7, 4), (1, 2, 7, 4), (1, 2, 7, 4)), {"feature_map": "elu"}, "Did you mean.*'elu1'"),
        (((1, 2, 7, 4), (1, 2, 7, 4), (1, 2, 7, 4)), {"impl": "triton"}, "Valid linear_attention impls"),
        (
            ((1, 2, 7, 4), (1, 2, 7, 4), (1, 2, 7, 4)),
            {"impl": "mosaic_gpu"},
            "renamed to 'pallas'.*auto, pallas, reference, xla",
        ),
    ],
)
def test_bad_inputs_name_the_problem(shapes, kwargs, message):
    q, k, v = (jnp.zeros(s, jnp.float32) for s in shapes)
    with pytest.raises(ValueError, match=message):
        linear_attention(q, k, v, **kwargs)


def test_mixed_dtypes_and_bad_blocks_are_rejected():
    q, k, v = _inputs(1, 1, 7, 4, 4)
    with pytest.raises(ValueError, match="share a dtype"):
        linear_attention(q, k, v.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        linear_attention(q.astype(jnp.float16), k.astype(jnp.float16), v.astype(jnp.float16))
    with pytest.raises(ValueError, match="multiple of 16"):
        LinearAttentionBlocks(chunk=60)
