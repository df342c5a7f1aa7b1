"""The reduction contract's schedule parsing, counts and undo helpers, on hand-made transforms."""

import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.reduction import TokenReduction, token_counts, unmerge
from mixtok.reduction.base import keep_rate_count, remove_count


def test_one_line_schedules_equal_the_constructors():
    assert TokenReduction.parse("tome:r=16,inflect=-1", 12) == TokenReduction.tome_schedule("tome", 16, 12, -1.0)
    assert TokenReduction.parse("tome:r=8", 12) == TokenReduction.constant("tome", 8, 12)
    assert TokenReduction.parse("tome:amounts=8/8/4/0", 4).amounts == (8, 8, 4, 0)
    parsed = TokenReduction.parse("tome:r=8,prop_attn=false,extra=0.5", 2)
    assert parsed.prop_attn is False and parsed.options == (("extra", 0.5),)


@pytest.mark.parametrize(
    "text, message",
    [
        ("tome", "needs exactly one of r=, keep= or amounts="),
        ("tome:r", "'r' is not key=value"),
        ("tomme:r=8", "Unknown token reduction rule 'tomme'. Did you mean 'tome'"),
        ("tome:r=8,keep=0.5", "needs exactly one of"),
    ],
)
def test_a_bad_schedule_is_one_clear_error(text, message):
    with pytest.raises(ValueError, match=message):
        TokenReduction.parse(text, 12)


def test_counts():
    assert remove_count(197, 1, 16) == 181 and remove_count(21, 1, 16) == 11
    assert keep_rate_count(197, 1, 0.7) == 1 + int(np.ceil(0.7 * 196))  # EViT's ceil(keep_rate * (N - 1))
    with pytest.raises(ValueError, match="keep rate 1.5 must be in"):
        keep_rate_count(197, 1, 1.5)
    assert token_counts(None, 197, 1, 3) == (197, 197, 197)


def test_unmerge_spreads_merged_tokens_and_zeroes_dropped_ones():
    # 4 inputs -> 2 outputs: input 0 kept alone, inputs 1 and 2 averaged (sizes 1 and 3), input 3 dropped.
    transform = jnp.asarray([[[1.0, 0.0, 0.0, 0.0], [0.0, 0.25, 0.75, 0.0]]])
    values = jnp.asarray([[[1.0, 2.0], [3.0, 4.0]]])
    np.testing.assert_allclose(unmerge(values, transform)[0], [[1, 2], [3, 4], [3, 4], [0, 0]])
