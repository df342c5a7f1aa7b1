"""Official WaveMix state dicts -> mixtok: golden parity, the key mapping, errors, timm.py's naming and the CLI.

tests/fixtures/wavemix holds two tiny classification `WaveMix`s built by pranavphoenix/WaveMix's
wavemix/classification.py (unmodified; the commit is in manifest.json): level 3 with the 'pachify' stem at 32 x 48 px
and level 2 with the 'strided' stem at 32 x 16 px; every parameter and BatchNorm buffer random, a seeded input, and
the official eval-mode logits, pooled features and block outputs. tools/make_wavemix_fixtures.py writes them from the
official code. `mixtok.interop.wavemix.convert` must turn the state dict into variables with which mixtok reproduces
every output: logits within rtol = atol = 1e-5, features within rtol 1e-5 and an atol of 1e-5 times the tensor's
largest magnitude. The official key names and shapes below were read from `WaveMix(...).state_dict()` @ ba3d1b42.
torch only writes a .pth file here (skipped without it).
"""

import functools
import hashlib
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.interop import wavemix as importer
from mixtok.models import count_params, create_model
from tests import helpers
from tests.interop.test_timm import assert_trees_equal

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "wavemix")
TOLERANCE = 1e-5
STATE_DICT = "state_dict/"
MODELS = ("wavemix_tiny_level2_strided", "wavemix_tiny_level3")
SMALL = dict(depths=(2,), dims=(16,), ff_channel=12, levels=2, patch_size=2)  # mapping tests: no official output


@functools.cache
def manifest():
    return helpers.read_manifest(FIXTURES)


@functools.cache
def fixture(model):
    return helpers.read_npz(os.path.join(FIXTURES, manifest()["models"][model]["file"]))


def state_dict(model):
    return {k[len(STATE_DICT) :]: v for k, v in fixture(model).items() if k.startswith(STATE_DICT)}


def architecture(model):
    """create_model overrides from the manifest's official constructor arguments (checked against its own list)."""
    kwargs = manifest()["models"][model]["official_kwargs"]
    overrides = dict(
        depths=(kwargs["depth"],),
        dims=(kwargs["final_dim"],),
        mlp_ratios=kwargs["mult"],
        ff_channel=kwargs["ff_channel"],
        levels=kwargs["level"],
        stem={"pachify": "patchify", "strided": "strided"}[kwargs["initial_conv"]],
    )
    if "patch_size" in kwargs:
        overrides.update(patch_size=kwargs["patch_size"])
    else:
        overrides.update(stem_stride=kwargs["stride"])
    listed = manifest()["models"][model]["mixtok_overrides"]
    assert overrides == {k: tuple(v) if isinstance(v, list) else v for k, v in listed.items()}
    return overrides


def convert(model):  # num_classes: read from the weights
    return importer.convert("wavemix_192_16", state_dict(model), **architecture(model))


@functools.cache
def _forward(model):
    """The jitted mixtok forward of a fixture's architecture (compiled once per fixture)."""
    module = create_model("wavemix_192_16", num_classes=10, **architecture(model))

    def forward(v, x):  # logits, the sown pooled features, and every block's output (the feature interface)
        logits, state = module.apply(v, x, mutable=["intermediates"])
        return logits, state["intermediates"]["pre_logits"][0], module.apply(v, x, method="intermediates")

    return jax.jit(forward)


def run_mixtok(model, variables):
    images = jnp.asarray(fixture(model)["input"].transpose(0, 2, 3, 1))  # NCHW -> NHWC
    logits, pre_logits, blocks = _forward(model)(variables, images)
    return np.asarray(logits), np.asarray(pre_logits), [np.asarray(b) for b in blocks]


def assert_close_to_scale(actual, expected, what):
    helpers.assert_close_to_scale(actual, expected, what, TOLERANCE)


def random_variables(seed=0, num_classes=10):
    """Variables of SMALL's tree with random values (BatchNorm variances positive; none left at an init constant)."""
    model = create_model("wavemix_192_16", num_classes=num_classes, **SMALL)
    shapes = nn.meta.unbox(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32))
    )
    rng = np.random.default_rng(seed)

    def draw(path, s):
        value = rng.standard_normal(s.shape).astype(np.float32)
        return np.abs(value) + 0.5 if path[-1].key == "var" else value

    return jax.tree_util.tree_map_with_path(draw, shapes)


def test_the_fixtures_are_the_ones_the_manifest_describes():
    assert sorted(manifest()["models"]) == sorted(MODELS)
    assert manifest()["official_commit"] == "ba3d1b425c3e8a932b8fc6af432685e4dc7af857"
    for model, entry in manifest()["models"].items():
        with open(os.path.join(FIXTURES, entry["file"]), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"], model
        assert fixture(model)["logits"].std() > 0.1
        assert list(fixture(model)["input"].shape[2:]) == entry["image_size"]
        assert count_params(convert(model)) == entry["parameters"]  # BatchNorm buffers are not parameters


@pytest.mark.parametrize("model", MODELS)
def test_converted_tiny_wavemix_reproduces_the_official_outputs(model):
    expected = fixture(model)
    logits, pre_logits, blocks = run_mixtok(model, convert(model))
    np.testing.assert_allclose(logits, expected["logits"], rtol=TOLERANCE, atol=TOLERANCE, err_msg="logits")
    assert_close_to_scale(pre_logits, expected["pre_logits"], "pooled features")
    assert len(blocks) == 2
    for i, block in enumerate(blocks):
        assert_close_to_scale(block, expected[f"block{i}"], f"block{i} output")


def test_the_fixture_has_teeth_for_the_upsampling_kernel_layout():
    """The transposed conv's kernel with its spatial axes swapped (a transposition mix-up) misses the official
    logits."""
    model = "wavemix_tiny_level3"
    variables = convert(model)
    upsample = variables["params"]["layers_0"]["feedforward2"]["upsample"]
    upsample["kernel"] = upsample["kernel"].transpose(1, 0, 2, 3)
    logits, _, _ = run_mixtok(model, variables)  # the golden test's compiled forward
    assert np.abs(logits - fixture(model)["logits"]).max() > 1e3 * TOLERANCE


@pytest.mark.parametrize("model", MODELS)
def test_to_official_gives_back_the_official_state_dict_exactly(model):
    exported = importer.to_official("wavemix_192_16", convert(model), **architecture(model))
    expected = state_dict(model)
    assert set(exported) == set(expected)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):  # mixtok does not count batches: written as 0
            assert exported[key] == 0 and exported[key].dtype == np.int64
        else:
            np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_to_official_then_convert_restores_every_variable_exactly():
    variables = random_variables()
    state_dict_ = importer.to_official("wavemix_192_16", variables, **SMALL)
    assert all(isinstance(v, np.ndarray) and v.flags.c_contiguous for v in state_dict_.values())
    feed_forward = variables["params"]["layers_1"]["feedforward2"]
    np.testing.assert_array_equal(  # ConvTranspose2d weight [in, out, k, k] <- mixtok [k, k, out, in]
        state_dict_["layers.1.feedforward2.4.weight"], feed_forward["upsample"]["kernel"].transpose(3, 2, 0, 1)
    )
    statistics = variables["batch_stats"]["layers_1"]["feedforward2"]["norm"]
    np.testing.assert_array_equal(state_dict_["layers.1.feedforward2.5.running_var"], statistics["var"])
    np.testing.assert_array_equal(state_dict_["pool.2.weight"], variables["params"]["head"]["kernel"].T)
    assert_trees_equal(importer.convert("wavemix_192_16", state_dict_, **SMALL), variables)


# Read from the official WaveMix(...).state_dict() with 1000 classes (wavemix/classification.py @ ba3d1b42). The
# official models have 16 blocks; the tables are built with fewer (a 16-block trace costs seconds), so the counts are
# the stem's keys + the classifier's 2 + blocks * the keys of one block.
OFFICIAL_FACTS = {
    ("wavemix_192_16", 4): (  # 573 keys with 16 blocks: 11 + 2 + 16 * 35
        11 + 2 + 4 * 35,
        {
            "conv.1.weight": (96, 48, 3, 3),
            "conv.2.weight": (192, 96, 4, 4),
            "conv.4.running_var": (192,),
            "conv.4.num_batches_tracked": (),
            "layers.0.reduction.weight": (48, 192, 1, 1),
            "layers.3.feedforward2.0.weight": (384, 288, 1, 1),
            "layers.2.feedforward1.4.weight": (192, 192, 4, 4),
            "layers.3.feedforward3.0.weight": (384, 192, 1, 1),
            "pool.2.weight": (1000, 192),
        },
    ),
    ("wavemix_192_16_level1", 1): (  # 221 keys with 16 blocks: 11 + 2 + 16 * 13
        11 + 2 + 13,
        {"layers.0.feedforward.0.weight": (384, 192, 1, 1), "layers.0.feedforward.4.weight": (192, 192, 4, 4)},
    ),
    ("wavemix_256_16_level4", 1): (  # 742 keys with 16 blocks: 4 + 2 + 16 * 46 (no stem BatchNorm)
        4 + 2 + 46,
        {
            "conv.1.weight": (256, 128, 3, 3),
            "layers.0.feedforward4.4.weight": (256, 128, 4, 4),
            "layers.0.feedforward3.0.weight": (512, 384, 1, 1),
            "layers.0.reduction.weight": (64, 256, 1, 1),
            "pool.2.weight": (1000, 256),
        },
    ),
}


@pytest.mark.parametrize("name, depth", sorted(OFFICIAL_FACTS))
def test_official_keys_and_shapes_are_those_of_the_official_state_dict(name, depth):
    count, samples = OFFICIAL_FACTS[(name, depth)]
    shapes = importer.official_shapes(name, depths=(depth,))
    assert len(shapes) == count
    assert {k: shapes[k] for k in samples} == samples


def test_script_and_timm_names_are_accepted_and_unknown_names_list_close_matches():
    assert importer.resolve_name("wavemix_28M_75.06") == importer.resolve_name("wavemix") == "wavemix_192_16"
    assert importer.resolve_name("wavemix_lite") == importer.resolve_name("wavemix-192-16-level1")
    assert importer.resolve_name("wavemix_level4_imagenet_70.42") == "wavemix_256_16_level4"
    with pytest.raises(ValueError, match="Did you mean 'wavemix_256_16'"):
        importer.convert("wavemix_256_61", {})


def test_a_bad_state_dict_is_reported_with_every_problem_at_once():
    state_dict_ = importer.to_official("wavemix_192_16", random_variables(), **SMALL)
    del state_dict_["layers.1.reduction.bias"]
    state_dict_["layers.0.extra.weight"] = np.zeros(3, np.float32)
    state_dict_["layers.0.feedforward1.4.weight"] = np.zeros((12, 8, 4, 4), np.float32)
    with pytest.raises(ValueError) as info:
        importer.convert("wavemix_192_16", state_dict_, **SMALL)
    message = str(info.value)
    assert message.startswith("The WaveMix state dict does not fit mixtok's wavemix_192_16 (num_classes=10, depths=")
    assert "3 problem(s)" in message
    assert "layers.1.reduction.bias (mixtok layers_1/reduction/bias)" in message
    assert "layers.0.extra.weight" in message
    assert "layers.0.feedforward1.4.weight: expected (12, 16, 4, 4), got (12, 8, 4, 4)" in message


def test_timm_py_naming_wrappers_and_ddp_prefixes_are_read_and_a_headless_one_converts():
    variables = random_variables()
    state_dict_ = importer.to_official("wavemix_192_16", variables, **SMALL)
    timm_named = {k.replace("pool.2.", "head.2."): v for k, v in state_dict_.items()}  # Image_Classification/timm.py
    assert_trees_equal(importer.convert("wavemix", timm_named, **SMALL), variables)
    wrapped = {"state_dict": {f"module.{k}": v for k, v in state_dict_.items()}}
    assert_trees_equal(importer.convert("wavemix_192_16", wrapped, **SMALL), variables)
    headless = {k: v for k, v in state_dict_.items() if not k.startswith("pool.2.")}
    assert "head" not in importer.convert("wavemix_192_16", headless, **SMALL)["params"]  # num_classes=0


def test_cli_refuses_to_overwrite_the_output_and_rejects_unknown_names_with_exit_code_2(tmp_path, capsys):
    checkpoint, output = tmp_path / "wavemix_192_16_75.06.pth", tmp_path / "out.msgpack"
    checkpoint.write_bytes(b"not read")
    output.write_bytes(b"precious")
    assert importer.main(["wavemix_192_16", str(checkpoint), str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert output.read_bytes() == b"precious"
    assert importer.main(["wavemix_xl", str(checkpoint), str(tmp_path / "other.msgpack")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "wavemix_" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.msgpack", "wavemix_192_16_75.06.pth"]


def test_a_released_style_bare_state_dict_file_loads_and_converts(tmp_path):
    """Saved_weights/ImageNet/*.py: model.load_state_dict(torch.hub.load_state_dict_from_url(url)), a bare state dict
    (the command line's success path is official.run_cli's, shared with the other importers)."""
    torch = pytest.importorskip("torch")
    model = "wavemix_tiny_level3"
    checkpoint = tmp_path / "wavemix_192_16_75.06.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict(model).items()}, checkpoint)
    converted = importer.convert("wavemix_192_16", importer.load_state_dict(checkpoint), **architecture(model))
    assert_trees_equal(converted, convert(model))
