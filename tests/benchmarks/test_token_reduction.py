"""benchmarks/token_reduction.py: rows for a tiny ViT (tokens, FLOPs, speed-up against the same run's unreduced
model) and one error line with exit status 2 for bad input. Nothing here asserts anything about speed."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixtok.models.vit import VisionTransformer
from mixtok.reduction import TokenReduction

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench(request):
    sys.path.insert(0, str(BENCHMARKS))
    request.addfinalizer(lambda: sys.path.remove(str(BENCHMARKS)))
    spec = importlib.util.spec_from_file_location("token_reduction_under_test", BENCHMARKS / "token_reduction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_of_a_tiny_vit(bench):
    model = VisionTransformer(depths=(2,), dims=(16,), num_heads=2, patch_size=8, image_size=32, num_classes=3)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = model.init(jax.random.PRNGKey(0), images[:1])
    schedules = [TokenReduction.constant("tome", 4, 2)]
    rows = bench.measure("tiny", model, variables, images, schedules, repeats=1)
    assert [r["schedule"] for r in rows] == ["none", "tome r=4"]
    assert (rows[0]["first"], rows[0]["last"], rows[1]["first"], rows[1]["last"]) == (17, 17, 13, 9)
    assert rows[0]["speedup"] == 1.0 and rows[1]["gflops"] < rows[0]["gflops"]
    assert rows[0]["accuracy"] is None  # random weights: no quality columns
    table = bench.render([bench.cells(r) for r in rows], markdown=True)
    assert table.count("\n") == 3 and "| tiny | tome r=4 | 13/9 |" in table


def test_sample_images_are_the_bundled_photos(bench):
    images = bench.sample_images(3, 32)
    assert images.shape == (3, 32, 32, 3) and np.isfinite(np.asarray(images)).all()
    assert float(jnp.std(images[0] - images[1])) > 0.1  # different photographs


def test_a_model_that_is_not_a_vit_is_exit_2(bench, capsys):
    assert bench.main(["--models", "caformer_s18"]) == 2
    err = capsys.readouterr().err
    assert "'caformer_s18' is not a ViT / DeiT" in err and err.count("\n") == 1
