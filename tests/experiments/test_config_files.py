"""Config files find the helper module beside them from any working directory, and the shared
ImageNet plumbing (imagenet/common.py) checks its options and shrinks runlocal models correctly."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mixtok.models import model_spec
from mixtok.train import config_files

REPO = Path(__file__).resolve().parents[2]
IMAGENET = REPO / "experiments" / "configs" / "imagenet"
COMMON = IMAGENET / "common.py"


def common():
    return config_files.load_module(COMMON)


def test_a_config_loads_through_config_flags_from_another_working_directory(tmp_path):
    """What `python -m mixtok.train --config /abs/caformer_s18.py:runlocal` does, run from an unrelated folder."""
    script = textwrap.dedent(f"""
        from absl import flags
        from ml_collections import config_flags
        values = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, "", flag_values=values)
        values(["prog", "--config={IMAGENET / "caformer_s18.py"}:runlocal"])
        print(values.config.model.name, values.config.batch_size, values.config.model.kwargs.depths)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")  # this checkout's mixtok, as pip -e gives
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["caformer_s18", "16", "(1,", "1,", "1,", "1)"]


def test_load_config_applies_the_options_after_the_colon():
    config = config_files.load_config(f"{IMAGENET / 'poolformerv2_s12.py'}:batch_size=2048,bf16")
    assert config.batch_size == 2048 and config.model.dtype == "bfloat16"
    assert config.optimizer.lr == pytest.approx(4e-3 / 2)  # 4e-3 at 4096, scaled linearly


def test_configs_beside_each_other_share_one_helper_module():
    first = config_files.load_module(IMAGENET / "caformer_s18.py")
    second = config_files.load_module(IMAGENET / "gfnet_ti.py")
    assert first.common is second.common
    assert Path(first.common.__file__) == COMMON


def test_a_helper_module_is_reloaded_after_it_changes_and_two_folders_keep_their_own(tmp_path):
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "common.py").write_text(f"VALUE = {value}\n")
        (tmp_path / folder / "exp.py").write_text(
            "from mixtok.train.config_files import import_beside\n"
            "common = import_beside(__file__, 'common')\n"
            "def get_config(arg=None):\n    return dict(value=common.VALUE)\n"
        )
    assert config_files.load_config(tmp_path / "a" / "exp.py") == dict(value=1)
    assert config_files.load_config(tmp_path / "b" / "exp.py") == dict(value=2)
    helper = tmp_path / "a" / "common.py"
    helper.write_text("VALUE = 3\n")
    os.utime(helper, (1, 1))  # a different modification time, however fast the file system's clock
    assert config_files.import_beside(tmp_path / "a" / "exp.py", "common").VALUE == 3


def test_loading_a_helper_or_a_missing_file_as_a_config_says_what_went_wrong(tmp_path):
    with pytest.raises(ValueError, match="defines no get_config"):
        config_files.load_config(COMMON)
    with pytest.raises(FileNotFoundError, match="nope.py"):
        config_files.load_config(tmp_path / "nope.py")


def test_one_block_per_stage_keeps_the_number_of_stages():
    shrunk = common().one_block_per_stage("caformer_s18")
    assert shrunk == {"depths": (1,) * len(model_spec("caformer_s18").kwargs["depths"])} == {"depths": (1, 1, 1, 1)}
    assert common().one_block_per_stage("gfnet_ti") == {"depths": (1,)}  # isotropic: one stage
    with pytest.raises(ValueError, match="no 'attention_heads' argument"):
        common().one_block_per_stage("gfnet_ti", field="attention_heads")


def test_first_block_of_each_stage_picks_the_blocks_at_the_stage_starts():
    spec = model_spec("iformer_s").kwargs
    heads = common().first_block_of_each_stage("iformer_s", "attention_heads")["attention_heads"]
    # An independent walk over the per-block tuple: the first entry of each stage's run of blocks.
    expected, block = [], 0
    for depth in spec["depths"]:
        expected.append(spec["attention_heads"][block])
        block += depth
    assert heads == tuple(expected) and len(heads) == len(spec["depths"])


def test_steps_and_warm_up_count_whole_batches_of_imagenet():
    parsed = common().parse_arg("batch_size=1000", batch_size=4096, epochs=300)
    assert common().steps(300, 1000) == 300 * 1_281_167 // 1000
    assert common().warmup_steps(parsed, epochs=5) == 5 * 1_281_167 // 1000
    assert common().warmup_steps(common().parse_arg("runlocal", batch_size=4096, epochs=300), epochs=5) == 1


@pytest.mark.parametrize(
    "arg,match",
    [
        ("batch_size=0", "batch_size must be positive"),
        ("epochs=-1", "epochs must be positive"),
        ("source=tfds", "array_record"),
    ],
)
def test_bad_options_name_the_bad_value(arg, match):
    with pytest.raises(ValueError, match=match):
        common().parse_arg(arg, batch_size=4096, epochs=300)


def test_a_tokenizer_run_shorter_than_its_gan_start_is_refused():
    config = IMAGENET / "titok_s128.py"
    with pytest.raises(ValueError, match="steps=20000 ends before"):
        config_files.load_config(f"{config}:steps=20000")
    assert config_files.load_config(f"{config}:steps=20001").total_steps == 20001


def test_the_perceptual_network_and_its_weights_go_together():
    config = IMAGENET / "titok_s128.py"
    with pytest.raises(ValueError, match="go together"):
        config_files.load_config(f"{config}:perceptual_network=pkg.mod:Net")
    on = config_files.load_config(f"{config}:perceptual_network=pkg.mod.Net,perceptual_weights=/w.msgpack")
    assert on.loss.perceptual_weight == 0.1 and on.loss.perceptual_weights == "/w.msgpack"
    assert config_files.load_config(config).loss.perceptual_weight == 0.0
