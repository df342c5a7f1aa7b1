"""Official CAS-ViT checkpoints -> mixtok: golden parity, the key mapping, errors, wrappers and the CLI.

tests/fixtures/cas_vit holds two tiny `RCViT`s built by Tianfang-Zhang/CAS-ViT's classification/model/rcvit.py
(unmodified; the commit is in manifest.json): one as classification/main.py builds the models (no dist_head) at
64 px, one with the dist_head at 32 x 64 px; every parameter and BatchNorm buffer random, a seeded input, and the
official eval-mode logits, pooled features and stage outputs. tools/make_cas_vit_fixtures.py writes them from a
clone of the official repository. `mixtok.interop.cas_vit.convert` must turn the state dict into variables with
which mixtok reproduces every output: logits within rtol = atol = 1e-5, features within rtol 1e-5 and an atol of
1e-5 times the tensor's largest magnitude (float32 rounding's scale). The official key names and shapes below were
read from `RCViT(...).state_dict()` @ 041d2d68. torch only writes .pth files here (skipped without it).
"""

import argparse
import functools
import hashlib
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import cas_vit as importer
from mixtok.interop.weight_files import load_variables
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "cas_vit")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
MODELS = ("cas_vit_tiny", "cas_vit_tiny_distilled")
SMALL = dict(depths=(1, 2, 1, 1), dims=(8, 16, 8, 16))  # for the mapping tests: no official output needed


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture(model):
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][model]["file"]))


def state_dict(model):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(model).items() if k.startswith(STATE_DICT)}


def architecture(model):
    """create_model overrides named as the manifest's official constructor arguments say."""
    kwargs = manifest()["models"][model]["official_kwargs"]
    assert kwargs["mlp_ratios"] == 4
    return dict(depths=tuple(kwargs["layers"]), dims=tuple(kwargs["embed_dims"]))


def convert(model):  # num_classes and distillation: read from the weights
    return importer.convert("rcvit_xs", state_dict(model), **architecture(model))


def run_mixtok(model, variables):
    kwargs = manifest()["models"][model]["official_kwargs"]
    module = create_model(
        "cas_vit_xs", num_classes=kwargs["num_classes"], distillation=kwargs["distillation"], **architecture(model)
    )
    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC

    def forward(v, x):  # logits, the sown pooled features, and the stage maps of the feature interface
        logits, state = module.apply(v, x, mutable=["intermediates"])
        return logits, state["intermediates"]["pre_logits"][0], module.apply(v, x, method="intermediates")

    logits, pre_logits, stages = jax.jit(forward)(variables, images)
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(s) for s in stages]


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def random_variables(seed=0, num_classes=10, small=True, **overrides):
    """Variables of the right tree with standard-normal values (no leaf left at its init constant)."""
    model = create_model("cas_vit_xs", num_classes=num_classes, **{**(SMALL if small else {}), **overrides})
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert sorted(manifest()["models"]) == sorted(MODELS)
    assert len(manifest()["official_commit"]) == 40
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        assert list(fixture(model)["input"].shape[2:]) == entry["image_size"]
        buffers = ("running_mean", "running_var", "num_batches_tracked")
        official_parameters = sum(v.size for k, v in state_dict(model).items() if not k.endswith(buffers))
        assert count_params(convert(model)) == entry["parameters"] == official_parameters


@pytest.mark.parametrize("model", MODELS)
def test_converted_tiny_cas_vit_reproduces_the_official_outputs(model):
    expected = fixture(model)
    logits, pre_logits, stages = run_mixtok(model, convert(model))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(stages) == 4
    for i, stage in enumerate(stages):
        assert_close_to_scale(stage, expected[f"stage{i}"], f"stage{i} output")


def test_distillation_is_read_from_the_dist_head_and_both_heads_are_averaged():
    assert "dist_head" in convert("cas_vit_tiny_distilled")["params"]
    assert "dist_head" not in convert("cas_vit_tiny")["params"]
    # Without the dist_head's half of the average the logits are far from the official ones.
    variables = convert("cas_vit_tiny_distilled")
    del variables["params"]["dist_head"]
    module = create_model("cas_vit_xs", num_classes=10, **architecture("cas_vit_tiny_distilled"))
    images = fixture("cas_vit_tiny_distilled")["input"].transpose(0, 2, 3, 1)
    head_only = np.asarray(module.apply(variables, images))
    assert np.abs(head_only - fixture("cas_vit_tiny_distilled")["logits"]).max() > 1e3 * TOLERANCE


def test_the_running_statistics_are_used_the_fixture_has_teeth():
    """BatchNorm statistics reset to their init (mean 0, variance 1) move the logits far past the tolerance."""
    variables = convert("cas_vit_tiny")
    variables["batch_stats"] = jax.tree_util.tree_map_with_path(
        lambda path, leaf: (np.zeros_like if path[-1].key == "mean" else np.ones_like)(leaf), variables["batch_stats"]
    )
    logits, _, _ = run_mixtok("cas_vit_tiny", variables)
    assert np.abs(logits - fixture("cas_vit_tiny")["logits"]).max() > 1e3 * TOLERANCE


def test_queries_and_values_come_from_the_qkv_channels_in_the_official_order():
    """q, k, v are the qkv conv's output channels [0, C), [C, 2C), [2C, 3C): swapping q and v is caught."""
    variables = convert("cas_vit_tiny")
    qkv = variables["params"]["network_0_0"]["attn"]["qkv"]
    q, k, v = np.split(qkv["kernel"], 3, axis=-1)
    qkv["kernel"] = np.concatenate([v, k, q], axis=-1)
    logits, _, _ = run_mixtok("cas_vit_tiny", variables)
    assert np.abs(logits - fixture("cas_vit_tiny")["logits"]).max() > 1e3 * TOLERANCE


@pytest.mark.parametrize("model", MODELS)
def test_to_official_gives_back_the_official_state_dict_exactly(model):
    exported = importer.to_official("rcvit_xs", convert(model), **architecture(model))
    expected = state_dict(model)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        assert exported[key].shape == value.shape, key  # num_batches_tracked is 0-d, as torch's
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_to_official_then_convert_restores_every_variable_exactly():
    variables = random_variables(distillation=True)
    state_dict_ = importer.to_official("cas_vit_xs", variables, **SMALL)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict_.values())
    np.testing.assert_array_equal(
        state_dict_["network.2.1.attn.qkv.weight"],
        variables["params"]["network_2_1"]["attn"]["qkv"]["kernel"].transpose(3, 2, 0, 1),
    )
    np.testing.assert_array_equal(state_dict_["head.weight"], variables["params"]["head"]["kernel"].T)
    np.testing.assert_array_equal(
        state_dict_["network.3.norm.running_var"], variables["batch_stats"]["network_3_norm"]["var"]
    )
    assert_trees_equal(importer.convert("cas_vit_xs", state_dict_, **SMALL), variables)


# Read from the official RCViT(...).state_dict() with 1000 classes (rcvit.py @ 041d2d68).
OFFICIAL_FACTS = {
    ("rcvit_xs", False): (
        522,
        {
            "patch_embed.0.weight": (24, 3, 3, 3),
            "patch_embed.4.num_batches_tracked": (),
            "network.5.proj.weight": (220, 112, 3, 3),
            "network.6.1.attn.oper_k.0.block.3.weight": (1, 220, 1, 1),
            "network.6.1.attn.oper_q.1.block.1.weight": (220, 220, 1, 1),
            "network.4.3.mlp.fc2.weight": (112, 448, 1, 1),
            "network.2.0.local_perception.network.2.weight": (56, 1, 3, 3),
            "norm.running_var": (220,),
            "head.weight": (1000, 220),
        },
    ),
    ("rcvit_t", True): (
        764,
        {
            "patch_embed.0.weight": (48, 3, 3, 3),
            "network.5.proj.weight": (512, 256, 3, 3),
            "network.6.2.attn.qkv.weight": (1536, 512, 1, 1),
            "network.4.5.norm2.running_mean": (256,),
            "dist_head.weight": (1000, 512),
            "dist_head.bias": (1000,),
        },
    ),
}


@pytest.mark.parametrize("name, distillation", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name, distillation):
    count, samples = OFFICIAL_FACTS[(name, distillation)]
    shapes = importer.official_shapes(name, distillation=distillation)
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_official_model_names_are_accepted_and_unknown_names_list_close_matches():
    assert importer.resolve_name("rcvit_m") == importer.resolve_name("cas_vit_m") == "cas_vit_m"
    with pytest.raises(ValueError, match="Did you mean 'rcvit_xs'"):
        importer.convert("rcvit_xss", {})


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    state_dict_ = importer.to_official("cas_vit_xs", random_variables(), **SMALL)
    del state_dict_["network.2.1.norm1.running_var"]
    state_dict_["network.0.0.attn.extra.weight"] = np.zeros(3, np.float32)
    state_dict_["network.4.0.mlp.fc1.weight"] = np.zeros((30, 8, 1, 1), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("cas_vit_xs", state_dict_, **SMALL)
    message = str(info.value)
    assert message.startswith("The CAS-ViT state dict does not fit mixtok's cas_vit_xs (num_classes=10, distillation=")
    assert "3 problem(s)" in message
    assert "network.2.1.norm1.running_var (mixtok batch_stats:network_2_1/norm1/var)" in message
    assert "network.0.0.attn.extra.weight" in message
    assert "network.4.0.mlp.fc1.weight: expected (32, 8, 1, 1), got (30, 8, 1, 1)" in message


def test_a_dist_head_is_unexpected_when_distillation_is_turned_off():
    state_dict_ = importer.to_official("cas_vit_xs", random_variables(distillation=True), **SMALL)
    with pytest.raises(ValueError, match=r"unexpected[^\n]*\n\s+dist_head\.(weight|bias)"):
        importer.convert("cas_vit_xs", state_dict_, distillation=False, **SMALL)


def test_a_detection_backbone_gets_a_hint():
    state_dict_ = importer.to_official("cas_vit_xs", random_variables(num_classes=0), **SMALL)
    state_dict_.update({f"norm{i}.weight": np.ones(8, np.float32) for i in (0, 2, 4, 6)})
    with pytest.raises(ValueError, match="detection / segmentation backbone"):
        importer.convert("cas_vit_xs", state_dict_, **SMALL)


def test_training_checkpoint_wrappers_and_ddp_prefixes_are_removed():
    variables = random_variables()
    state_dict_ = importer.to_official("cas_vit_xs", variables, **SMALL)
    wrapped = {"model": {f"module.{k}": v for k, v in state_dict_.items()}, "epoch": np.array(299)}
    assert_trees_equal(importer.convert("cas_vit_xs", wrapped, **SMALL), variables)


def test_cli_refuses_to_overwrite_the_output_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "rcvit_xs.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["rcvit_xs", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.msgpack", "rcvit_xs.pth"]


def test_cli_rejects_an_unknown_name_with_exit_code_2_and_one_error_line(tmp_path, capsys):
    assert importer.main(["rcvit_xl", str(tmp_path / "x.pth"), str(tmp_path / "out.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "rcvit_xs" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def _save_model_checkpoint(torch, path, model_state_dict, ema_state_dict):
    # As classification/utils.py save_model writes it (with --model_ema True).
    torch.save(
        {
            "model": {k: torch.from_numpy(np.asarray(v)) for k, v in model_state_dict.items()},
            "model_ema": {k: torch.from_numpy(np.asarray(v)) for k, v in ema_state_dict.items()},
            "optimizer": {},
            "epoch": "best_224",
            "scaler": {},
            "args": argparse.Namespace(model="rcvit_xs", input_size=224),
        },
        path,
    )


def test_cli_converts_the_model_weights_of_a_save_model_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    variables = random_variables(seed=1, num_classes=1000, small=False)
    ema = jax.tree.map(lambda leaf: leaf + 1, variables)
    checkpoint, output = tmp_path / "checkpoint-best.pth", tmp_path / "out.msgpack"
    _save_model_checkpoint(
        torch, checkpoint, importer.to_official("rcvit_xs", variables), importer.to_official("rcvit_xs", ema)
    )
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.cas_vit", "rcvit_xs", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "Wrote 2,979,700 parameters of cas_vit_xs (1000 classes) and " in result.stdout
    assert_trees_equal(load_variables(output), variables)  # 'model', as main.py --eval --resume reads it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-best.pth", "out.msgpack"]


def test_load_state_dict_reads_model_or_with_ema_model_ema(tmp_path):
    torch = pytest.importorskip("torch")
    variables, ema = random_variables(seed=1, num_classes=1000), random_variables(seed=2, num_classes=1000)
    checkpoint = tmp_path / "checkpoint-best.pth"
    to = functools.partial(importer.to_official, "rcvit_xs", **SMALL)
    _save_model_checkpoint(torch, checkpoint, to(variables), to(ema))
    assert_trees_equal(importer.convert("rcvit_xs", importer.load_state_dict(checkpoint, ema=True), **SMALL), ema)
    assert_trees_equal(importer.convert("rcvit_xs", importer.load_state_dict(checkpoint), **SMALL), variables)
    torch.save({"model": {k: torch.from_numpy(np.asarray(v)) for k, v in to(variables).items()}}, checkpoint)
    with pytest.raises(ValueError, match="no 'model_ema' state dict"):
        importer.load_state_dict(checkpoint, ema=True)
