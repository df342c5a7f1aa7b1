"""timm MetaFormer weights -> mixtok: mapping, errors, files, the CLI, and logit parity with timm.

The parity tests need torch and timm (skipped without them). The fast tier runs one model per
family; the others are marked `slow` and run only with MIXTOK_SLOW_TESTS=1:

    MIXTOK_SLOW_TESTS=1 python -m pytest tests/interop -q
"""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import timm as timm_interop
from mixtok.interop.weight_files import load_state_dict, load_variables, save_variables
from mixtok.models import create_model, list_models, model_spec

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMM_BACKED = [n for n in list_models() if model_spec(n).timm_name]
FAST = ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18"]
# DaViT: tests/models/test_davit.py; MLP-Mixer (224 px only, its token MLPs are sized for it):
# tests/interop/test_golden_timm_mixer.py and the parity figure in mixtok/interop/timm_mixer.py.
# ViT / DeiT (224 px only, their position embeddings are sized for it): tests/models/test_vit.py.
SLOW = [n for n in TIMM_BACKED if n not in FAST and not n.startswith(("davit", "mixer", "vit", "deit"))]
# tests/conftest.py belongs to the whole suite, so the slow tier's switch lives here.
SLOW_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MIXTOK_SLOW_TESTS") != "1", reason="slow tier: set MIXTOK_SLOW_TESTS=1 to run"),
]


def random_variables(name, num_classes=1000, seed=0):
    """Variables of the right tree with standard-normal values (stronger than init's ones and zeros)."""
    model = create_model(name, num_classes=num_classes)
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def assert_trees_equal(actual, expected):
    flat_actual = dict(jax.tree_util.tree_flatten_with_path(actual)[0])
    flat_expected = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    assert flat_actual.keys() == flat_expected.keys()
    for path, value in flat_expected.items():
        assert flat_actual[path].dtype == value.dtype, path
        np.testing.assert_array_equal(flat_actual[path], value, err_msg=jax.tree_util.keystr(path))


# --- the mapping, without torch ---------------------------------------------------------------


def test_every_timm_family_is_covered():
    assert len(TIMM_BACKED) == 34
    families = {n.split("_")[0] for n in TIMM_BACKED}
    assert families == {"poolformer", "poolformerv2", "convformer", "caformer", "davit", "mixer", "vit", "deit"}


@pytest.mark.parametrize("name", FAST)
def test_to_timm_then_convert_restores_every_parameter_exactly(name):
    variables = random_variables(name)
    assert_trees_equal(timm_interop.convert(name, timm_interop.to_timm(name, variables)), variables)


# Facts read from timm 1.0.31's state_dict() of these models (pretrained=False).
TIMM_FACTS = {
    "poolformer_s12": (
        132,
        {
            "stem.conv.weight": (64, 3, 7, 7),
            "stages.0.blocks.0.norm1.bias": (64,),
            "stages.0.blocks.0.mlp.fc1.weight": (256, 64, 1, 1),
            "stages.0.blocks.0.layer_scale1.scale": (64,),
            "head.fc.weight": (1000, 512),
        },
    ),
    "poolformerv2_s12": (
        104,
        {
            "stem.norm.weight": (64,),
            "stages.0.blocks.0.mlp.act.scale": (1,),
            "stages.1.downsample.norm.weight": (64,),
            "stages.1.downsample.conv.weight": (128, 64, 3, 3),
            "stages.2.blocks.0.res_scale1.scale": (320,),
        },
    ),
    "convformer_s18": (
        242,
        {
            "stages.0.blocks.0.token_mixer.pwconv1.weight": (128, 64, 1, 1),
            "stages.0.blocks.0.token_mixer.dwconv.weight": (128, 1, 7, 7),
            "stages.0.blocks.0.token_mixer.act1.bias": (1,),
            "head.fc.fc1.weight": (2048, 512),
            "head.fc.norm.weight": (2048,),
            "head.fc.fc2.weight": (1000, 2048),
        },
    ),
    "caformer_s18": (
        206,
        {
            "stages.2.blocks.0.token_mixer.qkv.weight": (960, 320),
            "stages.2.blocks.0.token_mixer.proj.weight": (320, 320),
            "stages.2.blocks.0.mlp.fc1.weight": (1280, 320),  # Linear on channels-last stages
            "stages.1.blocks.0.mlp.fc1.weight": (512, 128, 1, 1),
        },
    ),
}


@pytest.mark.parametrize("name", sorted(TIMM_FACTS))
def test_to_timm_writes_timm_keys_and_layouts(name):
    count, samples = TIMM_FACTS[name]
    state_dict = timm_interop.to_timm(name, random_variables(name))
    assert len(state_dict) == count
    assert {k: state_dict[k].shape for k in samples} == samples
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict.values())


def test_convert_takes_timm_names_with_a_pretrained_tag():
    state_dict = timm_interop.to_timm("caformer_s18", random_variables("caformer_s18"))
    variables = timm_interop.convert("caformer_s18.sail_in22k_ft_in1k", state_dict)
    assert_trees_equal(variables, timm_interop.convert("caformer_s18", state_dict))


def test_convert_accepts_linear_and_1x1_conv_forms_of_a_dense_layer():
    variables = random_variables("poolformer_s12")
    state_dict = timm_interop.to_timm("poolformer_s12", variables)
    key = "stages.0.blocks.0.mlp.fc1.weight"
    state_dict[key] = state_dict[key][:, :, 0, 0]
    assert_trees_equal(timm_interop.convert("poolformer_s12", state_dict), variables)


@pytest.mark.parametrize("name,num_classes", [("poolformerv2_s12", 10), ("convformer_s18", 10), ("caformer_s18", 0)])
def test_num_classes_is_read_from_the_classifier(name, num_classes):
    variables = random_variables(name, num_classes=num_classes)
    converted = timm_interop.convert(name, timm_interop.to_timm(name, variables))
    assert_trees_equal(converted, variables)
    if num_classes == 0:  # timm's num_classes=0 models have no head.fc; neither do ours
        assert set(converted["params"]["head"]) == {"norm"}


def test_half_precision_weights_become_float32():
    state_dict = timm_interop.to_timm("poolformer_s12", random_variables("poolformer_s12"))
    converted = timm_interop.convert("poolformer_s12", {k: v.astype(np.float16) for k, v in state_dict.items()})
    assert {leaf.dtype for leaf in jax.tree.leaves(converted)} == {np.dtype(np.float32)}


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    state_dict = timm_interop.to_timm("caformer_s18", random_variables("caformer_s18"))
    del state_dict["stages.1.blocks.2.norm2.weight"]
    state_dict["stages.0.blocks.0.token_mixer.extra.weight"] = np.zeros((3,), np.float32)
    state_dict["stages.2.blocks.0.token_mixer.qkv.weight"] = np.zeros((900, 320), np.float32)
    with pytest.raises(ValueError) as info:
        timm_interop.convert("caformer_s18", state_dict)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "stages.1.blocks.2.norm2.weight (mixtok stages_1/blocks_2/norm2/scale)" in message
    assert "stages.0.blocks.0.token_mixer.extra.weight" in message
    assert "stages.2.blocks.0.token_mixer.qkv.weight: expected (960, 320), got (900, 320)" in message


def test_an_official_sail_sg_checkpoint_gets_a_hint():
    with pytest.raises(ValueError, match="official sail-sg checkpoint"):
        timm_interop.convert("poolformer_s12", {"network.0.0.mlp.fc1.weight": np.zeros((256, 64, 1, 1))})


def test_to_timm_rejects_variables_of_another_model():
    with pytest.raises(ValueError, match="caformer_s36") as info:
        timm_interop.to_timm("caformer_s36", random_variables("caformer_s18"))
    assert "stages_1/blocks_11/mlp/fc1/kernel" in str(info.value)  # s36 has 12 blocks in stage 2, s18 has 3


def test_an_unknown_name_lists_the_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'caformer_s18'"):
        timm_interop.convert("caformer_s19", {})


@pytest.mark.parametrize("name", ["identityformer_s12", "randformer_m36"])
def test_models_that_timm_lacks_are_refused_clearly(name):
    with pytest.raises(ValueError, match=f"timm has no model '{name}'"):
        timm_interop.convert(name, {})
    with pytest.raises(ValueError, match="timm has no model"):
        timm_interop.to_timm(name, {"params": {}})


@pytest.mark.parametrize("name", ["iformer_s", "iformer_l"])
def test_a_name_timm_gives_to_another_architecture_is_refused_as_such(name):
    # timm 1.0.31's iformer_s / iformer_l are ChuanyangZheng/iFormer (ICLR 2025), not sail-sg's Inception Transformer.
    for call in (lambda: timm_interop.convert(name, {}), lambda: timm_interop.to_timm(name, {"params": {}})):
        with pytest.raises(ValueError, match=f"timm's '{name}' is another architecture.*Zheng, ICLR 2025") as info:
            call()
        assert "Inception Transformer" in str(info.value) and "timm has no model" not in str(info.value)


# --- files and the command line ---------------------------------------------------------------


def test_safetensors_checkpoints_are_read_as_numpy(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    state_dict = timm_interop.to_timm("poolformerv2_s12", random_variables("poolformerv2_s12"))
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state_dict, str(path))
    loaded = load_state_dict(path)
    assert_trees_equal(loaded, state_dict)


def test_torch_checkpoints_are_read_and_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    state_dict = {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "a.bias": np.ones(2, np.float32)}
    torch.save(
        {"model": {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in state_dict.items()}}, tmp_path / "ckpt.pth"
    )
    assert_trees_equal(load_state_dict(tmp_path / "ckpt.pth"), state_dict)


def test_reading_a_missing_or_unknown_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_state_dict(tmp_path / "nowhere.safetensors")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"weights.npz.*'\.npz'"):
        load_state_dict(tmp_path / "weights.npz")


def _checkpoint(tmp_path, name):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    variables = random_variables(name)
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(timm_interop.to_timm(name, variables), str(path))
    return variables, path


def test_cli_refuses_to_overwrite_the_output(tmp_path, capsys):
    _, checkpoint = _checkpoint(tmp_path, "poolformer_s12")
    output = tmp_path / "out.msgpack"
    output.write_bytes(b"precious")
    assert timm_interop.main(["poolformer_s12", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "out.msgpack"]


def test_cli_writes_variables_that_load_back(tmp_path):
    variables, checkpoint = _checkpoint(tmp_path, "poolformer_s12")
    output = tmp_path / "out.msgpack"
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.interop.timm", "poolformer_s12.sail_in1k", str(checkpoint), str(output)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": REPO_ROOT, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stderr
    assert "11,915,176 parameters of poolformer_s12 (1000 classes)" in result.stdout
    assert_trees_equal(load_variables(output), variables)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "out.msgpack"]  # no temp file left


def test_save_variables_refuses_to_overwrite_unless_asked(tmp_path):
    path = tmp_path / "v.msgpack"
    save_variables(path, {"params": {"w": np.ones(2, np.float32)}})
    with pytest.raises(FileExistsError, match="v.msgpack"):
        save_variables(path, {"params": {"w": np.zeros(2, np.float32)}})
    save_variables(path, {"params": {"w": np.zeros(2, np.float32)}}, overwrite=True)
    np.testing.assert_array_equal(load_variables(path)["params"]["w"], np.zeros(2, np.float32))
    assert [p.name for p in tmp_path.iterdir()] == ["v.msgpack"]


# --- parity with timm (torch + timm) ----------------------------------------------------------


def randomise_(model, torch, seed=0):
    """Random weights everywhere, so that no part of a block hides behind its init value.

    Conv/linear weights are normal with std 1/sqrt(fan_in), which keeps every branch at the scale of
    its input; norm weights, StarReLU scales and layer/res scales are uniform(0.5, 1.5) (layer
    scale's init of 1e-5 would make a wrong block invisible); biases are normal(0, 0.1).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith("bias"):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
            elif param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param[0].numel() ** 0.5)
            else:
                param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    return generator


def branch_to_residual_ratios(model, torch, images):
    """std(branch) / std(residual) at each of the model's 2 * blocks residual additions."""
    stds, hooks = {}, []
    for name, block in model.named_modules():
        if type(block).__name__ == "MetaFormerBlock":
            for i in (1, 2):
                for part in ("layer_scale", "res_scale"):
                    hooks.append(
                        getattr(block, f"{part}{i}").register_forward_hook(
                            lambda m, args, out, key=(name, i, part): stds.__setitem__(key, out.std().item())
                        )
                    )
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return [stds[key] / stds[key[:2] + ("res_scale",)] for key in stds if key[2] == "layer_scale"]


@pytest.mark.parametrize("name", FAST + [pytest.param(n, marks=SLOW_MARKS) for n in SLOW])
def test_logits_match_timm_with_random_weights(name):
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    reference = timm.create_model(model_spec(name).timm_name, pretrained=False).eval()
    generator = randomise_(reference, torch)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        expected = reference(images).numpy()
    ratios = branch_to_residual_ratios(reference, torch, images)
    assert np.median(ratios) > 0.1, f"residual branches barely contribute: {np.median(ratios)}"
    assert expected.std() > 1e-2, "degenerate reference logits"

    state_dict = reference.state_dict()
    variables = timm_interop.convert(name, state_dict)
    logits = jax.jit(create_model(name).apply)(variables, jnp.asarray(images.numpy().transpose(0, 2, 3, 1)))
    difference = float(np.abs(np.asarray(logits) - expected).max())
    print(f"{name}: max |logit difference| {difference:.2e}, logit std {expected.std():.2f}")
    assert difference <= 1e-4

    exported = timm_interop.to_timm(name, variables)  # and back: what timm loads with strict=True
    assert_trees_equal(exported, {k: v.numpy() for k, v in state_dict.items()})
