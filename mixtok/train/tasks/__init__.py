"""Tasks: what the trainer optimises and evaluates for one kind of model (one small object each)."""

from mixtok.registry import Registry
from mixtok.train.tasks.classification import ClassificationTask
from mixtok.train.tasks.tokenizer import TokenizerTask

TASKS = Registry("task")
TASKS.register("classification", ClassificationTask)
TASKS.register("tokenizer", TokenizerTask)


def get_task(name: str):
    return TASKS.get(name)


__all__ = ["ClassificationTask", "TASKS", "TokenizerTask", "get_task"]
