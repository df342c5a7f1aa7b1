"""A tiny classification run shared by the tests that drive the trainer's pieces and load runs."""

import pytest

from mixtok.train import train_and_evaluate
from tests.train.test_trainer import tiny_config


@pytest.fixture(scope="session")
def five_step_run(tmp_path_factory):
    """(config, workdir) of a 5-step trainer run: every step logged, eval at 5, checkpoints at 2, 4 and 5."""
    workdir = tmp_path_factory.mktemp("five_step_run")
    config = tiny_config(
        total_steps=5, log_every=1, eval_every=5, checkpoint_every=2, tensorboard=False, async_checkpointing=False
    )
    train_and_evaluate(config, workdir)
    return config, workdir
