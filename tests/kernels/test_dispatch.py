"""The impl vocabulary every kernel op shares, and the backend choice of impl="pallas"."""

import jax
import jax.numpy as jnp
import pytest

from mixtok import kernels
from mixtok.kernels import dct_filter, dispatch, linear_attention, spectral_filter
from mixtok.kernels.dct_filter import IMPLS as DCT_FILTER_IMPLS
from mixtok.kernels.linear_attention import IMPLS as LINEAR_ATTENTION_IMPLS
from mixtok.kernels.spectral_filter import IMPLS as SPECTRAL_FILTER_IMPLS


def _calls():
    """Each op with inputs it accepts, called with a given impl."""
    x = jnp.ones((1, 8, 6, 2))
    q = jnp.ones((1, 1, 5, 4))
    return {
        "spectral_filter": lambda impl: spectral_filter(x, jnp.ones((8, 4, 2), jnp.complex64), impl=impl),
        "dct_filter": lambda impl: dct_filter(x, jnp.ones((8, 6, 2)), impl=impl),
        "linear_attention": lambda impl: linear_attention(q, q, q, impl=impl),
    }


def test_every_op_takes_its_impls_from_the_one_vocabulary():
    assert kernels.IMPLS == ("auto", "reference", "xla", "pallas")
    assert SPECTRAL_FILTER_IMPLS == LINEAR_ATTENTION_IMPLS == kernels.IMPLS
    assert DCT_FILTER_IMPLS == ("auto", "reference", "xla")  # no Pallas kernel yet


@pytest.mark.parametrize("op", ["spectral_filter", "dct_filter", "linear_attention"])
def test_reference_and_xla_agree_for_every_op(op):
    call = _calls()[op]
    assert jnp.allclose(call("reference"), call("xla"), atol=1e-5)
    assert jnp.allclose(call("auto"), call("xla"), atol=1e-5)


@pytest.mark.parametrize("op", ["spectral_filter", "dct_filter", "linear_attention"])
@pytest.mark.parametrize("old", ["fft", "dft", "dct", "mosaic_gpu"])
def test_old_impl_names_raise_and_name_the_valid_ones(op, old):
    with pytest.raises(ValueError, match=f"{op}.*'{old}'.*Valid {op} impls: auto, .*reference, xla"):
        _calls()[op](old)


def test_renamed_impl_points_to_its_successor():
    with pytest.raises(ValueError, match="'dft' was renamed to 'xla'"):
        dispatch.check_impl("some_op", "dft")
    with pytest.raises(ValueError, match="'fft' was renamed to 'reference'"):
        dispatch.check_impl("some_op", "fft")


def test_pallas_on_cpu_runs_interpreted_and_otherwise_says_to_pass_interpret():
    assert jax.default_backend() == "cpu"
    assert dispatch.pallas_target("some_op", interpret=True) == "pallas_call"
    with pytest.raises(ValueError, match=r"some_op\(impl='pallas'\) runs on CPU only .*interpret=True"):
        dispatch.pallas_target("some_op", interpret=False)


def test_mosaic_gpu_kernels_compile_only_on_a_gpu():
    dispatch.check_compiles_for_gpu("some_kernel", interpret=True)
    with pytest.raises(ValueError, match="some_kernel compiles only for an NVIDIA Hopper.*'cpu'.*interpret=True"):
        dispatch.check_compiles_for_gpu("some_kernel", interpret=False)


def test_the_filter_ops_take_no_interpret_flag_they_would_ignore():
    with pytest.raises(TypeError, match="interpret"):
        dct_filter(jnp.ones((1, 8, 6, 2)), jnp.ones((8, 6, 2)), interpret=True)
