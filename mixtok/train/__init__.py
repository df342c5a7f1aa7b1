"""Training: `python -m mixtok.train --config experiments/configs/NAME.py[:ARGS] --workdir DIR`.

The logic lives in importable modules so that a notebook can drive it step by step:
`mixtok.train.trainer.train_and_evaluate(config, workdir)`.
"""
