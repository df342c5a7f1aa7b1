"""The official PoNet LRA classifier's state dict -> ponet_lra_*: golden logits, the round trip, and the errors.

tests/fixtures/ponet holds two small randomised official `ModelForSC` models (lxchtan/PoNet @ cc9a29a3,
examples/LRA/code; the commit is in manifest.json; mean and CLS pooling, padded inputs), written by
tools/make_ponet_fixtures.py with their token ids and official logits. `convert` must turn each state dict into
variables with which mixtok's model reproduces the logits (the tool's --parity measured at most 5.7e-5 on the
official LRA configs, logits up to 42). No torch needed.
"""

import functools
import json
import os

import jax
import numpy as np
import pytest

from mixtok.interop.ponet import convert, main, to_official
from mixtok.models import create_model

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "ponet")


@functools.cache
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


def fixture(name):
    entry = manifest()["fixtures"][name]
    with np.load(os.path.join(FIXTURES, entry["file"])) as data:
        arrays = {key: data[key] for key in data.files}
    state = {k[len("state_dict/") :]: v for k, v in arrays.items() if k.startswith("state_dict/")}
    config = entry["official_config"]
    kwargs = dict(
        depths=(config["num_layers"],),
        dims=(config["transformer_dim"],),
        num_heads=config["num_head"],
        mlp_ratios=config["transformer_hidden_dim"] / config["transformer_dim"],
        segment_num=config["segment_num"],
        pooling=config["pooling_mode"].lower(),
    )
    return state, arrays["input"], arrays["output"], kwargs


@pytest.mark.parametrize("name", ["ponet_lra_mean", "ponet_lra_cls"])
def test_converted_model_reproduces_the_official_logits(name):
    assert manifest()["commit"].startswith("cc9a29a3")
    state, ids, want, kwargs = fixture(name)
    variables = convert("ponet_lra_listops", {"model_state_dict": state}, **kwargs)  # run_tasks.py's wrapper
    model = create_model(
        "ponet_lra_listops",
        num_classes=want.shape[1],
        vocab_size=state["model.embeddings.word_embeddings.weight"].shape[0],
        max_seq_len=state["model.embeddings.position_embeddings.weight"].shape[0],
        **kwargs,
    )
    got = jax.jit(model.apply)(variables, ids)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=2e-5)
    back = to_official("ponet_lra_listops", variables, **kwargs)
    assert sorted(back) == sorted(state)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value)


def test_a_state_dict_that_does_not_fit_lists_every_problem():
    state, _, _, kwargs = fixture("ponet_lra_mean")
    broken = {k: v for k, v in state.items() if k != "model.norm.bias"} | {"model.transformer_0.mha.extra": np.zeros(1)}
    with pytest.raises(ValueError, match=r"2 problem\(s\)(.|\n)*mha.extra(.|\n)*model.norm.bias"):
        convert("ponet_lra_listops", broken, **kwargs)
    with pytest.raises(ValueError, match="Did you mean 'ponet_lra_listops'"):
        convert("ponet_lra_listop", state, **kwargs)


def test_command_line_refuses_an_unknown_name_with_exit_code_2(tmp_path, capsys):
    assert main(["ponet_lra_nope", str(tmp_path / "x.pt"), str(tmp_path / "out.msgpack")]) == 2
    assert capsys.readouterr().err.startswith("error: Unknown PoNet LRA classifier 'ponet_lra_nope'")
