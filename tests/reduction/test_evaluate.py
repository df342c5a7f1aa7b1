"""`python -m mixtok.reduction.evaluate` on a trained tiny DeiT (the quickstart, shrunk), and its refusals."""

import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import TokenReduction
from mixtok.reduction import evaluate as reduction_evaluate
from mixtok.train.config_files import load_config
from mixtok.train.trainer import train_and_evaluate

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "quickstart_token_reduction.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    config = load_config(f"{CONFIG}:steps=6")
    config.model.kwargs.depths, config.model.kwargs.dims, config.model.kwargs.num_heads = (2,), (16,), 2
    config.eval_every = config.checkpoint_every = 6
    workdir = tmp_path_factory.mktemp("deit_digits")
    train_and_evaluate(config, workdir)
    return workdir


def test_every_schedule_is_evaluated_and_the_outputs_are_written_once(trained, capsys):
    assert reduction_evaluate.main(["--workdir", str(trained), "--schedules", "tome:r=8", "tome:r=16"]) == 0
    summary = json.loads((trained / "token_reduction.json").read_text())
    records = {r["schedule"]: r for r in summary["records"]}
    assert list(records) == ["none", "tome r=8", "tome r=16"]
    assert records["none"]["agreement"] == 1.0 and records["none"]["kl"] == 0.0
    assert records["none"]["tokens"] == [65, 65] and records["tome r=8"]["tokens"] == [57, 49]
    assert records["tome r=16"]["gflops"] < records["tome r=8"]["gflops"] < records["none"]["gflops"]
    assert all(r["examples"] == 300 for r in records.values())  # the digits' eval split, each once
    assert (trained / "token_reduction.png").stat().st_size > 0
    # A second run never overwrites what the first wrote.
    before = (trained / "token_reduction.json").read_text()
    assert reduction_evaluate.main(["--workdir", str(trained), "--schedules", "tome:r=4"]) == 2
    assert "token_reduction.json exists; pass another --out" in capsys.readouterr().err
    assert (trained / "token_reduction.json").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schedules", "tome:q=3"], "needs exactly one of r=, keep= or amounts="),
        (["--rules", "tomb"], "Unknown token reduction rule 'tomb'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(trained, tmp_path, capsys, args, message):
    assert reduction_evaluate.main(["--workdir", str(trained), "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_a_missing_workdir_is_exit_code_2(tmp_path, capsys):
    assert reduction_evaluate.main(["--workdir", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_records_equal_a_direct_computation():
    model = VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=4)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(6, 32, 32, 3)), jnp.float32)
    labels, mask = rng.integers(0, 4, size=6), np.array([1, 1, 1, 1, 1, 0], np.float32)
    variables = model.init(jax.random.PRNGKey(0), images)
    schedule = TokenReduction.constant("tome", 6, 2)
    records = reduction_evaluate.evaluate_schedules(model, variables, [(images, labels, mask)], [None, schedule])
    plain = np.asarray(model.apply(variables, images))[:5]
    reduced = np.asarray(model.clone(token_reduction=schedule).apply(variables, images))[:5]
    p, q = jax.nn.softmax(plain), jax.nn.softmax(reduced)
    assert records[1]["accuracy"] == pytest.approx(np.mean(reduced.argmax(1) == labels[:5]))
    assert records[1]["agreement"] == pytest.approx(np.mean(reduced.argmax(1) == plain.argmax(1)))
    assert records[1]["kl"] == pytest.approx(float(np.mean(np.sum(p * np.log(p / q), axis=1))), rel=1e-4, abs=1e-7)
    assert records[1]["tokens"] == [11, 6] and records[1]["examples"] == 5


def test_a_config_and_converted_weights_are_evaluated_without_a_run(tmp_path):
    """The ImageNet eval path (`--config --weights`), on the DeiT-S config's laptop smoke form."""
    from mixtok.interop.weight_files import save_variables
    from mixtok.models import create_model

    config = str(CONFIG.parent / "imagenet" / "deit_small_patch16_224.py") + ":runlocal"
    model = create_model("deit_small_patch16_224", num_classes=10, depths=(1,), image_size=64)
    variables = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
    save_variables(str(tmp_path / "deit.msgpack"), variables)
    out = tmp_path / "eval"
    args = ["--config", config, "--weights", str(tmp_path / "deit.msgpack"), "--schedules", "tome:r=4"]
    assert reduction_evaluate.main([*args, "--out", str(out)]) == 0
    records = json.loads(out.with_suffix(".json").read_text())["records"]
    assert [r["tokens"] for r in records] == [[17], [13]]
    assert reduction_evaluate.main(args) == 2  # --config needs --out
