"""Training: `python -m mixtok.train --config experiments/configs/NAME.py[:ARGS] --workdir DIR`.

The logic lives in importable modules so that a notebook can drive it whole or step by step:

    train_and_evaluate(config, workdir)      the whole run (trainer.py), resumable
    create_train_state, make_train_step,     the pieces it composes (steps.py; its docstring
    make_eval_step, evaluate, ...            shows a run driven by hand)
    load_run(workdir, step=None)             a trained run's config, model and variables
    get_task(name), Task                     what is trained and evaluated (tasks/)
"""

from mixtok.train.checkpointing import Checkpointer, Run, create_checkpointer, load_run
from mixtok.train.config import validate_config
from mixtok.train.ema import ModelEma, model_ema_from_config
from mixtok.train.steps import (
    EmaBuffersTrainState,
    EmaTrainState,
    TrainState,
    abstract_train_state,
    create_train_state,
    ema_variables,
    evaluate,
    make_eval_images_step,
    make_eval_step,
    make_train_step,
    put_batch,
    seed_rngs,
)
from mixtok.train.tasks import Task, get_task
from mixtok.train.trainer import NonFiniteLossError, Preempted, train_and_evaluate

__all__ = [
    "Preempted",
    "Checkpointer",
    "EmaBuffersTrainState",
    "EmaTrainState",
    "ModelEma",
    "NonFiniteLossError",
    "Run",
    "Task",
    "TrainState",
    "abstract_train_state",
    "create_checkpointer",
    "create_train_state",
    "ema_variables",
    "evaluate",
    "get_task",
    "load_run",
    "make_eval_images_step",
    "make_eval_step",
    "make_train_step",
    "model_ema_from_config",
    "put_batch",
    "seed_rngs",
    "train_and_evaluate",
    "validate_config",
]
