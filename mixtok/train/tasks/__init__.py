"""Tasks: what the trainer optimises and evaluates for one kind of model (one small object each).

`base.Task` is the interface every task implements; `config.task` names one registered here.
"""

from mixtok.registry import Registry
from mixtok.train.tasks.base import Task
from mixtok.train.tasks.classification import ClassificationTask, SequenceClassificationTask
from mixtok.train.tasks.diffrate_search import DiffRateSearchTask
from mixtok.train.tasks.tokenizer import TokenizerTask

TASKS = Registry("task")
TASKS.register("classification", ClassificationTask)
TASKS.register("sequence_classification", SequenceClassificationTask)
TASKS.register("tokenizer", TokenizerTask)
TASKS.register("diffrate_search", DiffRateSearchTask)
DEFAULT_TASK = "classification"


def get_task(name: str) -> type[Task]:
    """The task class registered as `name`; an unknown name is an error listing the registered ones."""
    return TASKS.get(name)


__all__ = [
    "ClassificationTask",
    "DEFAULT_TASK",
    "DiffRateSearchTask",
    "SequenceClassificationTask",
    "TASKS",
    "Task",
    "TokenizerTask",
    "get_task",
]
