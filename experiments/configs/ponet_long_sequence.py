r"""PoNet's LRA ListOps classifier on a procedural long-sequence task (marked_majority), on a CPU in minutes.

    python -m mixtok.train --config experiments/configs/ponet_long_sequence.py \
        --workdir /tmp/mixtok_ponet_long_sequence

The model is `ponet_lra_listops`, the official LRA ListOps model of lxchtan/PoNet @ cc9a29a3
(examples/LRA/code/lra_config.py: dim 64, 2 heads of 32, hidden 128, depth 2, dropout 0.1, mean pooling,
vocabulary 32, segment_num 64, max_seq_len 2048; 226,442 parameters as the official). The data is
`marked_majority` (`mixtok.data.sequences`, generated from a seed, nothing downloaded): sequences of
SEQUENCE_LENGTH tokens, (tag, digit) pairs zero-padded after a real length in [L/2, L] (masked as LRA's
`ids != 0`); the label is the most common digit among the pairs whose tag is the marker, and a decoy digit is
planted among the unmarked pairs as often, so counting digits reaches only about 50% and chance is 10%. The task
is `sequence_classification` (token ids [B, L]). The official recipe (AdamW lr 1e-4, 1,000 warm-up steps, 5,000
steps at batch 32, weight decay 0) is scaled to a short CPU run: 800 steps, lr 2e-3, 50 warm-up steps, cosine
decay, gradient clipping 1.

Expect eval accuracy >= 0.9 after 800 steps (1,000 held-out test sequences; chance 0.10, counting digits about
0.50). Measured on a 2-core CPU (AMD EPYC, JAX 0.10.2, 2026-12-07, shared with other jobs, load average 10-13),
with the command above: eval accuracy 0.95 in 205 s wall time including compilation (106 s of CPU time); 0.281,
0.729, 0.828, 0.917 at steps 100, 200, 300, 400 (`MEASURED` below). `steps=400` gave 0.716 (its cosine decays
twice as fast), in 146 s.
Run it again with the same --workdir and it resumes (or, if finished, returns at once).

Options after a colon: `steps=N`, `length=L` (default 256).
"""

from ml_collections import ConfigDict

from mixtok.train.config import parse_config_arg

SEQUENCE_LENGTH = 256
MEASURED = (0.95, 205)  # (eval accuracy, wall seconds) with the command above


def get_config(arg=None):
    args = parse_config_arg(arg, steps=800, length=SEQUENCE_LENGTH)
    config = ConfigDict()
    config.seed = 0
    config.task = "sequence_classification"
    config.total_steps = args.steps
    config.batch_size = 32
    config.log_every = 50
    config.eval_every = 100
    config.checkpoint_every = 200
    config.keep_checkpoints = 2

    config.data = ConfigDict(
        dict(name="marked_majority", sequence_length=args.length, num_examples=50_000, num_eval_examples=1_000)
    )

    config.model = ConfigDict()
    config.model.name = "ponet_lra_listops"
    config.model.dtype = "float32"
    config.model.kwargs = ConfigDict()

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=2e-3,
            min_lr=1e-5,
            warmup_steps=min(50, args.steps // 10),
            weight_decay=0.0,  # the official weight_decay 0
            b1=0.9,
            b2=0.999,
            grad_clip=1.0,
        )
    )
    return config
